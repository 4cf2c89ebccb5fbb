"""The one home of the quality function's rollout-side fakes and of tagged capture lines.

``FakeScorer`` (the endpoint), ``FakeShadowBucket`` (shadow objects: written bytes, read back through
``quality.shadow.parse_records``), ``FakeEvidenceLedger`` (a capture object's claim and its ADDs) and
``FakeLabelStore`` (a label's claim, its aggregate and its rollout evidence, in one step) keep the
adapters' contracts. ``tagged_lines`` builds capture lines with the router's real writer
(``house_prices.captures.capture_lines``) and reads them back with the real parser. The names of the
quality function's moto resources (``quality_aws`` in tests/integration/conftest.py) live here too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from house_prices import captures, ids
from house_prices.captures import CapturedPrediction
from house_prices.errors import EndpointUnavailable
from house_prices.ids import UlidGenerator
from house_prices.labels import Label
from house_prices.live_quality import Aggregate
from house_prices.naming import KeyLayout
from house_prices.rollout_evidence import RolloutEvidence, evidence_version
from quality.logic import Priced, Recorded, VersionFacts
from quality.rollout_labels import EvidenceIncrement, ShadowRecord
from quality.shadow import encode_records, parse_records

CITY = "Chicago_IL"
LIVE = "20261125T040000Z-1a2b3c4d"
CANDIDATE = "20261201T040000Z-5e6f7a8b"
ROW = (2005.0, 3100.0, 4.0, 2.5, 1.1, 2.0)
BUCKET = "quality-bucket"
LAYOUT = KeyLayout("DEMO_MME_SCIKIT_V1")
STACK = "house-prices"
QUALITY_TABLE = f"{STACK}-QualityTable"
LEDGER_TABLE = f"{STACK}-LabelLedgerTable"
REGISTRY_TABLE = f"{STACK}-RegistryTable"
HOUSES_TABLE = f"{STACK}-HousePredictionsTable"
TABLES = (QUALITY_TABLE, LEDGER_TABLE, REGISTRY_TABLE, HOUSES_TABLE)


@dataclass(frozen=True)
class QualityAws:
    """The quality function's clients on moto, and its feedback queue."""

    s3: Any
    dynamodb: Any
    sqs: Any
    queue_url: str


def prediction_ids(made_at: datetime, count: int, city: str = CITY, seed: int = 1) -> list[str]:
    generator = UlidGenerator(clock_ms=lambda: int(made_at.timestamp() * 1000), random_bits=lambda: seed)
    return ids.new_prediction_ids(city, count, generator)


def tagged_lines(
    pids: Sequence[str],
    prices: Sequence[float],
    *,
    mode: str,
    arm: str = "live",
    sampled: bool = True,
    version: str = LIVE,
    request_id: str = "req-1",
    latency_ms: float | None = 12.5,
    candidate_error: str | None = None,
    candidate: str = CANDIDATE,
    city: str = CITY,
    house_ids: Sequence[str | None] | None = None,
) -> list[CapturedPrediction]:
    """One request's capture line(s) for one routing group, as the router writes them, read back."""
    lines = captures.capture_lines(
        city=city,
        version=version,
        request_id=request_id,
        prediction_ids=pids,
        rows=[ROW] * len(pids),
        prices=prices,
        house_ids=house_ids or [None] * len(pids),
        rollout=captures.rollout_tag(candidate, mode, arm, sampled),
        latency_ms=latency_ms,
        candidate_error=candidate_error,
    )
    return [p for line in lines for p in captures.parse_capture_line(line)]


class FakeScorer:
    """The endpoint: a price per row (row count × ``price``), or ``fail`` raising the adapter's domain error."""

    def __init__(self, price: float = 100_000.0, fail: bool = False) -> None:
        self.price = price
        self.fail = fail
        self.calls: list[tuple[str, int]] = []  # (target model, rows)

    def invoke(self, target_model: str, csv_body: str) -> list[float]:
        rows = csv_body.count("\n")
        self.calls.append((target_model, rows))
        if self.fail:
            raise EndpointUnavailable("InvokeEndpoint failed (ValidationError): no such model")
        return [self.price] * rows


class FakeShadowBucket:
    """Shadow objects by key (``ShadowWriter``) and their records by (city, day) partition (``ShadowSource``)."""

    def __init__(self, prefix: str = "") -> None:
        self.objects: dict[str, bytes] = {}
        self.writes = 0
        self.reads: list[tuple[str, str]] = []

    def write(self, key: str, body: bytes) -> None:
        self.writes += 1
        self.objects[key] = body

    def partition(self, city: str, day: str) -> Iterable[ShadowRecord]:
        self.reads.append((city, day))
        marker = f"city={city}/date={day}/"
        return [r for key, body in sorted(self.objects.items()) if marker in key for r in parse_records(body)]

    def add(self, key: str, records: Sequence[ShadowRecord]) -> None:
        self.objects[key] = encode_records(records)


class FakeEvidenceLedger:
    """``quality.shadow.EvidenceLedger``: a capture object's claim and its ADDs in one step."""

    def __init__(self) -> None:
        self.ledger: dict[str, str] = {}
        self.items: dict[tuple[str, str], dict[str, Any]] = {}

    def claimed(self, ledger_key: str) -> bool:
        return ledger_key in self.ledger

    def record_captures(
        self, *, ledger_key: str, source: str, increments: Mapping[tuple[str, str], Mapping[str, int]], expires_at: int
    ) -> Recorded:
        if ledger_key in self.ledger:
            return Recorded.REDELIVERED
        self.ledger[ledger_key] = source
        for pair, counts in increments.items():
            add(self.items.setdefault(pair, {}), counts)
        return Recorded.COUNTED

    def evidence(self, city: str = CITY, candidate: str = CANDIDATE) -> RolloutEvidence:
        return RolloutEvidence.from_item(self.items.get((city, evidence_version(candidate)), {}))


class FakeLabelStore:
    """``quality.logic.QualityStore``: claim once; the aggregate and the rollout evidence ADDed in the same step."""

    def __init__(self) -> None:
        self.ledger: dict[str, str] = {}
        self.items: dict[tuple[str, str], dict[str, Any]] = {}

    def record(
        self,
        *,
        label: Label,
        source: str,
        prediction: Priced,
        aggregate: Aggregate,
        offline_ae_p50: float | None,
        expires_at: int,
        evidence: EvidenceIncrement | None = None,
    ) -> Recorded:
        claims = {label.key, f"id#{prediction.prediction_id}"}
        if label.key in self.ledger:
            return Recorded.REDELIVERED if self.ledger[label.key] == source else Recorded.DUPLICATE
        if claims & set(self.ledger):
            return Recorded.DUPLICATE
        self.ledger.update(dict.fromkeys(claims, source))
        add(self.items.setdefault((prediction.city, prediction.version), {}), aggregate.increments())
        if evidence is not None:
            add(
                self.items.setdefault((evidence.city, evidence_version(evidence.candidate_version)), {}),
                evidence.increments,
            )
        return Recorded.COUNTED

    def live_item(self, city: str, version: str) -> Mapping[str, Any]:
        return dict(self.items.get((city, version), {}))

    def save_degraded(self, city: str, version: str, degraded: bool, seen_count: int, was_degraded: bool) -> bool:
        return True

    def evidence(self, city: str = CITY, candidate: str = CANDIDATE) -> RolloutEvidence:
        return RolloutEvidence.from_item(self.items.get((city, evidence_version(candidate)), {}))


def add(item: dict[str, Any], increments: Mapping[str, int | float]) -> None:
    for name, value in increments.items():
        item[name] = item.get(name, 0) + value


class FakeCaptureObjects:
    """Delivered capture objects by key (``CaptureObjects``) and their predictions by partition (``CaptureSource``)."""

    def __init__(self) -> None:
        self.objects: dict[str, list[CapturedPrediction]] = {}

    def read_object(self, bucket: str, key: str) -> tuple[list[CapturedPrediction], str] | None:
        return (self.objects[key], "etag1") if key in self.objects else None

    def partition(self, city: str, day: str) -> Iterable[CapturedPrediction]:
        return [
            p
            for predictions in self.objects.values()
            for p in predictions
            if p.city == city and ids.parse_prediction_id(p.prediction_id)[0].date().isoformat() == day
        ]


class FakeOffline:
    def facts(self, city: str, version: str) -> VersionFacts:
        return VersionFacts(None, version == LIVE)
