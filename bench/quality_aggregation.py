"""Live quality aggregation target: 1,000,000 captured predictions and 100,000 labels over 10,000 city models
aggregated in ≤ 60 s on one core and ≤ 512 MiB, with ≥ 99 % of in-window labels joined (by prediction id and by
(city, house_id)), injected duplicates and unknown ids reported and never double counted.

    .venv/bin/python bench/quality_aggregation.py [--quick] [--docs docs/benchmarks.md]

1. **Data** (not timed), written to a temporary directory in the layouts of AWS: capture objects as Firehose
   delivers them (``captures/city=…/date=…/…jsonl.gz``, gzipped capture lines made by
   ``house_prices.captures.capture_lines`` with real prediction ids), one object per (city, day); 30 % of the
   houses carry a ``house_id``, 10 % of those priced twice; label files as CSV under ``labels/`` (half by
   prediction id, half by (city, house_id)), plus 1 % duplicates (the same label in another file) and
   1 % unknown (ids never made, houses never priced).
2. **Measured**, each in a fresh process (its own wall, CPU and peak RSS), interleaved ceiling / real /
   ceiling: *real* is ``quality.logic.QualityService`` with the real S3 adapter (``S3Captures``,
   ``S3LabelFiles``: gunzip, ``parse_capture_line``, ``parse_label_file``) over an in-process S3 client
   reading the files, and in-process stores for DynamoDB that keep the adapters' contracts (claim once,
   ADD, the house index's window query). One invocation per capture object (its S3 event: house index,
   drift bins, drift report) and per label file (join, count, degradation check). *ceiling* is gunzip +
   ``json.loads`` of the same capture lines and ``csv`` of the same label files: the floor any reader pays.
   Not timed: the bucket's listing (the S3 events replayed, and the index the S3 stand-in answers LISTs
   from). Timed but reported apart: the time inside the stand-ins (``StandInClock``), which is AWS's work.
   Peak RSS is the process's own (``VmHWM``; ``ru_maxrss`` carries the generating parent's across exec).
3. The DynamoDB and S3 calls are counted and priced at on-demand rates (``aws_cost``): what the same work
   would cost on AWS, since the stores here are in-process.

Writes the block between ``<!-- quality-aggregation:begin -->`` and ``<!-- quality-aggregation:end -->``
of ``--docs``. Exit status 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import bisect
import csv
import functools
import gzip
import io
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.processes import REPO_ROOT
from bench.report import replace_marked_block
from house_prices import captures, drift, ids, schema
from house_prices.live_quality import APE_EDGES, APE_PREFIX, Aggregate, bucket_of
from house_prices.naming import KeyLayout
from quality.adapters.dynamodb import house_id_bounds
from quality.adapters.s3 import S3Captures, S3LabelFiles
from quality.logic import HousePrediction, Priced, QualityService, Recorded, VersionFacts

BLOCK = "quality-aggregation"
BUCKET = "bench-bucket"
LAYOUT = KeyLayout("bench")
VERSION = "20261125T040000Z-1a2b3c4d"
NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
TARGET_SECONDS = 60.0
TARGET_RSS_MIB = 512.0
TARGET_JOIN_RATE = 0.99
ROW = (2005.0, 3100.0, 4.0, 2.5, 1.1, 2.0)
# On-demand prices, us-east-1 (docs/quality.md): per request / per unit.
S3_GET, S3_LIST = 0.0004 / 1000, 0.005 / 1000
WRU, RRU = 0.625 / 1e6, 0.125 / 1e6
# Units per call as docs/quality.md prices them: a label's transaction (ledger Put ≤ 1 KB: 2 WRU each
# claim; aggregate Update of a ~4 KB item: 2 × 4), a capture object's transaction and report, a house
# index Put (1 WRU), a Query or GetItem.
UNITS = {
    "label_transaction": ("wru", 10),
    "house_claim": ("wru", 2),
    "capture_transaction": ("wru", 10),
    "drift_report": ("wru", 4),
    "item_read": ("rru", 1),
    "reference_read": ("rru", 0.5),
    "house_put": ("wru", 1),
    "house_query": ("rru", 0.5),
    "degraded_write": ("wru", 4),
}


@dataclass(frozen=True)
class Scale:
    cities: int
    predictions: int
    labels: int
    days: int = 7

    @property
    def per_city(self) -> int:
        return self.predictions // self.cities


FULL = Scale(10_000, 1_000_000, 100_000)
QUICK = Scale(1_000, 100_000, 10_000)


# ------------------------------------------------------------------------------------------- data


def city_name(index: int) -> str:
    return f"City{index:05d}_XX"


def generate(directory: Path, scale: Scale, seed: int = 17) -> dict[str, Any]:
    """Capture objects and label files under ``directory`` (S3 keys as paths); returns the plan's counts."""
    rng = random.Random(seed)
    label_rows: list[dict[str, Any]] = []
    by_id: list[dict[str, Any]] = []
    by_house: list[dict[str, Any]] = []
    objects = 0
    for index in range(scale.cities):
        city = city_name(index)
        houses_seen: dict[str, tuple[int, str, float]] = {}  # house -> (ms, prediction id, price) of its latest
        for day in range(scale.days):
            start = NOW - timedelta(days=scale.days - day + 1)
            count = scale.per_city // scale.days + (1 if day < scale.per_city % scale.days else 0)
            lines: list[str] = []
            for n in range(count):
                ms = int(start.timestamp() * 1000) + n * 60_000 + rng.randrange(60_000)
                (pid,) = ids.new_prediction_ids(city, 1, ids.UlidGenerator(clock_ms=functools.partial(int, ms)))
                price = float(rng.randrange(100_000, 900_000))
                house: str | None = None
                roll = rng.random()
                if roll < 0.03 and houses_seen:
                    house = rng.choice(sorted(houses_seen))  # priced again: the later price is the one joined
                elif roll < 0.30:
                    house = f"h{index}-{day}-{n}"
                if house is not None:
                    houses_seen[house] = (ms, pid, price)
                lines.extend(
                    captures.capture_lines(
                        city=city,
                        version=VERSION,
                        request_id="req",
                        prediction_ids=[pid],
                        rows=[ROW],
                        prices=[price],
                        house_ids=[house],
                    )
                )
                if house is None:
                    by_id.append({"prediction_id": pid, "price": price})
            key = LAYOUT.capture_prefix(city, start.date()) + f"stream-1-{start:%Y-%m-%d-%H-%M-%S}-{index}.jsonl.gz"
            path = directory / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode(), compresslevel=6))
            objects += 1
        by_house.extend(
            {"city": city, "house_id": house, "price": price, "ms": ms} for house, (ms, _, price) in houses_seen.items()
        )
    sold_at = (NOW - timedelta(days=1)).date().isoformat()
    wanted = scale.labels - 2 * (scale.labels // 100)
    rng.shuffle(by_id)
    rng.shuffle(by_house)
    for item in by_id[: wanted // 2]:
        label_rows.append({"prediction_id": item["prediction_id"], "sale_price": round(item["price"] * 1.1, 2)})
    for item in by_house[: wanted - wanted // 2]:
        label_rows.append(
            {"city": item["city"], "house_id": item["house_id"], "sale_price": round(item["price"] * 1.1, 2)}
        )
    joinable = len(label_rows)
    unknown = []
    never = ids.UlidGenerator(clock_ms=lambda: int((NOW - timedelta(days=3)).timestamp() * 1000))
    for n in range(scale.labels // 100):
        if n % 2:
            (pid,) = ids.new_prediction_ids(city_name(n % scale.cities), 1, never)
            unknown.append({"prediction_id": pid, "sale_price": 100_000.0})
        else:
            unknown.append({"city": city_name(n % scale.cities), "house_id": f"never-{n}", "sale_price": 100_000.0})
    duplicates = rng.sample(label_rows, scale.labels // 100)
    rows = label_rows + unknown
    rng.shuffle(rows)
    files = 10
    chunks = [rows[i::files] for i in range(files)]
    chunks[0] = chunks[0] + duplicates  # a resend in another file: the ledger decides
    for number, chunk in enumerate(chunks):
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=["prediction_id", "city", "house_id", "sale_price", "sold_at"])
        writer.writeheader()
        for row in chunk:
            writer.writerow({**row, "sold_at": sold_at})
        path = directory / (LAYOUT.labels_prefix + f"sales-{number:02d}.csv")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(buffer.getvalue())
    return {
        "objects": objects,
        "predictions": scale.per_city * scale.cities,
        "labels": len(rows) + len(duplicates),
        "joinable": joinable,
        "duplicates": len(duplicates),
        "unknown": len(unknown),
        "label_files": files,
    }


# ----------------------------------------------------------------------------- in-process AWS boundary


class StandInClock:
    """Time spent inside the in-process stand-ins for S3 and DynamoDB: their work is AWS's, not the function's.

    ``perf_counter`` (a vDSO read, ~70 ns) rather than a CPU clock (a system call, ~1.3 µs, which over a
    million calls would cost more than it measures); the measured process is pinned to one core, so it is
    the stand-ins' CPU plus any time the core was taken from them (an upper bound).
    """

    def __init__(self) -> None:
        self.seconds = 0.0

    def timed(self, method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started

        return wrapper

    def time_methods(self, stand_in: object, names: Sequence[str]) -> None:
        for name in names:
            setattr(stand_in, name, self.timed(getattr(stand_in, name)))


class FileS3:
    """The two S3 calls the adapters make (ListObjectsV2 pages, GetObject), over files; counted.

    ``keys`` is the bucket's listing, made before the clock starts (S3 keeps its own index): a LIST is a
    prefix range of it, as S3 answers one, not a directory walk charged to the function.
    """

    def __init__(self, root: Path, keys: Sequence[str]) -> None:
        self.root = root
        self.keys = sorted(keys)
        self.calls = {"get": 0, "list": 0}

    def get_paginator(self, name: str) -> FileS3:
        return self

    def paginate(self, Bucket: str, Prefix: str) -> Iterator[dict[str, Any]]:  # noqa: N803 (boto3's names)
        return iter([self._page(Prefix)])

    def _page(self, prefix: str) -> dict[str, Any]:
        self.calls["list"] += 1
        keys = []
        at = bisect.bisect_left(self.keys, prefix)
        while at < len(self.keys) and self.keys[at].startswith(prefix):
            keys.append({"Key": self.keys[at]})
            at += 1
        return {"Contents": keys}

    def get_object(self, Bucket: str, Key: str) -> dict[str, Any]:  # noqa: N803
        self.calls["get"] += 1
        with open(os.path.join(self.root, Key), "rb") as file:
            body = file.read()
        return {"Body": io.BytesIO(body), "ETag": '"e"', "ContentLength": len(body)}


class Dynamo:
    """QualityStore, DriftStore and HouseIndex in memory, with the DynamoDB adapters' contracts; calls counted."""

    def __init__(self) -> None:
        self.ledger: dict[str, tuple[str, str]] = {}
        self.items: dict[tuple[str, str], dict[str, Any]] = {}
        self.houses: dict[str, list[tuple[str, HousePrediction]]] = {}
        self.calls: dict[str, int] = dict.fromkeys(UNITS, 0)

    # QualityStore
    def record(
        self,
        *,
        label: Any,
        source: str,
        prediction: Priced,
        aggregate: Aggregate,
        offline_ae_p50: float | None,
        expires_at: int,
        evidence: Any = None,  # a rollout's share of the label (none in this bench)
    ) -> Recorded:
        self.calls["label_transaction"] += 1
        claims = [label.key]
        if label.key != f"id#{prediction.prediction_id}":
            claims.append(f"id#{prediction.prediction_id}")
            self.calls["house_claim"] += 1
        if label.key in self.ledger:
            return Recorded.REDELIVERED if self.ledger[label.key] == (source, label.key) else Recorded.DUPLICATE
        if any(claim in self.ledger for claim in claims):
            return Recorded.DUPLICATE
        for claim in claims:
            self.ledger[claim] = (source, label.key)
        item = self.items.setdefault((prediction.city, prediction.version), {})
        for name, value in aggregate.increments().items():
            item[name] = item.get(name, 0) + value
        item["offline_ae_p50"] = offline_ae_p50
        return Recorded.COUNTED

    def live_item(self, city: str, version: str) -> Mapping[str, Any]:
        self.calls["item_read"] += 1
        return dict(self.items.get((city, version), {}))

    def save_degraded(self, city: str, version: str, degraded: bool, seen_count: int, was_degraded: bool) -> bool:
        self.calls["degraded_write"] += 1
        self.items[(city, version)]["degraded"] = degraded
        return True

    # DriftStore
    def record_captures(
        self, *, ledger_key: str, source: str, increments: Mapping[tuple[str, str], Mapping[str, int]], expires_at: int
    ) -> Recorded:
        self.calls["capture_transaction"] += 1
        if ledger_key in self.ledger:
            return Recorded.REDELIVERED
        self.ledger[ledger_key] = (source, ledger_key)
        for pair, counts in increments.items():
            item = self.items.setdefault(pair, {})
            for name, value in counts.items():
                item[name] = item.get(name, 0) + value
        return Recorded.COUNTED

    def save_report(
        self, city: str, version: str, report: Mapping[str, Any], seen_count: int, was_drifting: bool
    ) -> bool:
        self.calls["drift_report"] += 1
        self.items[(city, version)][drift.REPORT] = dict(report)
        return True

    # HouseIndex
    def add(self, entries: Sequence[tuple[HousePrediction, int]]) -> None:
        for entry, _ in entries:
            self.calls["house_put"] += 1
            rows = self.houses.setdefault(f"{entry.city}#{entry.house_id}", [])
            keys = [key for key, _ in rows]
            at = bisect.bisect_left(keys, entry.prediction_id)
            if at == len(rows) or rows[at][0] != entry.prediction_id:
                rows.insert(at, (entry.prediction_id, entry))

    def latest(self, city: str, house_id: str, made_from: datetime, made_before: datetime) -> HousePrediction | None:
        self.calls["house_query"] += 1
        low, high = house_id_bounds(made_from, made_before)  # the adapter's own key bounds
        rows = self.houses.get(f"{city}#{house_id}", [])
        inside = [entry for key, entry in rows if low <= key <= high]
        return inside[-1] if inside else None


class Registry:
    """Offline figures and references: one per version, as the registry would answer (GetItem each)."""

    def __init__(self, calls: dict[str, int]) -> None:
        self.calls = calls
        values = [float(v) for v in range(1, 601)]
        self.reference = {name: drift.build_reference(values) for name in schema.FEATURE_NAMES}

    def facts(self, city: str, version: str) -> VersionFacts:
        self.calls["reference_read"] += 1
        return VersionFacts(10_000.0, True)

    def references(self, city: str, version: str) -> Mapping[str, drift.Reference]:
        self.calls["reference_read"] += 1
        return self.reference


# ------------------------------------------------------------------------------------------ measuring


def _keys(root: Path, prefix: str) -> list[str]:
    # os.walk, not Path.rglob: 70,000 Path objects took ~90 MiB at their peak, charged to each measured process.
    top = str(root)
    return sorted(
        os.path.relpath(os.path.join(folder, name), top)
        for folder, _, names in os.walk(os.path.join(top, prefix))
        for name in names
    )


@dataclass
class Bucket:
    """What exists before the function runs: the bucket's keys (the S3 events it is invoked with)."""

    root: Path
    captures: list[str]
    labels: list[str]

    @classmethod
    def of(cls, root: Path) -> Bucket:
        return cls(root, _keys(root, LAYOUT.captures_prefix), _keys(root, LAYOUT.labels_prefix))


def run_real(bucket: Bucket, clock: StandInClock | None = None) -> dict[str, Any]:
    clock = clock or StandInClock()
    s3 = FileS3(bucket.root, bucket.captures + bucket.labels)
    dynamo = Dynamo()
    registry = Registry(dynamo.calls)
    clock.time_methods(s3, ("paginate", "get_object"))
    clock.time_methods(
        dynamo, ("record", "live_item", "save_degraded", "record_captures", "save_report", "add", "latest")
    )
    clock.time_methods(registry, ("facts", "references"))
    adapter = S3Captures(s3, BUCKET, LAYOUT)
    service = QualityService(
        adapter,
        dynamo,
        registry,
        retention_days=365,
        capture_wait=timedelta(seconds=900),
        files=S3LabelFiles(s3),
        labels_prefix=LAYOUT.labels_prefix,
        capture_objects=adapter,
        captures_prefix=LAYOUT.captures_prefix,
        references=registry,
        drift_store=dynamo,
        houses=dynamo,
    )
    capture_totals: dict[str, int] = {}
    for key in bucket.captures:
        service.new_invocation()
        for name, value in service.handle_capture_object(BUCKET, key, NOW).as_dict().items():
            capture_totals[name] = capture_totals.get(name, 0) + value
    label_totals: dict[str, int] = {}
    for key in bucket.labels:
        service.new_invocation()
        report = service.handle_s3_event([{"s3": {"bucket": {"name": BUCKET}, "object": {"key": key}}}], NOW)
        report.add(service.refresh_quality())
        for name, value in report.as_dict().items():
            label_totals[name] = label_totals.get(name, 0) + value
    counted = sum(int(item.get("n", 0)) for item in dynamo.items.values())
    # Every joinable label's sale price is its intended prediction's × 1.1: an APE of 1/11 (9.09 %).
    intended = f"{APE_PREFIX}{bucket_of(1 / 11, APE_EDGES)}"
    ape_ok = sum(int(item.get(intended, 0)) for item in dynamo.items.values())
    return {
        "captures": capture_totals,
        "labels": label_totals,
        "aggregated_labels": counted,
        "labels_with_the_intended_error": ape_ok,
        "versions": len(dynamo.items),
        "calls": {**dynamo.calls, "s3_get": s3.calls["get"], "s3_list": s3.calls["list"]},
    }


def run_ceiling(bucket: Bucket) -> dict[str, Any]:
    """The floor: gunzip + json.loads of every capture line and csv of every label row, nothing else."""
    predictions = rows = 0
    for key in bucket.captures:
        for line in gzip.decompress((bucket.root / key).read_bytes()).decode().splitlines():
            if line:
                predictions += len(json.loads(line)["predictions"])
    for key in bucket.labels:
        rows += sum(1 for _ in csv.DictReader(io.StringIO((bucket.root / key).read_text())))
    return {"predictions": predictions, "label_rows": rows}


def peak_rss_mib() -> float:
    """This process's own peak RSS: ``VmHWM`` (its address space's high-water mark, new at exec).

    Not ``ru_maxrss``: Linux keeps it across fork and exec, so a child reports the parent's peak when that
    was higher (here: the generator's, ~400 MiB at full scale, which was the ceiling's "peak" before).
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def measure(root: Path, mode: str) -> dict[str, Any]:
    bucket = Bucket.of(root)  # the events to replay: listed before the clocks start
    clock = StandInClock()
    started, cpu = time.perf_counter(), time.process_time()
    result = run_real(bucket, clock) if mode == "real" else run_ceiling(bucket)
    result.update(
        wall_seconds=round(time.perf_counter() - started, 2),
        cpu_seconds=round(time.process_time() - cpu, 2),
        stand_in_seconds=round(clock.seconds, 2),
        peak_rss_mib=peak_rss_mib(),
    )
    return result


def child(root: Path, mode: str) -> dict[str, Any]:
    """One measurement in a fresh interpreter pinned to one core: its own peak RSS, nothing generated in it."""
    command = [sys.executable, str(Path(__file__).resolve()), "--measure", str(root), "--mode", mode]
    if hasattr(os, "sched_setaffinity"):
        command = ["taskset", "-c", str(min(os.sched_getaffinity(0))), *command]
    output = subprocess.run(command, check=True, capture_output=True, text=True, cwd=REPO_ROOT).stdout
    result: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    return result


def aws_cost(calls: Mapping[str, int]) -> dict[str, float]:
    """What the counted calls would cost on AWS at on-demand prices (Lambda excluded)."""
    wru = sum(count * UNITS[name][1] for name, count in calls.items() if name in UNITS and UNITS[name][0] == "wru")
    rru = sum(count * UNITS[name][1] for name, count in calls.items() if name in UNITS and UNITS[name][0] == "rru")
    return {
        "dynamodb_wru": wru,
        "dynamodb_rru": rru,
        "dynamodb_usd": round(wru * WRU + rru * RRU, 2),
        "s3_usd": round(calls.get("s3_get", 0) * S3_GET + calls.get("s3_list", 0) * S3_LIST, 2),
    }


def evaluate(plan: Mapping[str, Any], real: Mapping[str, Any]) -> dict[str, Any]:
    labels = real["labels"]
    join_rate = labels["joined"] / plan["joinable"] if plan["joinable"] else 0.0
    return {
        "join_rate": round(join_rate, 4),
        "joined": labels["joined"],
        "joinable": plan["joinable"],
        "duplicates_reported": labels["duplicate"],
        "duplicates_injected": plan["duplicates"],
        "unknown_reported": labels["unknown"],
        "unknown_injected": plan["unknown"],
        "never_double_counted": real["aggregated_labels"] == labels["joined"],
        "right_prediction": real["labels_with_the_intended_error"] == labels["joined"],
        "met_time": real["wall_seconds"] <= TARGET_SECONDS and real["cpu_seconds"] <= TARGET_SECONDS,
        "met_memory": real["peak_rss_mib"] <= TARGET_RSS_MIB,
        "met_join": join_rate >= TARGET_JOIN_RATE
        and labels["duplicate"] == plan["duplicates"]
        and labels["unknown"] == plan["unknown"],
    }


def render(results: Mapping[str, Any]) -> str:
    plan, real, verdict = results["plan"], results["real"], results["verdict"]
    ceiling, ceiling_cpu = results["ceiling_wall_seconds"], results["ceiling_cpu_seconds"]
    cost = results["aws_cost"]
    mark = {True: "met", False: "**missed**"}
    return "\n".join(
        [
            "## Live quality aggregation",
            "",
            f"`{results['command']}` — {results['when']}, {results['machine']}, one core (taskset), each measurement"
            " in a fresh process; in-process S3 (files) and DynamoDB stores behind the real adapters' contracts.",
            "",
            f"Data: {plan['predictions']:,} captured predictions in {plan['objects']:,} capture objects (Firehose"
            f" layout, gzip JSON lines) over {results['scale']['cities']:,} city models and"
            f" {results['scale']['days']} days; {plan['labels']:,} labels in {plan['label_files']} CSV files (half by"
            f" prediction id, half by (city, house_id)), with {plan['duplicates']:,} duplicates and"
            f" {plan['unknown']:,} unknown injected.",
            "",
            "| | wall s | CPU s | peak RSS MiB | target | |",
            "|---|---|---|---|---|---|",
            f"| QualityService (captures: house index, drift bins and reports; labels: join, count, degradation)"
            f" | {real['wall_seconds']} | {real['cpu_seconds']} | {real['peak_rss_mib']} | ≤ 60 s, ≤ 512 MiB |"
            f" {mark[verdict['met_time'] and verdict['met_memory']]} |",
            f"| ceiling: gunzip + json.loads + csv of the same bytes (mean of 2, before and after) | {ceiling} |"
            f" {ceiling_cpu} | {results['ceiling_peak_rss_mib']} | | real / ceiling **{results['cpu_ratio']}×** CPU"
            f" ({results['ratio']}× wall) |",
            "",
            f"Of the real run's CPU, ~{results['stand_in_cpu_seconds']} s is the in-process stand-ins' (S3 from files,"
            f" DynamoDB in memory: AWS's side, counted anyway; {real['stand_in_seconds']} s of wall inside them,"
            " scaled by the run's CPU/wall). Load average during the run:"
            f" {results['load_average']} on {os.cpu_count()} CPUs. Peak RSS is each process's own (`VmHWM`).",
            "",
            "| Join | measured | target | |",
            "|---|---|---|---|",
            f"| in-window labels joined | {verdict['joined']:,} / {verdict['joinable']:,} = "
            f"{verdict['join_rate']:.2%} | ≥ 99 % | {mark[verdict['met_join']]} |",
            f"| duplicates reported / injected | {verdict['duplicates_reported']:,} / "
            f"{verdict['duplicates_injected']:,} | all | |",
            f"| unknown reported / injected | {verdict['unknown_reported']:,} / {verdict['unknown_injected']:,} | all |"
            " |",
            f"| labels in the aggregates = joined (never double counted) | {verdict['never_double_counted']} | True |"
            " |",
            f"| each joined to its intended prediction (APE 1/11 bucket) | {verdict['right_prediction']} | True | |",
            "",
            f"AWS calls this work would make: {results['calls']['s3_get']:,} S3 GETs and"
            f" {results['calls']['s3_list']:,} LISTs (${cost['s3_usd']}),"
            f" {cost['dynamodb_wru']:,.0f} WRU and {cost['dynamodb_rru']:,.0f} RRU"
            f" on demand (${cost['dynamodb_usd']}); Lambda: {real['cpu_seconds']} CPU-s here.",
        ]
    )


def assemble(
    scale: Scale,
    plan: Mapping[str, Any],
    runs: tuple[Mapping[str, Any], Mapping[str, Any], Mapping[str, Any]],
    load: Sequence[float],
    *,
    quick: bool,
) -> dict[str, Any]:
    """The results of one run: ``runs`` are the measurements ceiling, real, ceiling (interleaved)."""
    first, real, second = runs
    ceiling = round((first["wall_seconds"] + second["wall_seconds"]) / 2, 2)
    ceiling_cpu = round((first["cpu_seconds"] + second["cpu_seconds"]) / 2, 2)
    # The stand-ins' clock is a wall clock: scaled by the run's CPU share to estimate their CPU.
    share = real["cpu_seconds"] / real["wall_seconds"] if real["wall_seconds"] else 1.0
    return {
        "command": "python bench/quality_aggregation.py" + (" --quick" if quick else ""),
        "when": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": f"{os.cpu_count()} CPUs",
        "scale": scale.__dict__,
        "plan": dict(plan),
        "real": dict(real),
        "ceiling_wall_seconds": ceiling,
        "ceiling_cpu_seconds": ceiling_cpu,
        "ceiling_peak_rss_mib": max(first["peak_rss_mib"], second["peak_rss_mib"]),
        "ratio": round(real["wall_seconds"] / ceiling, 1) if ceiling else None,
        "cpu_ratio": round(real["cpu_seconds"] / ceiling_cpu, 1) if ceiling_cpu else None,
        "stand_in_cpu_seconds": round(real["stand_in_seconds"] * share, 1),
        "load_average": " / ".join(f"{value:.1f}" for value in load),
        "calls": real["calls"],
        "aws_cost": aws_cost(real["calls"]),
        "verdict": evaluate(plan, real),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the scale (no docs unless --docs)")
    parser.add_argument("--docs", type=Path, help="write the block here [docs/benchmarks.md; none with --quick]")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=("real", "ceiling"), default="real", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(args.measure, args.mode)))
        return 0
    scale = QUICK if args.quick else FULL
    docs = args.docs or (None if args.quick else REPO_ROOT / "docs" / "benchmarks.md")
    with tempfile.TemporaryDirectory(prefix="quality-bench-") as folder:
        root = Path(folder)
        started = time.perf_counter()
        plan = generate(root, scale)
        print(f"data: {plan} in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        first = child(root, "ceiling")
        real = child(root, "real")
        load = os.getloadavg()  # the last minute's, as the real run ends: how shared the machine was
        second = child(root, "ceiling")
    results = assemble(scale, plan, (first, real, second), load, quick=args.quick)
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    if docs:
        previous = docs.read_text() if docs.is_file() else ""
        docs.write_text(replace_marked_block(previous, BLOCK, render(results)))
    verdict = results["verdict"]
    return 0 if verdict["met_time"] and verdict["met_memory"] and verdict["met_join"] else 1


if __name__ == "__main__":
    sys.exit(main())
