"""Cold-import cost of the router Lambda: ``python -X importtime -c "import router.handler"`` in fresh processes.

For each run the cumulative microseconds of the top-level import lines that ``import MODULE`` produced are
summed (interpreter start-up imports such as ``site`` come before it and are left out): the time the Lambda
init phase spends importing the handler. Runs use the router's function environment, like a Lambda container,
and report min/median/max, the heaviest direct imports of the median run, and the plain wall-clock cost
(process time with the import minus process time without it), since ``-X importtime`` adds overhead of its
own. The machine's other load shows up as spread: compare minimums.

    .venv/bin/python bench/router_import_time.py [--runs 7] [--budget-ms 150] [--module router.handler]
    .venv/bin/python bench/router_import_time.py --built   # the `sam build` output under python3.13
    .venv/bin/python bench/router_import_time.py --built --baseline /tmp/main-build   # vs another build
    .venv/bin/python bench/router_import_time.py --built --lambda-runtime build/bench/lambda-runtime

``--built`` measures what Lambda actually loads: ``.aws-sam/build/RouterFunction`` plus the built
``CommonLayer`` (boto3/botocore without the CRT extension the dev venv has), on the python3.13 runtime.
With ``--lambda-runtime DIR`` (the Lambda runtime interface client, ``make lambda-runtime`` installs the
pinned ``awslambdaric`` there) it also imports the handler the way Lambda's init phase does: the
runtime's ``bootstrap`` is loaded first and its own ``_get_handler`` imports ``router.handler``, so the
modules the runtime has already loaded (logging, json, re, traceback, decimal, ...) are not counted
again. The budget then applies to that figure, the one Lambda's Init Duration contains; the bare
``python -c`` figure is still printed beside it.
Each round also imports ``botocore.session`` alone in the same interpreter (the floor of any function
that calls AWS) and, with ``--baseline DIR`` (a build directory holding ``CommonLayer/`` and
``RouterFunction/``, e.g. main's), the other build; runs are interleaved and the ratios printed, so a
busy machine shifts all of them alike.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

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


def parse_report(report: str, after: str = "site") -> Run:
    """Sum the top-level imports after ``after``; record their direct children for the breakdown.

    ``after`` is ``site`` (interpreter start-up) or the Lambda runtime's bootstrap, whose own imports
    happen before Lambda imports the handler. ``-X importtime`` prints a module after its own imports,
    so children precede their parent.
    """
    run, startup_done = Run(), False
    pending: dict[str, int] = {}
    for line in report.splitlines():
        match = _LINE.match(line)
        if not match:
            continue
        depth = len(match["indent"])  # one space per top-level name, two more per nesting level
        if depth == 1:
            if match["name"] == after:
                startup_done, pending = True, {}
                continue
            if startup_done:
                run.total_us += int(match["cumulative"])
                run.children_us.update(pending or {match["name"]: int(match["cumulative"])})
            pending = {}
        elif depth == 3:
            pending[match["name"]] = pending.get(match["name"], 0) + int(match["cumulative"])
    return run


@dataclass(frozen=True)
class Interpreter:
    """Which python runs the import, and with what environment (the dev venv or the built Lambda package)."""

    executable: str = sys.executable
    flags: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()

    def command(self, *args: str) -> list[str]:
        return [self.executable, *self.flags, *args]

    def environment(self) -> dict[str, str]:
        return {**os.environ, **FUNCTION_ENV, **dict(self.env)}


DEFAULT_BUILD = Path(__file__).resolve().parents[1] / ".aws-sam" / "build"
# Floors: what any function that calls AWS imports, and the stack the router is written on (botocore plus
# Powertools' HTTP API resolver, whose package also brings Logger, Metrics and Tracer). The router's own
# share is the distance from the second.
FLOOR_MODULE = "botocore.session"
STACK_FLOOR_MODULES = "botocore.session, aws_lambda_powertools.event_handler"


RUNTIME_BOOTSTRAP = "awslambdaric.bootstrap"


@dataclass(frozen=True)
class Subject:
    """One thing to import: the module, how (plain ``import`` or the Lambda runtime's loader), and where."""

    module: str
    interpreter: Interpreter
    through_runtime: bool = False
    handler: bool = True  # False: plain modules (a floor), imported after the bootstrap when through_runtime

    def code(self) -> str:
        if self.through_runtime and self.handler:
            # What Lambda's init runs: bootstrap.run() -> _get_handler(_HANDLER) -> importlib.import_module.
            return f"import {RUNTIME_BOOTSTRAP} as b; b._get_handler('{self.module}.lambda_handler')"
        if self.through_runtime:
            return f"import {RUNTIME_BOOTSTRAP}; import {self.module}"
        return f"import {self.module}"

    def after(self) -> str:
        return RUNTIME_BOOTSTRAP if self.through_runtime else "site"


def built_package_interpreter(build: Path = DEFAULT_BUILD, lambda_runtime: Path | None = None) -> Interpreter:
    if not (build / "RouterFunction").is_dir():
        raise SystemExit(f"no {build / 'RouterFunction'}: run `make sam-build` first")
    python = shutil.which("python3.13")
    if python is None:
        raise SystemExit("python3.13 not on PATH (PYENV_VERSION=3.11.7:3.13.0 provides it)")
    # Lambda's order: the function (/var/task), the layer (/opt/python), then the runtime (/var/runtime).
    path = f"{build / 'RouterFunction'}:{build / 'CommonLayer' / 'python'}"
    if lambda_runtime is not None:
        if not (lambda_runtime / "awslambdaric").is_dir():
            raise SystemExit(f"no awslambdaric under {lambda_runtime}: run `make lambda-runtime` first")
        path += f":{lambda_runtime}"
    # -s: ignore user site-packages so only the built package and the stdlib are importable.
    # PYTHONDONTWRITEBYTECODE: /var/task and /opt are read-only in Lambda, so only shipped .pyc count.
    return Interpreter(python, ("-s",), (("PYTHONPATH", path), ("PYTHONDONTWRITEBYTECODE", "1")))


def measure(subject: Subject) -> Run:
    completed = subprocess.run(
        subject.interpreter.command("-X", "importtime", "-c", subject.code()),
        env=subject.interpreter.environment(),
        capture_output=True,
        text=True,
        check=True,
    )
    return parse_report(completed.stderr, after=subject.after())


def wall_clock_ms(subject: Subject, runs: int) -> float:
    """Process time with the import minus without it (the runtime's bootstrap, if any, in both)."""
    baseline = f"import {RUNTIME_BOOTSTRAP}" if subject.through_runtime else "pass"

    def best(code: str) -> float:
        samples = []
        for _ in range(runs):
            started = time.perf_counter()
            subprocess.run(subject.interpreter.command("-c", code), env=subject.interpreter.environment(), check=True)
            samples.append(time.perf_counter() - started)
        return min(samples)

    return (best(subject.code()) - best(baseline)) * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--module", default="router.handler")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--budget-ms", type=float, default=150.0)
    parser.add_argument("--built", action="store_true", help="measure the sam build output on python3.13")
    parser.add_argument("--baseline", type=Path, help="with --built: another build directory to compare with")
    parser.add_argument(
        "--lambda-runtime",
        type=Path,
        help="with --built: where awslambdaric is installed; import the handler through its bootstrap too",
    )
    args = parser.parse_args(argv)
    if args.lambda_runtime and not args.built:
        parser.error("--lambda-runtime needs --built (the runtime runs python3.13)")
    interpreter = built_package_interpreter(lambda_runtime=args.lambda_runtime) if args.built else Interpreter()
    main_name = f"import {args.module}"
    subjects = {
        main_name: Subject(args.module, interpreter),
        f"import {FLOOR_MODULE}": Subject(FLOOR_MODULE, interpreter, handler=False),
        f"import {STACK_FLOOR_MODULES}": Subject(STACK_FLOOR_MODULES, interpreter, handler=False),
    }
    if args.baseline:
        subjects[f"baseline: import {args.module}"] = Subject(args.module, built_package_interpreter(args.baseline))
    # Ratios compare like with like: bare imports with bare imports, imports after the runtime with each other.
    comparisons = [(main_name, name) for name in subjects if name != main_name]
    budgeted = main_name
    if args.lambda_runtime:
        budgeted = f"{args.module} through the Lambda runtime's bootstrap"
        runtime_floor = f"{STACK_FLOOR_MODULES} after the Lambda runtime's bootstrap"
        subjects[budgeted] = Subject(args.module, interpreter, through_runtime=True)
        subjects[runtime_floor] = Subject(STACK_FLOOR_MODULES, interpreter, through_runtime=True, handler=False)
        comparisons += [(main_name, budgeted), (budgeted, runtime_floor)]

    for subject in subjects.values():
        measure(subject)  # warm the .pyc caches; Lambda ships compiled or compiles once per image
    samples: dict[str, list[Run]] = {name: [] for name in subjects}
    for _ in range(args.runs):  # interleaved: load on the machine hits every subject alike
        for name, subject in subjects.items():
            samples[name].append(measure(subject))
    medians = {name: statistics.median(run.total_us / 1000 for run in runs) for name, runs in samples.items()}
    label = "built package, python3.13" if args.built else "dev venv"
    for name, runs in samples.items():
        totals = sorted(run.total_us / 1000 for run in runs)
        print(
            f"{label} -X importtime, {name}: min {totals[0]:.0f} ms, median {medians[name]:.0f} ms, "
            f"max {totals[-1]:.0f} ms over {args.runs} runs"
        )
    for ours_name, theirs_name in comparisons:
        # Paired per round (the subjects of one round ran back to back, under the same load).
        paired = statistics.median(
            ours.total_us / theirs.total_us
            for ours, theirs in zip(samples[ours_name], samples[theirs_name], strict=True)
        )
        of_medians = medians[ours_name] / medians[theirs_name]
        print(
            f"ratio {ours_name} / {theirs_name}: median of per-round ratios {paired:.2f}, of medians {of_medians:.2f}"
        )
    median = medians[budgeted]
    verdict = "met" if median <= args.budget_ms else "MISSED"
    print(f"budget {args.budget_ms:.0f} ms ({budgeted}): {verdict} (median {median:.0f} ms)")
    print(f"wall clock, best of {args.runs}: {wall_clock_ms(subjects[budgeted], args.runs):.0f} ms ({budgeted})")
    runs = sorted(samples[budgeted], key=lambda run: run.total_us)
    print(f"heaviest direct imports (median run, {budgeted}):")
    for name, micros in sorted(runs[len(runs) // 2].children_us.items(), key=lambda item: -item[1])[:8]:
        print(f"  {micros / 1000:8.1f} ms  {name}")
    return 0 if median <= args.budget_ms else 1


if __name__ == "__main__":
    raise SystemExit(main())
