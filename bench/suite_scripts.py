"""``make bench``'s older single-client scripts, run last as children; their output goes into the report."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.processes import REPO_ROOT
from bench.suite_config import log


def legacy_scripts(work_dir: Path) -> list[dict[str, Any]]:
    bench = Path(__file__).resolve().parent
    commands = [
        (
            "router cold import (built package, through the Lambda runtime's bootstrap)",
            [
                sys.executable,
                str(bench / "router_import_time.py"),
                "--built",
                "--lambda-runtime",
                str(bench.parent / "build" / "bench" / "lambda-runtime"),
            ],
        ),
        (
            "packed-forest predict and model_fn vs scikit-learn, against its targets",
            [sys.executable, str(bench / "forest_predict.py"), "--rounds", "7"],
        ),
        (
            "endpoint single-client latency",
            [sys.executable, str(bench / "endpoint_latency.py"), "--requests", "500", "--cold-models", "5"],
        ),
        (
            "router handler CPU per warm invocation (in process, against the local stack)",
            [sys.executable, str(bench / "router_invocation.py"), "--invocations", "500"],
        ),
        (
            "stack single-client latency",
            [sys.executable, str(bench / "stack_latency.py"), "--cities", "3", "--requests", "200", "--batch", "100"],
        ),
    ]
    api_bench = bench / "http_api_throughput.py"
    if api_bench.exists():  # the HTTP API's own throughput bench, when it has landed: its defaults
        commands.append(("HTTP API throughput (its own bench)", [sys.executable, str(api_bench)]))
    results = []
    for title, argv in commands:
        started = time.perf_counter()
        completed = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, check=False, timeout=600)
        broken = completed.returncode != 0 and "Traceback" in completed.stderr
        results.append(
            {
                "title": title,
                "command": " ".join(
                    Path(a).name if a == sys.executable else os.path.relpath(a, REPO_ROOT) if a.startswith("/") else a
                    for a in argv
                ),
                "exit": completed.returncode,
                "broken": broken,
                "seconds": time.perf_counter() - started,
                "output": (completed.stdout + (completed.stderr[-2000:] if broken else "")).strip(),
            }
        )
        log(f"{title}: exit {completed.returncode} in {time.perf_counter() - started:.0f} s")
    return results
