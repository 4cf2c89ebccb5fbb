"""The quiet gate: measure when the machine's other tenants leave its cores to the bench, and say how much they took.

The machine is shared. A run during which other tenants took a good part of the cores did not get
the cores its peer got, and a ratio of the two measures the neighbours. ``QuietGate.measure(run)``
waits briefly for a quiet moment (``/proc/stat``'s busy time, less the bench's own CPU, over a short
window), runs ``run()``, reads what the rest of the machine took during it (in cores), and redoes a
crowded run within a bounded number of retries and a time budget per round, keeping the least
crowded attempt. Every side of a comparison goes through the same gate, and each sample records its
reading. Used by the density bench (``bench.density_measure``) and the segments bench's training
overhead (``bench.segments_scale``).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from bench.processes import cpu_seconds

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
T = TypeVar("T")


def parse_busy_seconds(proc_stat_first_line: str, clock_ticks: int = _CLOCK_TICKS) -> float:
    """Busy CPU time of all CPUs from ``/proc/stat``'s ``cpu`` line: everything but idle and iowait.

    Fields: user nice system idle iowait irq softirq steal guest guest_nice; guest time is already
    counted in user (and guest_nice in nice), so only the first eight are summed. Steal is busy: cores
    the hypervisor gave to someone else are not the bench's either.
    """
    fields = [int(value) for value in proc_stat_first_line.split()[1:9]]
    return (sum(fields) - fields[3] - fields[4]) / clock_ticks


def machine_busy_seconds() -> float:
    with open("/proc/stat") as stat:
        return parse_busy_seconds(stat.readline())


def own_cpu_seconds(server_pids: Sequence[int]) -> float:
    """CPU of everything the bench runs: the given process trees (servers), this process, its reaped children.

    A child (wrk, a CLI run, a pool of fitting processes) counts once it has been waited for, with
    the children it waited for in turn: read after a run that reaps what it started, nothing of the
    bench's is taken for a neighbour's.
    """
    times = os.times()
    return cpu_seconds(server_pids) + times.user + times.system + times.children_user + times.children_system


@dataclass(frozen=True)
class Quiet:
    """When a run counts as having had the machine: its neighbours took at most ``threshold_cores``."""

    threshold_cores: float = 0.25
    retries: int = 2  # a crowded run is redone at most this many times (the least crowded attempt is kept)
    settle_seconds: float = 10.0  # before each attempt, wait at most this long for a quiet window
    window_seconds: float = 0.5
    budget_seconds: float = 120.0  # the most one round spends waiting and redoing runs


def add_quiet_arguments(parser: argparse.ArgumentParser, *, runs: str, when_zero: str) -> None:
    """The gate's options on a bench's command line (read back by :func:`quiet_from_arguments`).

    ``runs`` names the runs the bench gates and ``when_zero`` what a budget of 0 means there, for the help.
    """
    parser.add_argument(
        "--quiet-threshold-cores",
        type=float,
        default=Quiet.threshold_cores,
        help=f"{runs}: a run is redone when the rest of the machine took more cores than this",
    )
    parser.add_argument(
        "--quiet-budget-seconds",
        type=float,
        default=Quiet.budget_seconds,
        help=f"{runs}: the most one round spends waiting for quiet and redoing runs (0: {when_zero})",
    )


def quiet_from_arguments(args: argparse.Namespace) -> Quiet:
    return Quiet(threshold_cores=args.quiet_threshold_cores, budget_seconds=args.quiet_budget_seconds)


@dataclass(frozen=True)
class Gated(Generic[T]):
    value: T
    outside_cores: float
    attempts: int


class QuietGate:
    """Runs measurements when the machine's other tenants leave its cores to the bench (see the module doc).

    ``own_pids`` lists every long-lived process the bench itself runs (all servers' trees, idle ones
    included), so their CPU is never taken for a neighbour's. The same gate serves every side's runs.
    """

    def __init__(
        self,
        quiet: Quiet,
        own_pids: Callable[[], Sequence[int]],
        *,
        busy: Callable[[], float] = machine_busy_seconds,
        own: Callable[[Sequence[int]], float] = own_cpu_seconds,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.quiet = quiet
        self._own_pids = own_pids
        self._busy = busy
        self._own = own
        self._clock = clock
        self._sleep = sleep
        self.spent_seconds = 0.0  # waiting for quiet windows and redoing crowded runs, in all
        self._round_started_spent = 0.0
        self.redone = 0
        self.runs = 0

    def start_round(self) -> None:
        """A new round gets its own budget: a crowded spell spends one round's, not the whole bench's."""
        self._round_started_spent = self.spent_seconds

    def _mark(self) -> tuple[float, float, float]:
        return self._clock(), self._busy(), self._own(self._own_pids())

    def _outside_cores(self, since: tuple[float, float, float]) -> float:
        now = self._mark()
        wall = now[0] - since[0]
        if wall <= 0:
            return 0.0
        return max(0.0, ((now[1] - since[1]) - (now[2] - since[2])) / wall)

    @property
    def budget_left(self) -> float:
        return self.quiet.budget_seconds - (self.spent_seconds - self._round_started_spent)

    def wait_for_quiet(self) -> float:
        """Sample windows until one is quiet, for at most ``settle_seconds`` (and the budget); the last reading."""
        started = self._clock()
        outside = 0.0
        while True:
            mark = self._mark()
            self._sleep(self.quiet.window_seconds)
            outside = self._outside_cores(mark)
            waited = self._clock() - started
            if (
                outside <= self.quiet.threshold_cores
                or waited >= self.quiet.settle_seconds
                or waited >= self.budget_left
            ):
                self.spent_seconds += waited
                return outside

    def measure(self, run: Callable[[], T]) -> Gated[T]:
        """``run()`` in a quiet moment, redone while crowded (within retries and budget); the least crowded kept."""
        best: Gated[T] | None = None
        for attempt in range(1, self.quiet.retries + 2):
            self.wait_for_quiet()
            mark = self._mark()
            value = run()
            outside = self._outside_cores(mark)
            if attempt > 1:
                self.spent_seconds += self._clock() - mark[0]
                self.redone += 1
            if best is None or outside < best.outside_cores:
                best = Gated(value, outside, attempt)
            if outside <= self.quiet.threshold_cores or self.budget_left <= 0:
                break
        assert best is not None
        self.runs += 1
        return Gated(best.value, best.outside_cores, attempt)

    def summary(self) -> dict[str, Any]:
        return {
            "threshold_cores": self.quiet.threshold_cores,
            "retries": self.quiet.retries,
            "settle_seconds": self.quiet.settle_seconds,
            "budget_seconds": self.quiet.budget_seconds,
            "spent_seconds": self.spent_seconds,
            "runs": self.runs,
            "redone": self.redone,
        }
