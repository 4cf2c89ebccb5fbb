"""`python -m ops rollout ...` against DynamoDB from moto (mock_aws), run as in tests/integration/test_ops_cli.py."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from boto3.dynamodb.types import TypeSerializer

from house_prices.rollout_evidence import RolloutEvidence, evidence_version
from house_prices.rollout_stats import GuardPolicy
from local.moto_services import create_table
from ops.cli import main
from tests.integration.model_sync_harness import CITY, Stack
from tests.integration.test_ops_cli import run
from tests.model_versions import model_version

QUALITY_TABLE = "house-prices-local-QualityTable"
OLD, LIVE, CAND, NEWER = (
    "20261125T030000Z-99999999",
    "20261125T040000Z-aaaaaaaa",
    "20261125T050000Z-bbbbbbbb",
    "20261125T060000Z-cccccccc",
)


@pytest.fixture
def aws(stack: Stack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Stack:
    """CITY with LIVE live; OLD and CAND standby, NEWER rejected; the quality table exists (empty)."""
    monkeypatch.chdir(tmp_path)  # never pick up a developer's .local/stack.json
    monkeypatch.delenv("ROLLOUT_POLICY", raising=False)
    for name, status in ((OLD, "standby"), (LIVE, "standby"), (CAND, "standby"), (NEWER, "rejected")):
        stack.registry.record_version(model_version(CITY, name, status, reason="pending"))
    stack.registry.promote(CITY, LIVE)
    create_table(stack.dynamodb, QUALITY_TABLE)
    return stack


def add_evidence(stack: Stack, candidate: str, evidence: RolloutEvidence) -> None:
    serializer = TypeSerializer()
    plain = {"city": CITY, "version": evidence_version(candidate), **evidence.to_item()}
    item = {
        name: serializer.serialize(Decimal(repr(value)) if isinstance(value, float) else value)
        for name, value in plain.items()
    }
    stack.dynamodb.put_item(TableName=QUALITY_TABLE, Item=item)


def test_an_operator_starts_weighs_watches_and_promotes_a_canary(
    aws: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given no rollout anywhere
    assert run(capsys, "rollout", "status") == (0, [])
    # When the operator starts one without naming the version
    code, started = run(capsys, "rollout", "start", CITY)
    # Then the newest standby version newer than live (not the rejected one) is the candidate, canary at 10 %
    assert code == 0
    assert (started["candidate_version"], started["mode"], started["weight_bp"], started["weight_pct"]) == (
        CAND,
        "canary",
        1000,
        10.0,
    )
    assert (started["live_version"], started["started_by"]) == (LIVE, "operator")
    assert started["policy"] == GuardPolicy().as_dict()
    code, listed = run(capsys, "rollout", "status")
    assert [(r["city"], r["candidate_version"]) for r in listed] == [(CITY, CAND)]
    # When the weight goes to 25 %
    code, weighed = run(capsys, "rollout", "weight", CITY, "25")
    assert (code, weighed["weight_bp"], weighed["revision"]) == (0, 2500, started["revision"] + 1)
    # Then the city's status shows the rollout, that no evidence exists yet, and the history
    code, status = run(capsys, "rollout", "status", CITY, "--quality-table", QUALITY_TABLE)
    assert code == 0
    assert status["rollout"]["weight_bp"] == 2500
    assert status["evidence"] is None
    assert [(e["action"], e["actor"]) for e in status["history"]] == [("weight", "operator"), ("started", "operator")]
    # When the quality function has gathered evidence / Then status shows it
    evidence = RolloutEvidence()
    for live_price, candidate_price in ((110.0, 104.0), (95.0, 99.0), (120.0, 101.0)):
        evidence = evidence.merge(RolloutEvidence.paired_label(live_price, candidate_price, 100.0))
    add_evidence(aws, CAND, evidence)
    code, status = run(capsys, "rollout", "status", CITY, "--quality-table", QUALITY_TABLE)
    assert status["evidence"] == evidence.summary() != RolloutEvidence().summary()
    # When the operator promotes / Then the candidate is live and the rollout is over
    code, promoted = run(capsys, "rollout", "promote", CITY)
    assert (code, promoted["version"], promoted["previous_version"]) == (0, CAND, LIVE)
    assert aws.registry.live_model(CITY).version == CAND
    assert aws.registry.version(CITY, LIVE).status == "standby"
    code, status = run(capsys, "rollout", "status", CITY)
    assert (status["rollout"], status["history"][0]["action"]) == (None, "promoted")


def test_an_operator_aborts_a_shadow_rollout_with_its_own_guards(
    aws: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    code, started = run(
        capsys,
        "rollout",
        "start",
        CITY,
        "--version",
        CAND,
        "--mode",
        "shadow",
        "--days",
        "3",
        "--guard",
        "alpha=0.01",
        "--guard",
        "min_labels=200",
    )
    assert code == 0
    assert (started["mode"], started["weight_bp"]) == ("shadow", 10_000)
    assert (started["policy"]["alpha"], started["policy"]["min_labels"]) == (0.01, 200)
    code, aborted = run(capsys, "rollout", "abort", CITY, "--reason", "wrong city data")
    assert (code, aborted["outcome"]) == (0, "aborted")
    assert aws.registry.live_model(CITY).rollout is None
    assert aws.registry.version(CITY, CAND).status == "standby"
    assert aws.registry.version(CITY, CAND).reason == "aborted by operator: wrong city data"
    # And without a quality table the status still shows the registry state, saying why
    code, status = run(capsys, "rollout", "status", CITY)
    assert code == 0
    assert [e["action"] for e in status["history"]] == ["aborted", "started"]


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (("rollout", "weight", CITY, "20"), "NoRollout"),
        (("rollout", "promote", CITY), "NoRollout"),
        (("rollout", "abort", CITY), "NoRollout"),
        (("rollout", "start", CITY, "--version", NEWER), "PromotionRefused"),
        (("rollout", "start", CITY, "--version", OLD), "PromotionRefused"),
        (("rollout", "start", CITY, "--weight", "150"), "InvalidInput"),
        (("rollout", "start", CITY, "--guard", "alpha=2"), "InvalidInput"),
        (("rollout", "start", CITY, "--guard", "speed=3"), "InvalidInput"),
        (("rollout", "start", "Nowhere_XX"), "UnknownCity"),
        (("rollout", "status", "../etc"), "InvalidCityName"),
        (("rollout", "policy", CITY, "canary"), "InvalidInput"),
        (("rollout", "policy", CITY, "off", "--clear"), "InvalidInput"),
    ],
)
def test_refusals_are_one_json_error_naming_its_kind(
    aws: Stack, capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], error: str
) -> None:
    code, problem = run(capsys, *argv)
    assert (code, problem["error"]) == (1, error)
    assert aws.registry.live_model(CITY).rollout is None


def test_a_second_rollout_needs_replace(aws: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "rollout", "start", CITY, "--version", CAND)[0] == 0
    aws.registry.record_version(model_version(CITY, "20261125T070000Z-dddddddd"))
    code, problem = run(capsys, "rollout", "start", CITY)
    assert (code, problem["error"]) == (1, "RolloutConflict")
    code, replaced = run(capsys, "rollout", "start", CITY, "--replace")
    assert (code, replaced["candidate_version"]) == (0, "20261125T070000Z-dddddddd")
    assert aws.registry.version(CITY, CAND).status == "standby"


def test_the_city_override_is_set_shown_and_cleared(
    aws: Stack, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ROLLOUT_POLICY", "shadow")
    assert run(capsys, "rollout", "policy", CITY)[1] == {"city": CITY, "override": None, "deployment": "shadow"}
    # Stored in its canonical spelling
    assert run(capsys, "rollout", "policy", CITY, "canary:5.0,days:3")[1]["override"] == "canary:5,days:3"
    assert aws.registry.rollout_override(CITY) == "canary:5,days:3"
    assert run(capsys, "rollout", "policy", CITY, "--clear")[1]["override"] is None
    assert aws.registry.rollout_override(CITY) is None


def test_tables_for_people(aws: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rollout", "start", CITY, "--weight", "2.5"]) == 0
    assert "Rollout started" in capsys.readouterr().out
    assert main(["rollout", "status", CITY, "--quality-table", QUALITY_TABLE]) == 0
    out = capsys.readouterr().out
    assert f"Rollout of {CITY}" in out
    assert CAND in out  # ids are never cut
    assert "Evidence: none yet" in out
    assert f"History of {CITY} (newest first)" in out
    assert "Rollout policy override: none" in out


def test_evaluate_runs_the_deciders_pass_at_a_simulated_time(aws: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    # Given a one-day shadow rollout with no evidence
    code, started = run(capsys, "rollout", "start", CITY, "--version", CAND, "--mode", "shadow", "--days", "1")
    assert (code, started["mode"]) == (0, "shadow")
    # When the operator evaluates before the deadline / Then it waits
    code, waited = run(
        capsys, "rollout", "evaluate", "--at", "2020-01-01T00:00:00+00:00", "--quality-table", QUALITY_TABLE
    )
    assert (code, waited["in_progress"], [d["outcome"] for d in waited["decisions"]]) == (0, 1, ["waiting"])
    # When the operator evaluates past the deadline / Then the rollout times out and live stays
    code, ended = run(
        capsys, "rollout", "evaluate", "--at", "2100-01-01T00:00:00+00:00", "--quality-table", QUALITY_TABLE
    )
    assert (code, [d["outcome"] for d in ended["decisions"]]) == (0, ["timed_out"])
    assert aws.registry.live_model(CITY).version == LIVE
    assert aws.registry.find_live(CITY).rollout is None
    # And a time that is not one is refused naming the field
    code, refused = run(capsys, "rollout", "evaluate", "--at", "tomorrow", "--quality-table", QUALITY_TABLE)
    assert (code, refused["error"]) == (1, "InvalidInput")
    assert "--at" in refused["message"]
