"""One way for tests to make registry records: a ``ModelVersion`` with keys laid out as model-sync lays them, and
a ``Rollout`` as ``ModelRegistry.start_rollout`` writes it (for fakes that hand the router or the decider one)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from house_prices.naming import KeyLayout, target_model
from house_prices.registry import ModelVersion, Rollout, RolloutMode, Status

CREATED_AT = "2026-11-25T04:00:00+00:00"
STARTED_AT = "2026-11-26T09:00:00+00:00"
DEADLINE = "2026-12-10T09:00:00+00:00"


def model_version(
    city: str,
    version: str,
    status: Status = "standby",
    *,
    metrics: Mapping[str, Any] | None = None,
    reason: str = "",
    prefix: str = "p",
) -> ModelVersion:
    """``city``'s ``version`` as model-sync records it: the MME key, the training job's output key, and a
    sha256 that begins with the version's digest, as ``naming.make_version`` derives it."""
    layout = KeyLayout(prefix)
    return ModelVersion(
        city=city,
        version=version,
        status=status,
        artifact_key=layout.mme_key(city, version),
        source_key=layout.training_output_key(city, "job"),
        sha256=version[-8:] * 8,
        created_at=CREATED_AT,
        metrics={"r2": 0.9} if metrics is None else dict(metrics),
        reason=reason,
    )


def rollout(
    city: str,
    candidate_version: str,
    mode: RolloutMode = "canary",
    weight_bp: int = 1000,
    *,
    salt: str = "0123456789abcdef",
    started_at: str = STARTED_AT,
    deadline: str = DEADLINE,
    revision: int = 2,
    policy: Mapping[str, Any] | None = None,
    started_by: str = "model-sync",
) -> Rollout:
    """A running rollout of ``candidate_version`` as the registry returns it on ``LiveModel.rollout``."""
    return Rollout(
        candidate_version=candidate_version,
        candidate_target_model=target_model(city, candidate_version),
        mode=mode,
        weight_bp=weight_bp,
        salt=salt,
        started_at=started_at,
        deadline=deadline,
        revision=revision,
        policy=dict(policy or {}),
        started_by=started_by,
    )
