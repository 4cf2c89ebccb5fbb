"""The registry's rollout methods as the decider uses them (``house_prices.registry.ModelRegistry``).

``ModelRegistry`` already raises domain errors only; this adapter narrows the outcome names the decider
writes to the registry's ``RolloutOutcome`` and leaves everything else to it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from house_prices.registry import LiveModel, ModelRegistry, RolloutOutcome

# What the decider itself may end a rollout with (an operator aborts; a newer candidate supersedes).
DECIDER_OUTCOMES = frozenset({"rolled_back", "timed_out"})


class RegistryRollouts:
    def __init__(self, registry: ModelRegistry) -> None:
        self._registry = registry

    def rollouts(self) -> list[LiveModel]:
        return self._registry.rollouts()

    def promote_rollout(
        self, city: str, candidate_version: str, actor: str, reason: str, evidence: dict[str, Any], now: datetime
    ) -> LiveModel:
        return self._registry.promote_rollout(city, candidate_version, actor, reason, evidence, now=now)

    def end_rollout(
        self,
        city: str,
        candidate_version: str,
        outcome: str,
        actor: str,
        reason: str,
        evidence: dict[str, Any],
        now: datetime,
    ) -> None:
        if outcome not in DECIDER_OUTCOMES:
            raise ValueError(f"the decider does not end a rollout as {outcome!r}")
        rollout_outcome = cast(RolloutOutcome, outcome)
        self._registry.end_rollout(city, candidate_version, rollout_outcome, actor, reason, evidence, now=now)
