"""Child-process plumbing for the local stack: readiness files, process groups, orphan protection,
and a supervisor that restarts a child that dies (with backoff) and gives up loudly if it keeps dying."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from endpoint.lifetime import watch_parent

LOCAL_HOST = "127.0.0.1"


class ChildFailed(RuntimeError):
    """A child process exited or did not become ready in time; the message holds its log tail."""


def port_is_free(port: int, host: str = LOCAL_HOST) -> bool:
    """Whether a server could listen on ``port`` now.

    The probe sets SO_REUSEADDR like every server here does: a server killed with open
    connections leaves them in TIME_WAIT for a minute, which blocks a plain bind but not a
    restarted server, while a socket still listening blocks both.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def write_ready_file(path: Path, data: Mapping[str, Any], indent: int | None = None) -> None:
    """Publish facts (ports, URLs) atomically: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(data, indent=indent) + "\n")
    partial.replace(path)


def stop_event() -> threading.Event:
    """Set by SIGTERM, SIGINT or the parent's death: the signal for a stack child to wind down."""
    stopped = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopped.set())
    watch_parent(stopped.set, done=stopped.is_set)
    return stopped


@dataclass
class Child:
    """One stack component running in its own process group (so stopping it stops its children too).

    ``start`` may be called again after the process died: the log is appended to, after a marker.
    ``ping_url`` makes readiness "answers HTTP" instead of "wrote its ready file".
    """

    name: str
    argv: Sequence[str]
    env: Mapping[str, str]
    log_path: Path
    ready_file: Path | None = None
    pass_fds: Sequence[int] = ()
    ping_url: str | None = None
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    _log: IO[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        if self.ready_file:
            self.ready_file.unlink(missing_ok=True)
        if self._log:
            self._log.close()
        self._log = self.log_path.open("ab")
        if self.starts:
            previous = self.process.returncode if self.process else None
            self._log.write(
                f"\n--- {self.name} restarted (start {self.starts + 1}, last exit {previous}) ---\n".encode()
            )
            self._log.flush()
        self.starts += 1
        self.process = subprocess.Popen(
            list(self.argv),
            env=dict(self.env),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            pass_fds=tuple(self.pass_fds),
        )

    def kill_leftovers(self) -> None:
        """SIGKILL what is left of the last run's process group (a dead leader's workers, a hung start)."""
        if self.process is None:
            return
        group = self.process.pid  # start_new_session: the group id is the leader's pid
        if group_members(group):
            _signal_group(group, signal.SIGKILL)
            _wait_group_gone(group, timeout=5.0)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)

    def exit_code(self) -> int | None:
        """The exit code if the process has ended, else None."""
        return None if self.process is None else self.process.poll()

    def wait_until_ready(self, timeout: float) -> dict[str, Any]:
        if self.ping_url:
            self.wait_http(self.ping_url, timeout)
            return {}
        return self.wait_ready(timeout)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def wait_ready(self, timeout: float) -> dict[str, Any]:
        """Wait for the ready file (or, without one, only for the process to stay alive)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            if self.ready_file and self.ready_file.is_file():
                return json.loads(self.ready_file.read_text())
            time.sleep(0.02)
        raise ChildFailed(f"{self.name} not ready after {timeout:.0f}s\n{self.log_tail()}")

    def wait_http(self, url: str, timeout: float) -> None:
        """Wait until ``url`` answers any HTTP response (the server is accepting and serving)."""
        import http.client
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            # A socket the child inherited accepts connections before the server runs; the request
            # then waits in the backlog, so each attempt waits long enough to be answered.
            attempt_timeout = max(0.1, min(2.0, deadline - time.monotonic()))
            connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=attempt_timeout)
            try:
                connection.request("GET", parts.path or "/")
                connection.getresponse().read()
                return
            except OSError:
                time.sleep(0.05)
            finally:
                connection.close()
        raise ChildFailed(f"{self.name} did not answer {url} within {timeout:.0f}s\n{self.log_tail()}")

    def _check_alive(self) -> None:
        assert self.process is not None
        code = self.process.poll()
        if code is not None:
            raise ChildFailed(f"{self.name} exited with code {code}\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(f"  [{self.name}] {line}" for line in text.splitlines()[-lines:])

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the whole process group, then SIGKILL whatever is left after ``timeout``."""
        if self.process is None:
            return
        try:
            group = os.getpgid(self.process.pid)
        except ProcessLookupError:
            group = None
        if group is not None:
            _signal_group(group, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                _signal_group(group, signal.SIGKILL)
                self.process.wait(5)
            # Grandchildren (e.g. an endpoint's workers) share the group; make sure none survive.
            _wait_group_gone(group, timeout=2.0)
        else:
            self.process.wait(5)
        if self._log:
            self._log.close()
        if self.ready_file:
            self.ready_file.unlink(missing_ok=True)


def _signal_group(group: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, signum)


def group_members(group: int) -> list[int]:
    """Live (non-zombie) processes whose process group is ``group``, read from /proc."""
    members: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Fields after the command name (which may contain spaces) start after the last ')'.
        fields = stat.rsplit(")", 1)[1].split()
        state, pgrp = fields[0], int(fields[2])
        if pgrp == group and state != "Z":
            members.append(int(entry.name))
    return members


def _wait_group_gone(group: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while group_members(group) and time.monotonic() < deadline:
        time.sleep(0.05)
    if group_members(group):
        _signal_group(group, signal.SIGKILL)


@dataclass(frozen=True)
class RestartPolicy:
    """Restart a dead child after base, 2×base, 4×base… seconds (capped); give up after ``max_restarts``
    restarts within ``window_seconds`` (a crash loop), so a broken child fails the stack loudly."""

    backoff_base_seconds: float = 0.5
    backoff_cap_seconds: float = 8.0
    max_restarts: int = 5
    window_seconds: float = 60.0

    def delay(self, recent_restarts: int) -> float:
        return float(min(self.backoff_cap_seconds, self.backoff_base_seconds * 2**recent_restarts))


class Supervisor:
    """Watches children; restarts each one that exits while the stack runs (see :class:`RestartPolicy`).

    ``on_restarted(child)`` runs after a restarted child is ready again (e.g. to republish pids);
    ``failure`` holds the reason once the supervisor has given up on a child.
    """

    def __init__(
        self,
        children: Sequence[Child],
        policy: RestartPolicy,
        on_restarted: Callable[[Child], None] = lambda child: None,
        ready_timeout: float = 60.0,
        interval: float = 0.1,
        report: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True),
    ) -> None:
        self._children = list(children)
        self._policy = policy
        self._on_restarted = on_restarted
        self._ready_timeout = ready_timeout
        self._interval = interval
        self._report = report
        self._stopped = threading.Event()
        self._restarts: dict[str, deque[float]] = {child.name: deque() for child in self._children}
        self._thread: threading.Thread | None = None
        self.failure: str | None = None
        self.failed = threading.Event()
        self.restart_counts: dict[str, int] = {child.name: 0 for child in self._children}

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="supervisor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=self._ready_timeout + 5)

    def _run(self) -> None:
        while not self._stopped.wait(self._interval):
            for child in self._children:
                code = child.exit_code()
                if code is not None and not self._stopped.is_set() and not self._restart(child, code):
                    return

    def _restart(self, child: Child, code: int) -> bool:
        """Restart ``child`` until it is ready; False once the policy says give up."""
        while not self._stopped.is_set():
            now = time.monotonic()
            recent = self._restarts[child.name]
            while recent and now - recent[0] > self._policy.window_seconds:
                recent.popleft()
            if len(recent) >= self._policy.max_restarts:
                self._give_up(child, code, len(recent))
                return False
            delay = self._policy.delay(len(recent))
            self._report(f"supervisor: {child.name} exited with code {code}; restarting in {delay:.1f}s")
            if self._stopped.wait(delay):
                return True
            recent.append(time.monotonic())
            self.restart_counts[child.name] += 1
            try:
                child.kill_leftovers()
                child.start()
                child.wait_until_ready(self._ready_timeout)
            except (ChildFailed, OSError) as error:
                code = child.exit_code() or -1
                self._report(f"supervisor: {child.name} failed to come back: {str(error).splitlines()[0]}")
                continue
            self._report(f"supervisor: {child.name} is back (pid {child.pid})")
            self._on_restarted(child)
            return True
        return True

    def _give_up(self, child: Child, code: int, restarts: int) -> None:
        self.failure = (
            f"{child.name} keeps crashing: exited with code {code} after {restarts} restarts within "
            f"{self._policy.window_seconds:.0f}s; giving up (log: {child.log_path})\n{child.log_tail()}"
        )
        self._report(f"supervisor: GIVING UP: {self.failure}")
        self.failed.set()
