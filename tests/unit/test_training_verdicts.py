"""--wait-live: each published artifact's verdict comes from model-sync's record of exactly that upload."""

from __future__ import annotations

from dataclasses import replace

from house_prices.registry import PENDING_REASON, ModelVersion, Status
from tests.model_versions import model_version
from training.verdicts import wait_for_verdicts


def recorded(city: str, version: str, key: str, status: Status, reason: str = "") -> ModelVersion:
    return replace(model_version(city, version, status, reason=reason), source_key=key)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class GrowingRegistry:
    """Versions appear after a number of polls, as model-sync records them."""

    def __init__(self, timeline: dict[str, list[list[ModelVersion]]]) -> None:
        self.timeline = timeline
        self.polls: dict[str, int] = {}

    def versions(self, city: str) -> list[ModelVersion]:
        step = self.polls.get(city, 0)
        self.polls[city] = step + 1
        states = self.timeline[city]
        return states[min(step, len(states) - 1)]


def test_verdicts_wait_for_the_gate_and_match_the_published_key() -> None:
    # Given A's upload recorded pending then promoted, B's held back, and an older version of A under another key
    key_a, key_b = "P/model_artifacts/A/j/output/model.tar.gz", "P/model_artifacts/B/j/output/model.tar.gz"
    old_a = recorded("A", "20261201T000000Z-00000000", "P/model_artifacts/A/old/output/model.tar.gz", "live")
    pending_a = recorded("A", "20261207T000000Z-0000000a", key_a, "standby", PENDING_REASON)
    live_a = recorded("A", "20261207T000000Z-0000000a", key_a, "live", "first version")
    held_b = recorded("B", "20261207T000000Z-0000000b", key_b, "standby", "worse than live by 9 %")
    registry = GrowingRegistry({"A": [[old_a], [pending_a, old_a], [live_a, old_a]], "B": [[held_b]]})
    clock = Clock()
    # When the run waits for them
    verdicts = wait_for_verdicts(registry, {"A": key_a, "B": key_b}, 10, sleep=clock.sleep, clock=clock)
    # Then A is live (the pending record was not taken for a decision) and B is held back with the gate's reason
    assert (verdicts["A"].status, verdicts["A"].reason) == ("live", "first version")
    assert (verdicts["B"].status, verdicts["B"].reason) == ("standby", "worse than live by 9 %")
    assert registry.polls["A"] == 3


def test_no_record_in_time_is_pending_not_a_guess() -> None:
    clock = Clock()
    registry = GrowingRegistry({"A": [[]]})
    verdicts = wait_for_verdicts(registry, {"A": "k"}, 2, sleep=clock.sleep, clock=clock)
    assert verdicts["A"].status == "pending"
    assert clock.now >= 2
