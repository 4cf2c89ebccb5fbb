"""model-sync killed between the copy and the registry write, then retried: nothing lost, nothing doubled."""

from __future__ import annotations

import pytest

from house_prices.registry import ModelRegistry
from tests.integration.model_sync_harness import CITY, Stack, invoke, only, s3_put_event
from tests.unit.test_artifacts_inspection import build_artifact, realistic_metrics


class ProcessKilled(BaseException):
    """Stands in for SIGKILL: nothing after the raising line runs, and no handler catches it."""


def test_a_sync_killed_after_the_copy_completes_on_retry(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a valid training output, and a model-sync that dies right after copying it
    key = stack.upload(build_artifact(realistic_metrics()))
    event = s3_put_event(key)
    real_record = ModelRegistry.record_version

    def die(self: ModelRegistry, *args: object, **kwargs: object) -> object:
        raise ProcessKilled

    monkeypatch.setattr(ModelRegistry, "record_version", die)
    with pytest.raises(ProcessKilled):
        invoke(event)
    copied = stack.mme_objects()
    # The immutable copy exists, but no version was registered yet
    assert len(copied) == 1
    assert stack.registry_snapshot() == []
    # When the event is delivered again (Lambda's retry) to a healthy model-sync
    monkeypatch.setattr(ModelRegistry, "record_version", real_record)
    result = only(invoke(event))
    # Then the version is registered and promoted, from the same single copy (not copied twice)
    assert result["action"] == "promoted"
    assert stack.mme_objects().keys() == copied.keys()
    live = stack.registry.live_model(CITY)
    assert live is not None
    assert live.version == result["version"]
    # And a third delivery is a no-op duplicate
    assert only(invoke(event))["action"] in {"duplicate", "promoted"}
    assert stack.mme_objects().keys() == copied.keys()
