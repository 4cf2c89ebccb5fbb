"""``make demo``: train the seed's 10 cities locally, in parallel, and print their metrics.

python -m training.demo [--work-dir DIR] [--workers N] [--no-progress]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from house_prices import schema
from training.jobs import DEFAULT_WORK_DIR, RunReport, train_locally
from training.report import make_console, print_results, results_table

__all__ = ["main", "print_results", "results_table", "run_demo"]


def run_demo(
    cities: Sequence[str] = schema.SEED_CITIES,
    work_dir: Path = DEFAULT_WORK_DIR,
    *,
    workers: int | None = None,
    progress: bool = True,
    console: Console | None = None,
) -> RunReport:
    console = console or make_console()
    started = time.perf_counter()
    report = train_locally(cities, work_dir, workers=workers, progress=progress, console=console)
    print_results(
        report.results,
        report.failures,
        console=console,
        title=f"House-price models, {len(cities)} cities (work dir {work_dir})",
        wall_seconds=time.perf_counter() - started,
    )
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", type=Path, default=DEFAULT_WORK_DIR)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    report = run_demo(work_dir=args.work_dir, workers=args.workers, progress=not args.no_progress)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
