"""``make bench``'s configuration: the run's options, the environment every child gets, the progress log."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from bench.processes import REPO_ROOT

ENDPOINT_NAME = "bench"
BASE_ENV = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "PYTHONUNBUFFERED": "1",
}
MiB = 1024 * 1024


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


@dataclass(frozen=True)
class Options:
    rounds: int = 3
    seconds: float = 5.0
    warmup_seconds: float = 1.0
    connections: int = 50
    cold_models: int = 100
    scale_models: int = 10_000
    scale_seconds: float = 60.0
    scale_connections: int = 8
    scale_budget_bytes: int = 256 * MiB
    zipf_exponent: float = 1.1
    mlserver: Path | None = None
    legacy: bool = True
    work_dir: Path = REPO_ROOT / "build" / "bench"
    docs: Path = REPO_ROOT / "docs" / "benchmarks.md"
    endpoint_args: tuple[str, ...] = ()
