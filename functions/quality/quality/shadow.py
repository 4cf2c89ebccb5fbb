"""A capture object's rollout side (docs/rollouts.md, "Shadow scoring" and "Evidence"): no boto3, no env.

Per delivered capture object (the ``captures/`` S3 event, after drift), from its lines tagged by a
rollout (``house_prices.captures``: ``rollout``, ``latency_ms``, ``candidate_error``):

1. **Operational evidence** per (city, candidate): one InvokeEndpoint call per distinct
   (``request_id``, ``arm``) (a request's houses may span several lines, each carrying its call's
   ``latency_ms``), its latency into that version's histogram; a ``candidate_error`` line is one failed
   candidate call (its houses were priced by live, whose call it also carries).
2. **Shadow scoring**, off the response path: the lines of a shadow rollout marked ``sampled`` are
   priced by the candidate (``TargetModel = naming.target_model(city, candidate)``) with ONE
   InvokeEndpoint per (object, city, candidate) (split only when the CSV body would exceed
   ``schema.MAX_ENDPOINT_BODY_BYTES``). Each call is the candidate's operational evidence (its latency,
   or a failure). The records ``{prediction_id, candidate version and price, live version and price}``
   are written to ``KeyLayout.shadow_key`` (one object per source object and (city, day) partition),
   where labels find them (``quality.rollout_labels``). A failing candidate call never fails the object:
   it is counted as the candidate's error, its houses stay unpaired, and the object is still claimed.
3. Everything in (1) and (2) is ADDed to the rollouts' evidence items in ONE transaction with the
   object's ledger claim ``rollout#{key}`` (as drift claims ``capture#{key}``), so an object counts once
   whatever S3 redelivers. The claim is looked up first, so a redelivered object is not scored again;
   two concurrent deliveries may both score, and one claim wins (the same shadow key is written twice
   with the same prices).
"""

from __future__ import annotations

import gzip
import json
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import NamedTuple, Protocol

from house_prices import naming, schema
from house_prices.captures import CapturedPrediction
from house_prices.errors import DomainError
from house_prices.ids import parse_prediction_id
from house_prices.naming import KeyLayout
from house_prices.observability import logger
from house_prices.rollout_evidence import RolloutEvidence, evidence_version
from house_prices.rollout_stats import LatencyHistogram, RequestCounts
from quality.logic import CAPTURE_LEDGER_DAYS, CaptureClaims, CaptureReport, Recorded
from quality.rollout_labels import ShadowRecord, is_version

LEDGER_PREFIX = "rollout#"


class Scorer(Protocol):
    """The multi-model endpoint: one InvokeEndpoint, one price per CSV row; domain errors on failure."""

    def invoke(self, target_model: str, csv_body: str) -> list[float]: ...


class ShadowWriter(Protocol):
    def write(self, key: str, body: bytes) -> None: ...


class EvidenceLedger(CaptureClaims, Protocol):
    def claimed(self, ledger_key: str) -> bool:
        """True when the ledger already holds ``ledger_key`` (read consistently)."""
        ...


# --- shadow records: gzipped JSON lines ------------------------------------------------------------


def encode_records(records: Sequence[ShadowRecord]) -> bytes:
    lines = (
        json.dumps(
            {
                "prediction_id": r.prediction_id,
                "candidate_version": r.candidate_version,
                "candidate_price": r.candidate_price,
                "live_version": r.live_version,
                "live_price": r.live_price,
            },
            separators=(",", ":"),
        )
        for r in records
    )
    # mtime=0: the same records give the same bytes (a rescored object rewrites an identical object).
    return gzip.compress(("\n".join(lines) + "\n").encode(), mtime=0)


def parse_records(body: bytes) -> Iterator[ShadowRecord]:
    """Every readable record of a shadow object (gzipped or not); a torn or foreign line is skipped."""
    try:
        text = (gzip.decompress(body) if body[:2] == b"\x1f\x8b" else body).decode("utf-8", errors="replace")
    except (OSError, EOFError):
        return
    for line in text.splitlines():
        try:
            item = json.loads(line)
            record = ShadowRecord(
                str(item["prediction_id"]),
                str(item["candidate_version"]),
                float(item["candidate_price"]),
                str(item["live_version"]),
                float(item["live_price"]),
            )
        except (ValueError, KeyError, TypeError):
            continue
        if math.isfinite(record.candidate_price):
            yield record


# --- what the tagged lines say ---------------------------------------------------------------------


class Tag(NamedTuple):
    candidate: str
    mode: str
    arm: str
    sampled: bool


def _tag(prediction: CapturedPrediction) -> Tag | None:
    """A prediction's rollout tag, or None when untagged or not a tag this code knows."""
    tag = prediction.rollout
    if not isinstance(tag, Mapping):
        return None
    candidate, mode, arm = tag.get("candidate"), tag.get("mode"), tag.get("arm")
    if not is_version(candidate) or mode not in ("shadow", "canary") or arm not in ("live", "candidate"):
        return None
    return Tag(str(candidate), str(mode), str(arm), tag.get("sampled") is True)


def operational_evidence(
    predictions: Sequence[CapturedPrediction],
) -> tuple[dict[tuple[str, str], RolloutEvidence], int]:
    """(city, candidate) → the calls the tagged lines record, and how many calls that is in all."""
    calls: dict[tuple[str, str], dict[tuple[str, str], float | None]] = {}
    failed: dict[tuple[str, str], set[str]] = {}
    for prediction in predictions:
        tag = _tag(prediction)
        if tag is None:
            continue
        arm = tag.arm
        key = (prediction.city, tag.candidate)
        seen = calls.setdefault(key, {})
        if (prediction.request_id, arm) not in seen:
            seen[(prediction.request_id, arm)] = prediction.latency_ms
        if prediction.candidate_error is not None:
            failed.setdefault(key, set()).add(prediction.request_id)
    evidence: dict[tuple[str, str], RolloutEvidence] = {}
    total = 0
    for key, seen in calls.items():
        failures = len(failed.get(key, ()))
        latencies: dict[str, list[float]] = {"live": [], "candidate": []}
        counts = {"live": 0, "candidate": 0}
        for (_, arm), latency in seen.items():
            counts[arm] += 1
            if latency is not None and math.isfinite(latency) and latency >= 0:
                latencies[arm].append(latency)
        total += counts["live"] + counts["candidate"] + failures
        evidence[key] = RolloutEvidence(
            live_requests=RequestCounts(counts["live"], 0),
            candidate_requests=RequestCounts(counts["candidate"] + failures, failures),
            live_latency=LatencyHistogram.of(*latencies["live"]),
            candidate_latency=LatencyHistogram.of(*latencies["candidate"]),
        )
    return evidence, total


def shadow_batches(predictions: Sequence[CapturedPrediction]) -> dict[tuple[str, str], list[CapturedPrediction]]:
    """(city, candidate) → the live predictions a shadow rollout sampled, once per prediction id."""
    batches: dict[tuple[str, str], dict[str, CapturedPrediction]] = {}
    for prediction in predictions:
        tag = _tag(prediction)
        if tag is None or tag.mode != "shadow" or tag.arm != "live" or not tag.sampled:
            continue
        if prediction.version == tag.candidate or not _made_on(prediction.prediction_id):
            continue  # priced by the candidate already, or an id no label can name: nothing to pair
        batches.setdefault((prediction.city, tag.candidate), {}).setdefault(prediction.prediction_id, prediction)
    return {key: list(found.values()) for key, found in batches.items()}


def _made_on(prediction_id: str) -> str | None:
    """The UTC day a prediction id was made (its records' partition), or None for an id the API did not make."""
    try:
        return parse_prediction_id(prediction_id)[0].date().isoformat()
    except DomainError:
        return None


def csv_chunks(rows: Sequence[Sequence[float]], limit: int = schema.MAX_ENDPOINT_BODY_BYTES) -> list[tuple[int, str]]:
    """(first row's index, CSV body) per InvokeEndpoint: as few as the body limit allows (usually one)."""
    chunks: list[tuple[int, str]] = []
    lines: list[str] = []
    size = start = 0
    for index, row in enumerate(rows):
        line = schema.rows_to_csv([row])
        if lines and size + len(line) > limit:
            chunks.append((start, "".join(lines)))
            lines, size, start = [], 0, index
        lines.append(line)
        size += len(line)
    if lines:
        chunks.append((start, "".join(lines)))
    return chunks


class RolloutCaptures:
    """``quality.logic.RolloutCaptures``: operational evidence, shadow scoring and their one claim per object."""

    def __init__(
        self,
        ledger: EvidenceLedger,
        layout: KeyLayout,
        scorer: Scorer | None = None,
        writer: ShadowWriter | None = None,
        clock: Callable[[], float] = time.perf_counter,
        body_limit: int = schema.MAX_ENDPOINT_BODY_BYTES,
    ) -> None:
        self.body_limit = body_limit
        self.ledger = ledger
        self.layout = layout
        self.scorer = scorer
        self.writer = writer
        self._clock = clock

    def record_object(
        self, bucket: str, key: str, etag: str, predictions: Sequence[CapturedPrediction], now: datetime
    ) -> CaptureReport:
        tagged = [p for p in predictions if p.rollout is not None]
        if not tagged:
            return CaptureReport()
        ledger_key = f"{LEDGER_PREFIX}{key}"
        if self.ledger.claimed(ledger_key):
            return CaptureReport(rollout_redelivered=1)
        evidence, calls = operational_evidence(tagged)
        report = CaptureReport(rollout_calls=calls)
        records: dict[tuple[str, str], list[ShadowRecord]] = {}
        for (city, candidate), batch in shadow_batches(tagged).items():
            scored, candidate_calls = self._score(city, candidate, batch)
            evidence[(city, candidate)] = evidence.get((city, candidate), RolloutEvidence()).merge(candidate_calls)
            report.shadow_scored += len(scored)
            report.shadow_failed_calls += candidate_calls.candidate_requests.errors
            for record in scored:
                records.setdefault((city, _made_on(record.prediction_id) or ""), []).append(record)
        if records and self.writer is not None:
            for (city, day), found in sorted(records.items()):
                self.writer.write(self.layout.shadow_key(city, day, key), encode_records(found))
        increments = {
            (city, evidence_version(candidate)): {name: int(value) for name, value in found.increments().items()}
            for (city, candidate), found in evidence.items()
            if found.increments()
        }
        if increments:
            recorded = self.ledger.record_captures(
                ledger_key=ledger_key,
                source=f"s3://{bucket}/{key}@{etag}",
                increments=increments,
                expires_at=int((now + timedelta(days=CAPTURE_LEDGER_DAYS)).timestamp()),
            )
            if recorded is not Recorded.COUNTED:
                return CaptureReport(rollout_redelivered=1)  # a concurrent delivery counted it first
        return report

    def _score(
        self, city: str, candidate: str, batch: Sequence[CapturedPrediction]
    ) -> tuple[list[ShadowRecord], RolloutEvidence]:
        """The candidate's prices of ``batch`` (in as few calls as the body limit allows) and its calls."""
        if self.scorer is None:
            logger.warning("Shadow predictions not scored: no endpoint configured", extra={"city": city})
            return [], RolloutEvidence()
        rows = [[p.features[name] for name in schema.FEATURE_NAMES] for p in batch]
        target = naming.target_model(city, candidate)
        records: list[ShadowRecord] = []
        calls = RolloutEvidence()
        chunks = csv_chunks(rows, self.body_limit)
        for index, (start, body) in enumerate(chunks):
            end = chunks[index + 1][0] if index + 1 < len(chunks) else len(rows)
            invoked = self._clock()
            try:
                prices = self.scorer.invoke(target, body)
                if len(prices) != end - start:
                    raise ValueError(f"{len(prices)} prices for {end - start} rows")
            except (DomainError, ValueError) as error:
                # The candidate's failure is its evidence, never a failure of the object: stop calling it.
                calls = calls.merge(RolloutEvidence.call("candidate", None, failed=True))
                logger.warning(
                    "The shadow candidate failed; its houses stay unpaired",
                    extra={"city": city, "candidate": candidate, "rows": len(rows) - start, "error": str(error)[:256]},
                )
                break
            calls = calls.merge(RolloutEvidence.call("candidate", (self._clock() - invoked) * 1000))
            records.extend(
                ShadowRecord(p.prediction_id, candidate, price, p.version, p.price)
                for p, price in zip(batch[start:end], prices, strict=True)
            )
        return records, calls
