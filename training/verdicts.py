"""What model-sync decided about each published artifact: live, held back by the gate, or rejected.

Publishing ends at an S3 upload; the verdict comes later, from model-sync's registry record for that
upload (``ModelVersion.source_key`` is the training-output key). ``--wait-live`` polls the registry
until every published segment has one, so a run reports what is actually served, not only what trained.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from house_prices.registry import PENDING_REASON, ModelVersion

POLL_SECONDS = 0.5


class Versions(Protocol):
    def versions(self, city: str) -> list[ModelVersion]: ...


@dataclass(frozen=True)
class Verdict:
    city: str
    # "live", "standby" (held back by the gate), "rejected", "pending" (no record in time), or "candidate":
    # past the gate and in a shadow or canary rollout, which may last days (``python -m ops rollout status CITY``
    # tells how it ends: live, rejected when rolled back, or standby)
    status: str
    version: str = ""
    reason: str = ""


def wait_for_verdicts(
    registry: Versions,
    published: Mapping[str, str],
    timeout_seconds: float,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Verdict]:
    """``published``: city → training-output key. Returns each city's verdict once recorded, or ``pending``."""
    verdicts: dict[str, Verdict] = {}
    deadline = clock() + timeout_seconds
    while True:
        for city, key in published.items():
            if city in verdicts:
                continue
            record = next((v for v in registry.versions(city) if v.source_key == key), None)
            if record is not None and record.reason != PENDING_REASON:
                verdicts[city] = Verdict(city, record.status, record.version, record.reason)
        if len(verdicts) == len(published) or clock() >= deadline:
            break
        sleep(POLL_SECONDS)
    for city in published:
        verdicts.setdefault(city, Verdict(city, "pending", reason=f"no model-sync record within {timeout_seconds:g} s"))
    return verdicts
