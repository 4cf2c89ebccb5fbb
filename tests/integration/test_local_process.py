"""`local.process`: port_is_free over real sockets; the Supervisor restarting real child processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from endpoint.sockets import listening_socket
from local.process import Child, RestartPolicy, Supervisor, port_is_free

# A server that accepts one connection and holds it until killed.
HOLDING_SERVER = """
import socket, sys, time
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", 0))
server.listen()
print(server.getsockname()[1], flush=True)
connection, _ = server.accept()
time.sleep(60)
"""


def test_a_listening_port_is_not_free() -> None:
    # Given a socket listening on a port
    with listening_socket("127.0.0.1", 0) as listening:
        port = listening.getsockname()[1]
        # When / Then the port is reported as taken
        assert not port_is_free(port)
    # And free again once the listener is closed
    assert port_is_free(port)


def test_a_port_whose_server_was_killed_mid_connection_is_free() -> None:
    # Given a server process with an open client connection
    server = subprocess.Popen([sys.executable, "-c", HOLDING_SERVER], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        client = socket.create_connection(("127.0.0.1", port), timeout=5)
        time.sleep(0.2)
        # When the server is killed, which leaves its side of the connection in TIME_WAIT
        server.kill()
        server.wait(timeout=10)
        time.sleep(0.2)
        # Then a plain bind is refused, yet a new server could listen, so the port counts as free
        with socket.socket() as plain_probe:
            try:
                plain_probe.bind(("127.0.0.1", port))
                plain_bind_refused = False
            except OSError:
                plain_bind_refused = True
        assert plain_bind_refused
        assert port_is_free(port)
        client.close()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


# --- Supervisor: restart with backoff, give up loudly ----------------------------------------------

READY_THEN_SLEEP = """
import json, os, sys, time
from pathlib import Path
ready = Path(sys.argv[1])
partial = ready.with_suffix(".partial")
partial.write_text(json.dumps({"pid": os.getpid()}))
partial.replace(ready)
print("started", os.getpid(), flush=True)
time.sleep(60)
"""


def _child(tmp_path: Path, code: str, name: str = "worker") -> Child:
    ready = tmp_path / f"{name}.json"
    return Child(
        name=name,
        argv=[sys.executable, "-c", code, str(ready)],
        env=dict(os.environ),
        log_path=tmp_path / f"{name}.log",
        ready_file=ready,
    )


def test_a_killed_child_is_restarted_and_reported(tmp_path: Path) -> None:
    # Given a supervised child that is ready
    child = _child(tmp_path, READY_THEN_SLEEP)
    child.start()
    child.wait_until_ready(10)
    restarted: list[int] = []
    lines: list[str] = []
    supervisor = Supervisor(
        [child],
        RestartPolicy(backoff_base_seconds=0.05),
        on_restarted=lambda c: restarted.append(c.pid),
        report=lines.append,
    )
    supervisor.start()
    try:
        first = child.pid
        # When it is killed with SIGKILL
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while not restarted and time.monotonic() < deadline:
            time.sleep(0.05)
        # Then it runs again under a new pid, the stack is told, and its log keeps both runs
        assert restarted == [child.pid]
        assert child.pid != first
        assert child.exit_code() is None
        assert supervisor.failure is None
        log = child.log_path.read_text()
        assert [line.split()[0] for line in log.splitlines() if line.startswith("started")] == ["started"] * 2
        assert "restarted (start 2, last exit -9)" in log
        assert any("worker exited with code -9" in line for line in lines)
    finally:
        supervisor.stop()
        child.stop()


def test_a_crash_loop_makes_the_supervisor_give_up_loudly(tmp_path: Path) -> None:
    # Given a child that dies at once every time it starts
    child = _child(tmp_path, "import sys; print('boom: bad config', flush=True); sys.exit(3)")
    child.start()
    lines: list[str] = []
    policy = RestartPolicy(backoff_base_seconds=0.01, backoff_cap_seconds=0.05, max_restarts=3, window_seconds=60)
    supervisor = Supervisor([child], policy, ready_timeout=5, report=lines.append)
    supervisor.start()
    try:
        # When the supervisor has tried the allowed restarts
        assert supervisor.failed.wait(30)
        # Then it gives up, naming the child, its exit code, the count and the log, with the log's tail
        assert supervisor.failure is not None
        assert "worker keeps crashing: exited with code 3 after 3 restarts" in supervisor.failure
        assert "boom: bad config" in supervisor.failure
        assert supervisor.restart_counts["worker"] == 3
        assert any(line.startswith("supervisor: GIVING UP") for line in lines)
    finally:
        supervisor.stop()
        child.stop()


def test_backoff_doubles_up_to_the_cap() -> None:
    policy = RestartPolicy(backoff_base_seconds=0.5, backoff_cap_seconds=3.0)
    assert [policy.delay(n) for n in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
