"""The IAM check that guards every integration test (tests/integration/conftest.py) really records and
really denies: model-sync's calls are recorded, granted to ModelSyncFunction, and not to RouterFunction."""

from __future__ import annotations

from dataclasses import replace

from tests.iam import CallRecorder, grants
from tests.integration.model_sync_harness import Stack, invoke, only, s3_put_event
from tests.unit.test_artifacts_inspection import build_artifact, realistic_metrics


def test_model_sync_calls_are_recorded_and_granted_only_to_model_sync(
    stack: Stack, iam_checked_calls: CallRecorder
) -> None:
    # Given a training output, uploaded by the test (not recorded: no handler runs)
    key = stack.upload(build_artifact(metrics=realistic_metrics(ae_p50=20_000)))
    assert iam_checked_calls.calls == []
    # When model-sync handles its event
    assert only(invoke(s3_put_event(key)))["action"] == "promoted"
    # Then its S3 and DynamoDB operations were recorded as ModelSyncFunction's
    operations = {(c.function, c.service, c.operation) for c in iam_checked_calls.calls}
    assert {
        ("ModelSyncFunction", "s3", "HeadObject"),
        ("ModelSyncFunction", "s3", "GetObject"),
        ("ModelSyncFunction", "s3", "CopyObject"),
        ("ModelSyncFunction", "dynamodb", "TransactWriteItems"),
    } <= operations
    # And the template grants every one of them to model-sync
    assert iam_checked_calls.denials() == []
    # And none of its writes to the router (the check can fail)
    router = grants("RouterFunction")
    copy = next(c for c in iam_checked_calls.calls if c.operation == "CopyObject")
    assert [p.action for p in router.denied(replace(copy, function="RouterFunction"))] == [
        "s3:GetObject",
        "s3:PutObject",
        "s3:GetObjectTagging",
        "s3:PutObjectTagging",
    ]
