"""Server processes under test and what they cost: CPU and memory of a process tree, from ``/proc``.

Nothing here knows about this project's servers: a :class:`Server` is an argv that serves HTTP on
127.0.0.1, either on a socket bound here and passed down (``{fd}`` in the argv) or on a port named in
the argv (``{port}``; a server that cannot inherit a socket). CPU and memory come from ``/proc``
(Linux), summed over the server's whole process tree, so multi-process servers count fully.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from endpoint.memory import process_tree
from endpoint.sockets import listening_socket
from testkit.servers import LOCALHOST, free_port

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


class BenchBroken(RuntimeError):
    """The run itself failed (a server did not start, wrong answers, wrk missing): not a missed target."""


# --------------------------------------------------------------------------- /proc


def cpu_seconds(pids: Sequence[int]) -> float:
    """utime + stime of the given processes (threads included), in seconds."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                # Fields after the parenthesised command name; utime and stime are fields 14 and 15.
                fields = stat.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            continue
    return total / _CLOCK_TICKS


def memory_bytes(pids: Sequence[int]) -> tuple[int, int]:
    """(RSS, PSS) summed over processes; PSS splits shared pages between the processes sharing them."""
    rss = pss = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/statm") as statm:
                rss += int(statm.read().split()[1]) * _PAGE_BYTES
            with open(f"/proc/{pid}/smaps_rollup") as rollup:
                match = re.search(r"^Pss:\s+(\d+) kB", rollup.read(), re.MULTILINE)
            pss += int(match[1]) * 1024 if match else 0
        except (OSError, IndexError, ValueError):
            continue
    return rss, pss


class Ticker:
    """Calls ``tick()`` at once, then every ``interval`` seconds, on a thread from :meth:`start` to :meth:`stop`."""

    def __init__(self, tick: Callable[[], None], interval: float, name: str) -> None:
        self._tick = tick
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._tick()
            self._stop.wait(self._interval)

    def start(self) -> Ticker:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop ticking; waits for a tick under way."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()


@dataclass
class MemorySampler:
    """Samples a process tree's RSS/PSS every ``interval`` seconds on a background thread."""

    pid: int
    interval: float = 0.5
    samples: list[tuple[float, int, int]] = field(default_factory=list)  # (seconds, rss, pss)
    _ticker: Ticker | None = None

    def __enter__(self) -> MemorySampler:
        started = time.monotonic()

        def sample() -> None:
            rss, pss = memory_bytes(process_tree(self.pid))
            self.samples.append((time.monotonic() - started, rss, pss))

        self._ticker = Ticker(sample, self.interval, "memory-sampler").start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._ticker is not None:
            self._ticker.stop()


# --------------------------------------------------------------------------- servers


def exit_on_termination() -> None:
    """Turn SIGTERM and SIGINT into ``SystemExit``, so the ``finally`` blocks that stop the bench's servers run.

    Each server runs in its own session (``Server.start``), so a signal to the bench reaches the bench
    alone: left to SIGTERM's default action it would die at once and leave every server running. The
    first signal starts the unwinding; later ones are ignored so that it can stop every server.
    """

    def unwind(signum: int, frame: object) -> None:
        for each in (signal.SIGTERM, signal.SIGINT):
            signal.signal(each, signal.SIG_IGN)
        raise SystemExit(128 + signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, unwind)


@dataclass
class Server:
    """One server under test: started once, measured over several rounds, stopped at the end."""

    name: str
    argv: Sequence[str]
    env: Mapping[str, str] | None = None
    cwd: Path | None = None
    ready_path: str = "/ping"
    log_path: Path | None = None
    port: int | None = None  # for argv that take {port}; else a socket is passed as {fd}
    process: subprocess.Popen[bytes] | None = None
    url: str = ""

    def start(self) -> Server:
        sock = None
        fds: tuple[int, ...] = ()
        if self.port is None and any("{fd}" in arg for arg in self.argv):
            sock = listening_socket(LOCALHOST, 0)
            sock.set_inheritable(True)
            port, fds = sock.getsockname()[1], (sock.fileno(),)
        else:
            port = self.port or free_port()
        argv = [arg.format(fd=fds[0] if fds else -1, port=port) for arg in self.argv]
        self.url = f"http://{LOCALHOST}:{port}"
        log: Any = open(self.log_path, "wb") if self.log_path else subprocess.DEVNULL  # noqa: SIM115 - closed below
        try:
            self.process = subprocess.Popen(
                argv,
                env={**os.environ, **(self.env or {})},
                cwd=self.cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=fds,
                start_new_session=True,  # its own process group: stopping it stops every worker
            )
        finally:
            if sock is not None:
                sock.close()
            if log is not subprocess.DEVNULL:
                log.close()
        return self

    def wait_ready(self, timeout: float = 120.0, path: str | None = None) -> Server:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise BenchBroken(f"{self.name} exited with {self.process.returncode} (log: {self.log_path})")
            try:
                if httpx.get(self.url + (path or self.ready_path), timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise BenchBroken(f"{self.name} not ready at {self.url} within {timeout:.0f} s (log: {self.log_path})")

    @property
    def pids(self) -> list[int]:
        return process_tree(self.process.pid) if self.process else []

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        except ProcessLookupError:
            pass
