"""Cold-import cost of the router Lambda: ``python -X importtime -c "import router.handler"`` in fresh processes.

For each run the cumulative microseconds of the top-level import lines that ``import MODULE`` produced are
summed (interpreter start-up imports such as ``site`` come before it and are left out): the time the Lambda
init phase spends importing the handler. Runs use the router's function environment, like a Lambda container,
and report min/median/max, the heaviest direct imports of the median run, and the plain wall-clock cost
(process time with the import minus process time without it), since ``-X importtime`` adds overhead of its
own. The machine's other load shows up as spread: compare minimums.

    .venv/bin/python bench/router_import_time.py [--runs 7] [--budget-ms 300] [--module router.handler]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field

_LINE = re.compile(r"^import time:\s+(?P<self>\d+) \|\s+(?P<cumulative>\d+) \|(?P<indent> *)(?P<name>\S+)")
FUNCTION_ENV = {
    "POWERTOOLS_SERVICE_NAME": "router",
    "POWERTOOLS_METRICS_NAMESPACE": "HousePrices",
    "LOG_LEVEL": "INFO",
    "ENDPOINT_NAME": "house-prices-mme",
    "REGISTRY_TABLE": "house-prices-registry",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}


@dataclass
class Run:
    total_us: int = 0
    children_us: dict[str, int] = field(default_factory=dict)


def parse_report(report: str) -> Run:
    """Sum the top-level imports after start-up; record their direct children for the breakdown.

    ``-X importtime`` prints a module after its own imports, so children precede their parent.
    """
    run, pending, startup_done = Run(), {}, False
    for line in report.splitlines():
        match = _LINE.match(line)
        if not match:
            continue
        depth = len(match["indent"])  # one space per top-level name, two more per nesting level
        if depth == 1:
            if match["name"] == "site":
                startup_done, pending = True, {}
                continue
            if startup_done:
                run.total_us += int(match["cumulative"])
                run.children_us.update(pending or {match["name"]: int(match["cumulative"])})
            pending = {}
        elif depth == 3:
            pending[match["name"]] = pending.get(match["name"], 0) + int(match["cumulative"])
    return run


def measure(module: str) -> Run:
    completed = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        env={**os.environ, **FUNCTION_ENV},
        capture_output=True,
        text=True,
        check=True,
    )
    return parse_report(completed.stderr)


def wall_clock_ms(module: str, runs: int) -> float:
    def best(code: str) -> float:
        samples = []
        for _ in range(runs):
            started = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], env={**os.environ, **FUNCTION_ENV}, check=True)
            samples.append(time.perf_counter() - started)
        return min(samples)

    return (best(f"import {module}") - best("pass")) * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--module", default="router.handler")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--budget-ms", type=float, default=300.0)
    args = parser.parse_args(argv)

    measure(args.module)  # warm the .pyc caches; Lambda ships compiled or compiles once per image
    runs = sorted((measure(args.module) for _ in range(args.runs)), key=lambda run: run.total_us)
    totals = [run.total_us / 1000 for run in runs]
    median = statistics.median(totals)
    print(
        f"-X importtime, import {args.module}: min {totals[0]:.0f} ms, median {median:.0f} ms, "
        f"max {totals[-1]:.0f} ms over {args.runs} runs (budget {args.budget_ms:.0f} ms)"
    )
    print(f"wall clock, best of {args.runs}: {wall_clock_ms(args.module, args.runs):.0f} ms")
    print("heaviest direct imports (median run):")
    for name, micros in sorted(runs[len(runs) // 2].children_us.items(), key=lambda item: -item[1])[:8]:
        print(f"  {micros / 1000:8.1f} ms  {name}")
    return 0 if median <= args.budget_ms else 1


if __name__ == "__main__":
    raise SystemExit(main())
