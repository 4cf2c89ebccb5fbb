"""model-sync through its real Lambda handler, with S3 and DynamoDB from moto (mock_aws).

The harness (events, clock, `Stack`) is in model_sync_harness.py; the `stack` fixture in conftest.py.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Callable
from datetime import UTC
from typing import Any
from urllib.parse import quote, quote_plus

import boto3
import pytest
from botocore.exceptions import ClientError

from house_prices.errors import DependencyFailure
from house_prices.observability import logger
from model_sync import handler
from tests.integration.model_sync_harness import (
    BUCKET,
    CITY,
    FIXTURES,
    LAYOUT,
    TABLE,
    Stack,
    invoke,
    only,
    s3_put_event,
)
from tests.unit.test_artifacts_inspection import (
    VALIDATION_PRICE,
    add_file,
    build_artifact,
    constant_forest,
    realistic_metrics,
)


@pytest.mark.parametrize("encode", [quote_plus, lambda key: quote(key, safe="/")], ids=["moto-%2F", "s3-style"])
def test_first_artifact_is_copied_to_its_versioned_key_and_promoted(stack: Stack, encode: Callable[[str], str]) -> None:
    # Given a valid training output for a city with no live model
    data = build_artifact(metrics=realistic_metrics(ae_p50=20_000))
    key = stack.upload(data)
    # When its S3 event reaches the handler
    outcome = only(invoke(s3_put_event(key, encode=encode)))
    # Then it is copied to an immutable versioned key and goes live
    assert outcome["action"] == "promoted", outcome
    version = outcome["version"]
    target = f"{CITY}.{version}.tar.gz"
    assert set(stack.mme_objects()) == {LAYOUT.mme_prefix + target}
    copied = stack.s3.get_object(Bucket=BUCKET, Key=LAYOUT.mme_prefix + target)
    assert copied["Body"].read() == data
    live = stack.registry.live_model(CITY)
    assert (live.version, live.target_model) == (version, target)
    record = stack.registry.version(CITY, version)
    assert record.status == "live"
    assert record.source_key == key
    assert record.metrics["validation"]["ae_p50"] == 20_000
    assert version.startswith("20260101T1201")  # the upload's LastModified, not the processing time


def test_duplicate_event_is_a_no_op(stack: Stack) -> None:
    # Given an artifact that was already synced
    key = stack.upload(build_artifact())
    event = s3_put_event(key)
    first = only(invoke(event))
    objects_before = stack.mme_objects()
    registry_before = stack.registry_snapshot()
    # When the same event is delivered again
    second = only(invoke(event))
    # Then nothing is copied again (same ETag and LastModified) and the registry is unchanged
    assert first["action"] == "promoted"
    assert second["action"] == "duplicate"
    assert second["version"] == first["version"]
    assert stack.mme_objects() == objects_before
    assert stack.registry_snapshot() == registry_before


def test_out_of_order_events_never_move_a_city_back(stack: Stack) -> None:
    # Given two retrains uploaded one after the other (different jobs, later LastModified)
    older_key = stack.upload(build_artifact(metrics=realistic_metrics(ae_p50=20_000)), job="job-old")
    newer_key = stack.upload(build_artifact(metrics=realistic_metrics(ae_p50=20_000)), job="job-new")
    # When the newer event arrives first, then the older one
    newer = only(invoke(s3_put_event(newer_key)))
    older = only(invoke(s3_put_event(older_key)))
    # Then the newer stays live; the older is kept as standby with the reason
    assert newer["action"] == "promoted"
    assert older["action"] == "standby"
    assert older["version"] < newer["version"]
    assert "newer version" in older["reason"]
    assert stack.registry.live_model(CITY).version == newer["version"]
    statuses = {v.version: v.status for v in stack.registry.versions(CITY)}
    assert statuses == {newer["version"]: "live", older["version"]: "standby"}


def test_acceptance_worse_retrain_is_held_back_and_better_one_goes_live(stack: Stack) -> None:
    """ACCEPTANCE: a worse retrain is held back and a better one goes live, through the real handler."""
    # Given a live model with validation AE p50 = 20,000 and the gate not-worse-than-live-by:5
    baseline = only(invoke(s3_put_event(stack.upload(build_artifact(realistic_metrics(20_000)), job="base"))))
    assert baseline["action"] == "promoted"
    # When a retrain 10 % worse arrives (above the 21,000 limit)
    worse = only(invoke(s3_put_event(stack.upload(build_artifact(realistic_metrics(22_000)), job="worse"))))
    # Then it is held back, still copied (so an operator can promote it) and the live model is unchanged
    assert worse["action"] == "standby"
    assert "held back" in worse["reason"]
    assert "22000" in worse["reason"]
    assert stack.registry.live_model(CITY).version == baseline["version"]
    assert stack.registry.version(CITY, worse["version"]).status == "standby"
    assert stack.registry.version(CITY, worse["version"]).reason == worse["reason"]
    # When a retrain within tolerance of the live one arrives (4 % worse, inside 5 %), then a better one
    tolerable = only(invoke(s3_put_event(stack.upload(build_artifact(realistic_metrics(20_800)), job="ok"))))
    better = only(invoke(s3_put_event(stack.upload(build_artifact(realistic_metrics(15_000)), job="better"))))
    # Then each goes live in turn and the replaced versions become standby
    assert tolerable["action"] == "promoted"
    assert better["action"] == "promoted"
    assert stack.registry.live_model(CITY).version == better["version"]
    statuses = {v.version: v.status for v in stack.registry.versions(CITY)}
    assert statuses == {
        baseline["version"]: "standby",
        worse["version"]: "standby",
        tolerable["version"]: "standby",
        better["version"]: "live",
    }
    assert len(stack.mme_objects()) == 4


def test_gate_always_promotes_a_worse_model(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUALITY_GATE", "always")
    handler.service.cache_clear()
    only(invoke(s3_put_event(stack.upload(build_artifact(realistic_metrics(10_000)), job="a"))))
    worse = only(invoke(s3_put_event(stack.upload(build_artifact(realistic_metrics(90_000)), job="b"))))
    assert worse["action"] == "promoted"
    assert stack.registry.live_model(CITY).version == worse["version"]


def test_invalid_artifact_is_rejected_and_never_reaches_the_mme_prefix(stack: Stack) -> None:
    # Given a live model and then a hostile artifact (path traversal)
    live = only(invoke(s3_put_event(stack.upload(build_artifact(), job="good"))))
    hostile = build_artifact(extra=lambda archive: add_file(archive, "../../etc/evil", b"x"))
    key = stack.upload(hostile, job="evil")
    # When its event is handled
    outcome = only(invoke(s3_put_event(key)))
    # Then it is recorded as rejected (permanent: no exception, so no retry), live is untouched
    assert outcome["action"] == "rejected"
    assert "escapes the archive root" in outcome["reason"]
    record = stack.registry.version(CITY, outcome["version"])
    assert (record.status, record.artifact_key) == ("rejected", "")
    assert stack.registry.live_model(CITY).version == live["version"]
    assert all(outcome["version"] not in name for name in stack.mme_objects())
    assert len(stack.mme_objects()) == 1
    # And a redelivery derives the same version and changes nothing
    again = only(invoke(s3_put_event(key)))
    assert (again["action"], again["version"]) == ("duplicate", outcome["version"])


def test_model_trained_on_another_column_order_is_rejected(stack: Stack) -> None:
    metrics_reordered = realistic_metrics(features=["SQUARE_FEET", "YEAR_BUILT", "NUM_BEDROOMS"])
    outcome = only(invoke(s3_put_event(stack.upload(build_artifact(metrics_reordered)))))
    assert outcome["action"] == "rejected"
    assert "differ from the serving order" in outcome["reason"]
    assert stack.mme_objects() == {}
    assert stack.registry.live_models() == []


def test_a_laptop_trained_packed_model_goes_live_whatever_its_scikit_learn(stack: Stack) -> None:
    # Given a live model trained on the SageMaker image (scikit-learn 1.4.2)
    served = realistic_metrics(ae_p50=30_000) | {"versions": {"sklearn": "1.4.2", "numpy": "2.1.0"}}
    live = only(invoke(s3_put_event(stack.upload(build_artifact(served), job="ok"))))
    assert live["action"] == "promoted"
    # When a better packed model trained on a laptop with scikit-learn 1.9.1 arrives
    laptop = realistic_metrics(ae_p50=1_000) | {"versions": {"sklearn": "1.9.1", "numpy": "2.4.6"}}
    outcome = only(invoke(s3_put_event(stack.upload(build_artifact(laptop), job="laptop"))))
    # Then the format, not the scikit-learn version, decides: it is measured, better, and goes live
    assert outcome["action"] == "promoted", outcome
    assert "measured validation.ae_p50 1000 vs live 30000" in outcome["reason"]
    assert stack.registry.live_model(CITY).version == outcome["version"]


def test_a_pickle_only_artifact_is_rejected_with_the_remedy(stack: Stack) -> None:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as archive:
        add_file(archive, "model.joblib", b"\x80\x04not-unpickled")
        add_file(archive, "metrics.json", json.dumps(realistic_metrics()).encode())
    outcome = only(invoke(s3_put_event(stack.upload(raw.getvalue()))))
    assert outcome["action"] == "rejected"
    assert "python -m training.convert" in outcome["reason"]
    assert stack.registry.version(CITY, outcome["version"]).status == "rejected"
    assert stack.mme_objects() == {}


def test_metrics_that_lie_about_the_error_are_rejected_and_the_live_model_stays(stack: Stack) -> None:
    # Given a live model, and a candidate whose forest is bad but whose metrics.json claims a tiny error
    live = only(invoke(s3_put_event(stack.upload(build_artifact(realistic_metrics(20_000)), job="ok"))))
    liar = build_artifact(realistic_metrics(ae_p50=10), model=constant_forest(VALIDATION_PRICE + 90_000))
    outcome = only(invoke(s3_put_event(stack.upload(liar, job="liar"))))
    # Then model-sync measured it, and rejected it with both numbers; nothing was copied
    assert outcome["action"] == "rejected"
    assert "reports validation.ae_p50=10 but model-sync measured 90000" in outcome["reason"]
    assert stack.registry.live_model(CITY).version == live["version"]
    assert all(outcome["version"] not in name for name in stack.mme_objects())


def test_without_validation_rows_only_the_always_gate_promotes(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a city with no held-out rows under model_prep/
    city = "Tucson_AZ"
    outcome = only(invoke(s3_put_event(stack.upload(build_artifact(), city=city, job="a"))))
    # Then the default gate holds it back, saying why
    assert outcome["action"] == "standby"
    assert "no validation rows at" in outcome["reason"]
    assert "only the 'always' gate can promote" in outcome["reason"]
    # And with the 'always' gate the next one goes live, the reason saying it was not measured
    monkeypatch.setenv("QUALITY_GATE", "always")
    handler.service.cache_clear()
    promoted = only(invoke(s3_put_event(stack.upload(build_artifact(), city=city, job="b"))))
    assert promoted["action"] == "promoted"
    assert "not measured" in promoted["reason"]


def test_truncated_upload_is_rejected_without_a_live_model(stack: Stack) -> None:
    data = build_artifact(extra=lambda archive: add_file(archive, "padding.bin", bytes(range(256)) * 400))
    outcome = only(invoke(s3_put_event(stack.upload(data[: len(data) // 2]))))
    assert outcome["action"] == "rejected"
    assert "truncated" in outcome["reason"]
    assert stack.registry.live_models() == []


@pytest.mark.parametrize(
    "key",
    [
        f"{LAYOUT.mme_prefix}{CITY}.20260101T000000Z-0123abcd.tar.gz",  # our own write: no self-trigger
        f"{LAYOUT.prefix}/model_prep/{CITY}/train/{CITY}_train.csv",
        f"{LAYOUT.training_output_prefix}{CITY}/job-1/output/output.tar.gz",
        f"{LAYOUT.training_output_prefix}../job-1/output/model.tar.gz",
    ],
    ids=["mme-prefix", "prep-data", "other-file", "hostile-city"],
)
def test_unrelated_keys_are_ignored(stack: Stack, key: str) -> None:
    stack.s3.put_object(Bucket=BUCKET, Key=key, Body=build_artifact())
    outcome = only(invoke(s3_put_event(key)))
    assert outcome["action"] == "ignored"
    assert stack.registry_snapshot() == []


def test_event_for_another_bucket_or_a_deleted_object_is_ignored(stack: Stack) -> None:
    key = LAYOUT.training_output_key(CITY, "gone")
    other_bucket = only(invoke(s3_put_event(stack.upload(build_artifact()), bucket="someone-elses-bucket")))
    deleted = only(invoke(s3_put_event(key)))
    assert other_bucket["action"] == "ignored"
    assert "not the artifact bucket" in other_bucket["reason"]
    assert deleted["action"] == "ignored"
    assert "no longer exists" in deleted["reason"]


def test_delete_event_is_ignored(stack: Stack) -> None:
    event = json.loads((FIXTURES / "s3_delete_training_output.json").read_text())
    event["Records"][0]["s3"]["bucket"]["name"] = BUCKET
    assert only(invoke(event))["action"] == "ignored"


def test_versioned_key_holding_another_artifact_is_never_overwritten(stack: Stack) -> None:
    # Given the destination key of an upload already holds different bytes (a tampered or colliding key)
    data = build_artifact()
    key = stack.upload(data)
    outcome_version = only(invoke(s3_put_event(key)))["version"]
    destination = LAYOUT.mme_key(CITY, outcome_version)
    stack.s3.put_object(Bucket=BUCKET, Key=destination, Body=b"something else", Metadata={"sha256": "0" * 64})
    stack.dynamodb.delete_item(
        TableName=TABLE, Key={"city": {"S": CITY}, "record": {"S": f"v#{outcome_version}"}}
    )  # forget the version, so only S3 knows it
    # When the event is delivered again
    outcome = only(invoke(s3_put_event(key)))
    # Then the key keeps its content and the outcome says why
    assert outcome["action"] == "rejected"
    assert "never overwritten" in outcome["reason"]
    assert stack.s3.get_object(Bucket=BUCKET, Key=destination)["Body"].read() == b"something else"


def test_transient_dynamodb_failure_raises_and_a_retry_completes(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given DynamoDB throttles the promotion transaction
    throttling = True

    def throttle(**_: Any) -> None:
        if not throttling:
            return
        raise ClientError(
            {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}},
            "TransactWriteItems",
        )

    boto3.setup_default_session()
    boto3.DEFAULT_SESSION.events.register("before-call.dynamodb.TransactWriteItems", throttle)
    handler.service.cache_clear()
    key = stack.upload(build_artifact())
    # When the event is handled, the failure is raised (so Lambda retries) and nothing is live yet
    with pytest.raises(DependencyFailure, match="TransactWriteItems"):
        invoke(s3_put_event(key))
    assert stack.registry.live_models() == []
    # When the retry runs after DynamoDB recovers, it resumes at the gate without copying again
    throttling = False
    objects_before = stack.mme_objects()
    retried = only(invoke(s3_put_event(key)))
    assert retried["action"] == "promoted"
    assert stack.mme_objects() == objects_before
    assert stack.registry.live_model(CITY).version == retried["version"]
    assert stack.registry.version(CITY, retried["version"]).reason.startswith("no live version")


def test_one_event_with_several_records_syncs_each_city(stack: Stack) -> None:
    first = s3_put_event(stack.upload(build_artifact(), city="Dallas_TX"))
    second = s3_put_event(stack.upload(build_artifact(), city="Houston_TX"))
    first["Records"].extend(second["Records"])
    result = invoke(first)
    assert result["counts"] == {"promoted": 2}
    assert [m.city for m in stack.registry.live_models()] == ["Dallas_TX", "Houston_TX"]


def test_bad_quality_gate_fails_with_the_variable_name(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUALITY_GATE", "better-than:5")
    handler.service.cache_clear()
    with pytest.raises(ValueError, match="QUALITY_GATE='better-than:5'"):
        invoke(s3_put_event(stack.upload(build_artifact())))


def test_artifact_written_by_tarfile_gz_mode_with_dot_names_is_accepted(stack: Stack) -> None:
    # SageMaker/`tar czf -C dir .` style: "./forest.npz"
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as archive:
        add_file(archive, "./forest.npz", constant_forest(VALIDATION_PRICE + 21_000))
        add_file(archive, "./metrics.json", json.dumps(realistic_metrics()).encode())
    assert only(invoke(s3_put_event(stack.upload(raw.getvalue()))))["action"] == "promoted"


def test_timestamps_come_from_the_source_object(stack: Stack) -> None:
    key = stack.upload(build_artifact())
    head = stack.s3.head_object(Bucket=BUCKET, Key=key)
    version = only(invoke(s3_put_event(key)))["version"]
    assert version.startswith(head["LastModified"].astimezone(UTC).strftime("%Y%m%dT%H%M%SZ"))


def test_logs_carry_the_s3_request_id_as_correlation_id(stack: Stack) -> None:
    # Given an S3 event whose upload had a request id
    event = s3_put_event(stack.upload(build_artifact()))
    request_id = event["Records"][0]["responseElements"]["x-amz-request-id"]
    logger.set_correlation_id(None)
    # When it is handled
    invoke(event)
    # Then the invocation's structured logs are correlated by it
    assert logger.get_correlation_id() == request_id


def test_with_a_canary_policy_a_better_retrain_enters_a_rollout_once(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given model-sync deployed with ROLLOUT_POLICY=canary:10,days:3 and a live version
    monkeypatch.setenv("ROLLOUT_POLICY", "canary:10,days:3")
    handler.service.cache_clear()
    first = only(invoke(s3_put_event(stack.upload(build_artifact(metrics=realistic_metrics(20_000)), job="a"))))
    assert first["action"] == "promoted"
    # When a better retrain's event arrives, twice (S3 may deliver an event more than once)
    event = s3_put_event(stack.upload(build_artifact(metrics=realistic_metrics(19_000)), job="b"))
    started = only(invoke(event))
    registry_after_start = stack.registry_snapshot()
    again = only(invoke(event))
    # Then the first delivery started a canary on the live item and the second changed nothing
    assert started["action"] == "rollout", started
    assert again["action"] == "duplicate"
    assert stack.registry_snapshot() == registry_after_start
    live = stack.registry.live_model(CITY)
    assert live.version == first["version"]
    assert live.rollout is not None
    assert (live.rollout.candidate_version, live.rollout.mode, live.rollout.weight_bp) == (
        started["version"],
        "canary",
        1000,
    )
    assert live.rollout.started_by == "model-sync"
    assert [model.city for model in stack.registry.rollouts()] == [CITY]
    assert stack.registry.version(CITY, started["version"]).status == "candidate"
    assert [event.action for event in stack.registry.rollout_history(CITY)] == ["started"]


def test_a_city_override_turns_rollouts_off_for_that_city(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROLLOUT_POLICY", "shadow")
    handler.service.cache_clear()
    stack.registry.set_rollout_override(CITY, "off")
    only(invoke(s3_put_event(stack.upload(build_artifact(metrics=realistic_metrics(20_000)), job="a"))))
    better = only(invoke(s3_put_event(stack.upload(build_artifact(metrics=realistic_metrics(19_000)), job="b"))))
    assert better["action"] == "promoted"
    assert stack.registry.live_model(CITY).version == better["version"]
    assert stack.registry.rollouts() == []
