"""``python -m training.jobs``: train N cities as local processes or SageMaker jobs, optionally publish.

Local mode runs the real ``train.py`` per city (``training.local_runs``) and prints the results table
(``training.report``); ``--publish`` uploads inputs and artifacts where a SageMaker job would
(``training.publishing``), which triggers model-sync. SageMaker mode submits one training job per
city (``training.sagemaker_jobs``); ``--wait`` follows them, printing each job's status changes and
streaming its CloudWatch logs, as the SageMaker Python SDK's ``fit(logs=True)`` does.

CLI::

    python -m training.jobs --cities Chicago_IL Dallas_TX
    python -m training.jobs --all-seed-cities --publish --bucket B [--prefix P]
    python -m training.jobs --all-seed-cities --mode sagemaker --bucket B --role-arn ARN [--wait]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from house_prices import naming, schema
from house_prices.errors import DomainError
from training import data as data_module
from training import images
from training.inputs import Hyperparameters
from training.local_runs import DEFAULT_WORK_DIR, train_locally
from training.publishing import S3Publisher, publish_local_run
from training.report import make_console, print_results
from training.sagemaker_jobs import SageMakerSettings, follow_jobs, submit_sagemaker_jobs


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training.jobs", description="Train house-price models per city.")
    parser.add_argument("--cities", nargs="+", default=[], metavar="CITY")
    parser.add_argument("--all-seed-cities", action="store_true", help=f"train {', '.join(schema.SEED_CITIES)}")
    parser.add_argument("--mode", choices=("local", "sagemaker"), default="local")
    parser.add_argument("--bucket", help="S3 bucket for --publish / sagemaker mode")
    parser.add_argument("--prefix", default=naming.DEFAULT_PREFIX)
    parser.add_argument("--publish", action="store_true", help="local mode: upload inputs and artifacts to S3")
    parser.add_argument("--role-arn", help="sagemaker mode: execution role")
    parser.add_argument("--region", help="AWS region (default: the boto3 session's)")
    parser.add_argument("--instance-type", default="ml.m5.large")
    parser.add_argument("--image-version", choices=images.load_table().versions, default=None)
    parser.add_argument("--wait", action="store_true", help="sagemaker mode: wait for the jobs to finish")
    parser.add_argument("--work-dir", type=Path, default=DEFAULT_WORK_DIR)
    parser.add_argument("--workers", type=int, default=None, help="parallel processes (default: CPU count)")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--houses", type=int, default=schema.HOUSES_PER_CITY, help="houses per city")
    parser.add_argument("--seed", type=int, default=data_module.DEFAULT_SEED)
    parser.add_argument("--n-estimators", type=int, default=100)
    parser.add_argument("--min-samples-leaf", type=int, default=3)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    import boto3

    parser = _parser()
    args = parser.parse_args(argv)
    cities = [*args.cities, *(schema.SEED_CITIES if args.all_seed_cities else ())]
    if not cities:
        parser.error("give --cities or --all-seed-cities")
    try:
        cities = [naming.validate_city(city, "--cities") for city in cities]
    except DomainError as error:
        parser.error(error.message)
    if (args.publish or args.mode == "sagemaker") and not args.bucket:
        parser.error("--bucket is required with --publish and with --mode sagemaker")
    hyperparameters = Hyperparameters(args.n_estimators, args.min_samples_leaf, random_state=args.seed)
    layout = naming.KeyLayout(args.prefix)
    console = make_console(stderr=True)
    region = args.region or boto3.session.Session().region_name

    if args.mode == "sagemaker":
        if not args.role_arn:
            parser.error("--role-arn is required with --mode sagemaker")
        if not region:
            parser.error("--region is required (no default region configured)")
        settings = SageMakerSettings(args.role_arn, region, args.instance_type, image_version=args.image_version)
        publisher = S3Publisher(boto3.client("s3", region_name=region), args.bucket, layout)
        sagemaker = boto3.client("sagemaker", region_name=region)
        jobs = submit_sagemaker_jobs(
            sagemaker,
            publisher,
            cities,
            args.work_dir,
            settings,
            hyperparameters=hyperparameters,
            houses_per_city=args.houses,
            seed=args.seed,
        )
        for job in jobs:
            print(f"{job.city}\t{job.job_name}\t{publisher.uri(job.output_key)}")
        if not args.wait:
            return 0
        logs = boto3.client("logs", region_name=region)
        return 0 if follow_jobs(sagemaker, logs, jobs, echo=lambda line: console.print(line, markup=False)) else 1

    report = train_locally(
        cities,
        args.work_dir,
        hyperparameters=hyperparameters,
        houses_per_city=args.houses,
        seed=args.seed,
        workers=args.workers,
        progress=not args.no_progress,
        console=console,
    )
    print_results(report.results, report.failures, console=console, wall_seconds=report.wall_seconds)
    if args.publish:
        publisher = S3Publisher(boto3.client("s3", region_name=region), args.bucket, layout)
        for city, keys in publish_local_run(publisher, report).items():
            print(f"{city}\t{publisher.uri(keys[-1])}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
