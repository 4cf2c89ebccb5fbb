"""What a training run produced: one result or failure per city, and the run as a whole."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from house_prices.errors import DomainError

_STDERR_TAIL_LINES = 40


class TrainingJobFailed(DomainError):
    """One or more cities failed to train; ``failures`` holds each city's exit code and stderr."""

    def __init__(self, failures: Sequence[CityFailure]) -> None:
        details = "\n".join(f"--- {f.city} (exit {f.returncode}) ---\n{f.stderr_tail()}" for f in failures)
        super().__init__(f"training failed for {', '.join(f.city for f in failures)}\n{details}")
        self.failures = list(failures)


@dataclass(frozen=True)
class CityResult:
    city: str
    job_name: str
    metrics: Mapping[str, Any]
    artifact: Path
    inputs: Mapping[str, Path]
    wall_seconds: float


@dataclass(frozen=True)
class CityFailure:
    city: str
    job_name: str
    returncode: int
    stderr: str
    wall_seconds: float

    def stderr_tail(self, lines: int = _STDERR_TAIL_LINES) -> str:
        return "\n".join(self.stderr.rstrip().splitlines()[-lines:])


@dataclass
class RunReport:
    results: list[CityResult] = field(default_factory=list)
    failures: list[CityFailure] = field(default_factory=list)
    wall_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failures

    def raise_for_failures(self) -> RunReport:
        if self.failures:
            raise TrainingJobFailed(self.failures)
        return self
