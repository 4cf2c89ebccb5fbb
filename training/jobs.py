"""``python -m training.jobs``: train segments (your own file, or synthetic cities) locally or on SageMaker.

Segments come from ``--data`` (a CSV with a header or Parquet file, folder or ``s3://`` URI holding many
segments; validated before anything trains: ``training.dataset``) or from the synthetic generator
(``--cities`` / ``--all-notebook-cities``). Local mode trains them in ``--workers`` processes, each a shard
of segments in one interpreter (``training.local_runs``); ``--publish`` uploads inputs and artifacts
where a SageMaker job would (``training.publishing``), which triggers model-sync. SageMaker mode
submits ceil(N / ``--segments-per-job``) training jobs (``training.sagemaker_jobs``); ``--wait``
follows them as the SageMaker Python SDK's ``fit(logs=True)`` does. Runs over ``--data`` are
incremental: a segment whose data and hyperparameters are as last trained is left alone
(``training.manifest``; ``--force`` retrains all).

CLI::

    python -m training.jobs --data houses.csv --segment-column city --price-column sale_price \\
        --column SQUARE_FEET=living_area --publish --bucket B
    python -m training.jobs --cities Chicago_IL Dallas_TX
    python -m training.jobs --data s3://B/raw/ ... --mode sagemaker --bucket B --role-arn ARN --segments-per-job 500
"""

# ruff: noqa: E402 - the imports after the first few come after the workers' zygote has started, on purpose
from __future__ import annotations

import sys

from training.workers import WorkerPool, start_workers, trains_locally

# ``python -m training.jobs``: the workers' zygote starts before this module's other imports (boto3,
# pyarrow, rich: ~0.4 s), so its scikit-learn import (~1.3 s) overlaps them as well as validation.
_EARLY_POOL: WorkerPool | None = start_workers() if __name__ == "__main__" and trains_locally(sys.argv[1:]) else None

import argparse
import dataclasses
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from rich.console import Console

from house_prices import naming, schema
from house_prices.errors import DomainError
from ops import images
from ops.config import ConfigError
from ops.stack import apply_stack
from training import data as data_module
from training.inputs import Hyperparameters
from training.local_runs import DEFAULT_WORK_DIR, train_segments
from training.manifest import LOCAL_MANIFEST, LocalManifestStore, Manifest, ManifestStore, S3ManifestStore
from training.publishing import S3Publisher, publish_local_run
from training.report import make_console, print_results
from training.results import RunReport
from training.run_report import RunSummary, SegmentOutcome, print_run, summarise
from training.sagemaker_jobs import (
    DEFAULT_SEGMENTS_PER_JOB,
    SageMakerSettings,
    follow_jobs,
    publish_segment_inputs,
    shard_outcomes,
    submit_sagemaker_jobs,
)
from training.shards import SegmentInput, synthetic_segment


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _mapping(text: str) -> tuple[str, str]:
    feature, separator, column = text.partition("=")
    if not separator or not feature.strip() or not column.strip():
        raise argparse.ArgumentTypeError(f"expected FEATURE=COLUMN, got {text!r}")
    return feature.strip(), column.strip()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training.jobs", description="Train house-price models per segment."
    )
    source = parser.add_argument_group("segments: your own file")
    source.add_argument(
        "--data", metavar="PATH", help="CSV (with a header) or Parquet: file, folder, s3://bucket/key or prefix"
    )
    source.add_argument("--segment-column", metavar="COL", help="the column naming each row's segment (its city)")
    source.add_argument("--price-column", metavar="COL", help="the column holding the sale price (the target)")
    source.add_argument(
        "--column",
        dest="columns",
        action="append",
        type=_mapping,
        default=[],
        metavar="FEATURE=COL",
        help=f"map a feature ({', '.join(schema.FEATURE_NAMES)}) to a column, COL*k or COL/k, or a constant",
    )
    source.add_argument("--id-column", metavar="COL", help="a stable row id for the split (default: the row's values)")
    source.add_argument("--segments", nargs="+", metavar="SEGMENT", help="only these segments (values or city names)")
    source.add_argument("--strict", action="store_true", help="any unusable row is an error instead of dropped")
    source.add_argument("--min-rows", type=_positive, default=30, help="usable rows a segment needs (default 30)")
    source.add_argument("--max-bytes", type=_positive, default=None, help="refuse sources larger than this")
    source.add_argument(
        "--max-segments", type=_positive, default=None, help="refuse files with more segments (default 100,000)"
    )
    source.add_argument("--force", action="store_true", help="retrain segments whose data has not changed")
    source.add_argument("--validate-only", action="store_true", help="validate and report; train nothing")
    synthetic = parser.add_argument_group("segments: synthetic cities")
    synthetic.add_argument("--cities", nargs="+", default=[], metavar="CITY")
    # --all-seed-cities: the flag's first name, kept so existing scripts still run.
    synthetic.add_argument(
        "--all-notebook-cities",
        "--all-seed-cities",
        action="store_true",
        help=f"train the notebook's cities: {', '.join(schema.NOTEBOOK_CITIES)}",
    )
    synthetic.add_argument("--houses", type=_positive, default=schema.HOUSES_PER_CITY, help="houses per city")
    parser.add_argument("--mode", choices=("local", "sagemaker"), default="local")
    parser.add_argument("--bucket", help="S3 bucket for --publish / sagemaker mode")
    parser.add_argument("--prefix", help=f"key prefix (default: the stack's, else {naming.DEFAULT_PREFIX})")
    parser.add_argument(
        "--stack", help="deployed stack whose outputs give --bucket, --prefix, --role-arn and --region (flags win)"
    )
    parser.add_argument("--publish", action="store_true", help="local mode: upload inputs and artifacts to S3")
    parser.add_argument("--role-arn", help="sagemaker mode: execution role")
    parser.add_argument("--region", help="AWS region (default: the boto3 session's)")
    parser.add_argument("--instance-type", default="ml.m5.large")
    parser.add_argument("--image-version", choices=images.load_table().versions["training"], default=None)
    parser.add_argument(
        "--segments-per-job",
        type=_positive,
        default=DEFAULT_SEGMENTS_PER_JOB,
        help=f"sagemaker mode: segments trained by one job (default {DEFAULT_SEGMENTS_PER_JOB})",
    )
    parser.add_argument("--wait", action="store_true", help="sagemaker mode: wait for the jobs to finish")
    parser.add_argument(
        "--wait-live",
        nargs="?",
        type=float,
        const=120.0,
        default=None,
        metavar="SECONDS",
        help="after publishing, wait (default 120 s) for model-sync's verdict per segment: live, held back, rejected",
    )
    parser.add_argument("--table", help="--wait-live: the registry table (default: REGISTRY_TABLE, the stack's)")
    parser.add_argument("--work-dir", type=Path, default=DEFAULT_WORK_DIR)
    parser.add_argument("--workers", type=_positive, default=None, help="local worker processes (default: CPU count)")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--json", action="store_true", help="print the run (and validation) report as JSON on stdout")
    parser.add_argument(
        "--seed",
        type=int,
        default=data_module.DEFAULT_SEED,
        help="the forests' random_state (and the synthetic cities' data)",
    )
    parser.add_argument("--n-estimators", type=int, default=Hyperparameters.n_estimators)
    parser.add_argument("--min-samples-leaf", type=int, default=Hyperparameters.min_samples_leaf)
    return parser


class _Run:
    """One CLI invocation: where segments come from, where they go, and what is reported."""

    def __init__(self, parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
        self.parser = parser
        self.args = args
        self.console = make_console(stderr=True)
        self.layout = naming.KeyLayout(args.prefix)
        self.hyperparameters = Hyperparameters(args.n_estimators, args.min_samples_leaf, random_state=args.seed)
        self.validation: dict[str, Any] | None = None
        self.stages: dict[str, float] = {}
        self.skipped: dict[str, str] = {}
        self._session: Any = None
        self._clients: dict[str, Any] = {}
        # Local mode: the workers' zygote, started before validation so its scikit-learn import overlaps it.
        self.pool: WorkerPool | None = None

    # AWS clients are built only when a run needs them (validation of a local file needs none), once each:
    # publishing, the manifest and the verdicts share one S3 client instead of building one per use.
    def session(self) -> Any:
        if self._session is None:
            import boto3

            self._session = boto3.session.Session(region_name=self.args.region)
        return self._session

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self.session().client(service)
        return self._clients[service]

    @property
    def region(self) -> str | None:
        return str(self.session().region_name) if self.session().region_name else None

    def publisher(self) -> S3Publisher:
        return S3Publisher(self.client("s3"), self.args.bucket, self.layout)

    def segments(self) -> list[SegmentInput]:
        if self.args.data is None:
            cities = [*self.args.cities, *(schema.NOTEBOOK_CITIES if self.args.all_notebook_cities else ())]
            cities = [naming.validate_city(city, "--cities") for city in dict.fromkeys(cities)]
            return [synthetic_segment(city, self.args.houses, self.args.seed) for city in cities]
        from training.dataset import DataSpec, load_dataset, print_report

        limits = {"max_bytes": self.args.max_bytes, "max_segments": self.args.max_segments}
        spec_options: dict[str, Any] = {name: value for name, value in limits.items() if value}
        spec = DataSpec(
            source=self.args.data,
            segment_column=self.args.segment_column,
            price_column=self.args.price_column,
            columns=dict(self.args.columns),
            id_column=self.args.id_column,
            segments=self.args.segments,
            strict=self.args.strict,
            min_rows=self.args.min_rows,
            **spec_options,
        )
        dataset = load_dataset(spec, s3_client=self.client("s3") if self.args.data.startswith("s3://") else None)
        print_report(dataset.report, self.console)
        self.validation = dataset.report.to_json()
        # A value the name rule cannot name has no city: it is listed under its value in the file.
        self.skipped = {
            s.city or s.source_value: s.reason or "skipped" for s in dataset.report.segments if s.status == "skipped"
        }
        return [
            SegmentInput(data=segment.data, data_hash=segment.data_hash, source_value=segment.source_value)
            for segment in dataset.segments
        ]

    def manifest_store(self) -> ManifestStore:
        if self.args.publish or self.args.mode == "sagemaker":
            return S3ManifestStore(self.publisher(), self.layout.training_manifest_key)
        return LocalManifestStore(Path(self.args.work_dir).resolve() / LOCAL_MANIFEST)

    def train_local(self, segments: Sequence[SegmentInput]) -> tuple[list[SegmentOutcome], dict[str, str], RunReport]:
        started = time.perf_counter()
        report = train_segments(
            segments,
            self.args.work_dir,
            hyperparameters=self.hyperparameters,
            workers=self.args.workers,
            progress=not self.args.no_progress and not self.args.json,
            console=self.console,
            pool=self.pool,
        )
        self.stages["train"] = time.perf_counter() - started
        if self.args.data is None:
            # A run over --data ends with the per-segment run report (print_run): one table, not two.
            print_results(report.results[:200], report.failures, console=self.console, wall_seconds=report.wall_seconds)
        published: dict[str, list[str]] = {}
        if self.args.publish:
            publisher = self.publisher()
            started = time.perf_counter()
            published = publish_local_run(publisher, report)
            self.stages["publish"] = time.perf_counter() - started
            if not self.args.json:
                for city, keys in published.items():
                    print(f"{city}\t{publisher.uri(keys[-1])}")
        uri = self.publisher().uri if published else str
        trained = [
            SegmentOutcome(
                result.city,
                "trained",
                job=result.job_name,
                ae_p50=result.metrics["validation"]["ae_p50"],
                artifact=uri(published[result.city][-1]) if published else str(result.artifact),
            )
            for result in report.results
        ]
        failed = {failure.city: failure.stderr_tail(3).replace("\n", " | ") for failure in report.failures}
        return trained, failed, report

    def submit(self, segments: Sequence[SegmentInput]) -> tuple[list[SegmentOutcome], bool]:
        if not self.args.role_arn:
            self.parser.error("--role-arn is required with --mode sagemaker")
        region = self.region
        if not region:
            self.parser.error("--region is required (no default region configured)")
        settings = SageMakerSettings(
            self.args.role_arn, region, self.args.instance_type, image_version=self.args.image_version
        )
        publisher = self.publisher()
        work_dir = Path(self.args.work_dir).resolve()
        started = time.perf_counter()
        publish_segment_inputs(publisher, segments, work_dir)
        self.stages["publish"] = time.perf_counter() - started
        sagemaker = self.client("sagemaker")
        started = time.perf_counter()
        jobs = submit_sagemaker_jobs(
            sagemaker,
            publisher,
            segments,
            work_dir,
            settings,
            hyperparameters=self.hyperparameters,
            segments_per_job=self.args.segments_per_job,
        )
        self.stages["submit"] = time.perf_counter() - started
        if not self.args.json:
            for job in jobs:
                print(f"{job.job_name}\t{len(job.cities)} segments\t{job.arn}")
        outcomes = [
            SegmentOutcome(city, "submitted", job=job.job_name, artifact=publisher.uri(job.output_keys[city]))
            for job in jobs
            for city in job.cities
        ]
        if not self.args.wait:
            return outcomes, True
        echo = lambda line: self.console.print(line, markup=False, highlight=False)  # noqa: E731
        completed = follow_jobs(sagemaker, self.client("logs"), jobs, echo=echo)
        finished = []
        for job in jobs:
            for city, entry in shard_outcomes(sagemaker, publisher, job).items():
                if entry.get("status") == "trained":
                    ae_p50 = entry.get("metrics", {}).get("validation", {}).get("ae_p50")
                    uri = entry.get("uri") or publisher.uri(job.output_keys[city])
                    finished.append(SegmentOutcome(city, "trained", job=job.job_name, ae_p50=ae_p50, artifact=uri))
                else:
                    finished.append(SegmentOutcome(city, "failed", str(entry.get("error", "")), job=job.job_name))
        return finished, completed


def _with_verdicts(run: _Run, outcomes: list[SegmentOutcome]) -> list[SegmentOutcome]:
    """``--wait-live``: each published segment's outcome with model-sync's decision on its artifact."""
    published = {
        o.city: o.artifact.removeprefix(f"s3://{run.args.bucket}/") for o in outcomes if o.outcome == "trained"
    }
    if run.args.wait_live is None or not published:
        return outcomes
    from house_prices.registry import ModelRegistry
    from ops.config import resolve
    from training.verdicts import wait_for_verdicts

    stack_outputs = None
    if run.args.stack:
        from ops.stack import deployed_stack

        stack_outputs = deployed_stack(run.args.stack, region=run.args.region).outputs
    config = resolve(
        run.args.bucket, run.args.prefix, run.args.table, None, dict(os.environ), stack_outputs=stack_outputs
    )
    registry = ModelRegistry(run.client("dynamodb"), config.require_table())
    started = time.perf_counter()
    verdicts = wait_for_verdicts(registry, published, run.args.wait_live)
    run.stages["promote"] = time.perf_counter() - started
    return [
        dataclasses.replace(
            o, verdict=verdicts[o.city].status, version=verdicts[o.city].version, reason=verdicts[o.city].reason
        )
        if o.city in verdicts
        else o
        for o in outcomes
    ]


def _record(store: ManifestStore, manifest: Manifest, done: Sequence[tuple[SegmentInput, str]], run: _Run) -> None:
    if done:
        manifest.record(done, run.hyperparameters)
        store.write(manifest)


def execute(run: _Run, pool: WorkerPool | None = None) -> int:
    """Run it; local training uses ``pool`` (a zygote started earlier) or starts one now. Either is closed here."""
    if run.args.mode == "local" and not run.args.validate_only:
        run.pool = pool or start_workers()
    elif pool is not None:
        pool.close()  # started on a guess that did not hold: killed before it forks anything
    try:
        return _execute(run)
    finally:
        if run.pool is not None:
            run.pool.close()


def _execute(run: _Run) -> int:
    args = run.args
    started = time.perf_counter()
    segments = run.segments()
    run.stages["validate"] = time.perf_counter() - started
    if args.validate_only:
        _emit(run, RunSummary([], time.perf_counter() - started))
        return 0 if segments else 1
    if not segments:
        run.console.print("[red]no segment can be trained[/red] (see the reasons above)")
        _emit(run, summarise([], [], run.skipped, {}, time.perf_counter() - started))
        return 1
    incremental = args.data is not None
    store = run.manifest_store()
    manifest = store.read() if incremental else Manifest()
    to_train, unchanged = manifest.partition(segments, run.hyperparameters, force=args.force or not incremental)
    by_city = {segment.city: segment for segment in to_train}
    if not to_train:
        run.console.print("every segment is unchanged since it was last trained (--force retrains)")
        _emit(run, summarise([], [s.city for s in unchanged], run.skipped, {}, time.perf_counter() - started))
        return 0
    if args.mode == "sagemaker":
        outcomes, completed = run.submit(to_train)
        outcomes = _with_verdicts(run, outcomes)
        done = [o for o in outcomes if o.outcome == "trained"]
        if incremental:
            # Only what is known to have trained (after --wait) is recorded; submitted segments retrain next run.
            _record(store, manifest, [(by_city[o.city], o.job) for o in done], run)
        failed = {o.city: o.reason for o in outcomes if o.outcome == "failed"}
        listed = [o for o in outcomes if o.outcome != "failed"]
        summary = summarise(listed, [s.city for s in unchanged], run.skipped, failed, time.perf_counter() - started)
        _emit(run, summary)
        return 0 if completed and summary.ok else 1
    trained, failed, _ = run.train_local(to_train)
    if args.publish:
        trained = _with_verdicts(run, trained)
    if incremental:
        _record(store, manifest, [(by_city[o.city], o.job) for o in trained], run)
    summary = summarise(trained, [s.city for s in unchanged], run.skipped, failed, time.perf_counter() - started)
    _emit(run, summary)
    return 0 if summary.ok else 1


def _emit(run: _Run, summary: RunSummary) -> None:
    summary.stages = dict(run.stages)
    if not run.args.validate_only and (run.args.data is not None or summary.counts()["unchanged"]):
        print_run(summary, run.console)
    if run.args.json:
        json.dump(summary.to_json(run.validation), sys.stdout, indent=1)
        sys.stdout.write("\n")


def main(argv: Sequence[str] | None = None, pool: WorkerPool | None = None) -> int:
    """The CLI; ``pool``: a workers' zygote already started, used if the run trains locally (closed either way)."""
    try:
        return _main(argv, pool)
    finally:
        if pool is not None:
            pool.close()  # a usage error, or a run that never reached training: nothing forked, killed at once


def _main(argv: Sequence[str] | None, pool: WorkerPool | None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.data is not None:
        if args.cities or args.all_notebook_cities:
            parser.error("give --data or --cities/--all-notebook-cities, not both")
        missing = [
            flag for flag in ("--segment-column", "--price-column") if not getattr(args, flag[2:].replace("-", "_"))
        ]
        if missing:
            parser.error(f"{' and '.join(missing)} required with --data")
    elif not args.cities and not args.all_notebook_cities:
        parser.error("give --data, --cities or --all-notebook-cities")
    try:
        for city in args.cities:
            naming.validate_city(city, "--cities")
    except DomainError as error:
        parser.error(error.message)
    try:
        apply_stack(args)  # --stack NAME: bucket, prefix, training role and region from its outputs (ops/stack.py)
    except (DomainError, ValueError) as error:
        message = getattr(error, "message", str(error))
        Console(stderr=True, soft_wrap=True).print(f"[red]error:[/red] {message}", highlight=False)
        return 2
    if (args.publish or args.mode == "sagemaker") and not args.bucket and not args.validate_only:
        parser.error("--bucket is required with --publish and with --mode sagemaker")
    try:
        return execute(_Run(parser, args), pool)
    except (DomainError, ConfigError) as error:
        # Never a traceback: the message says what to fix.
        message = getattr(error, "message", str(error))
        Console(stderr=True, soft_wrap=True).print(f"[red]error:[/red] {message}", highlight=False)
        return 2
    except (BotoCoreError, ClientError) as error:
        Console(stderr=True, soft_wrap=True).print(f"[red]error:[/red] AWS: {error}", highlight=False)
        return 2


if __name__ == "__main__":
    sys.exit(main(pool=_EARLY_POOL))
