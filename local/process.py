"""Child-process plumbing for the local stack: readiness files, process groups, orphan protection."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

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


def exit_with_parent(stopped: threading.Event, interval: float = 0.5) -> None:
    """Set ``stopped`` when the parent dies, so a killed supervisor never leaves servers behind."""
    parent = os.getppid()

    def watch() -> None:
        while not stopped.wait(interval):
            if os.getppid() != parent:
                stopped.set()

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def stop_event() -> threading.Event:
    """Set by SIGTERM, SIGINT or the parent's death: the signal for a stack child to wind down."""
    stopped = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopped.set())
    exit_with_parent(stopped)
    return stopped


@dataclass
class Child:
    """One stack component running in its own process group (so stopping it stops its children too)."""

    name: str
    argv: Sequence[str]
    env: Mapping[str, str]
    log_path: Path
    ready_file: Path | None = None
    pass_fds: Sequence[int] = ()
    process: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        if self.ready_file:
            self.ready_file.unlink(missing_ok=True)
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            list(self.argv),
            env=dict(self.env),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            pass_fds=tuple(self.pass_fds),
        )

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
