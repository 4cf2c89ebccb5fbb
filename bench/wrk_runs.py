"""wrk runs: the request list as a Lua table for ``wrk/replay.lua``, and one run's rate, latency and CPU."""

from __future__ import annotations

import json
import os
import re
import resource
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.processes import BenchBroken, cpu_seconds
from testkit.servers import wrk_binary

REPLAY_SCRIPT = Path(__file__).resolve().parent / "wrk" / "replay.lua"


@dataclass(frozen=True)
class HttpRequest:
    method: str
    path: str
    headers: Mapping[str, str]
    body: str


def _lua_string(text: str) -> str:
    safe = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ,.-_/:;=+*[]{}()"
    return '"' + "".join(chr(b) if b in safe else f"\\{b:03d}" for b in text.encode()) + '"'


def write_lua_requests(path: Path, requests: Sequence[HttpRequest]) -> Path:
    """The request list replay.lua cycles through, as a Lua table (every byte escaped: data, not code)."""
    lines = ["return {"]
    for request in requests:
        headers = ", ".join(f"[{_lua_string(k)}] = {_lua_string(v)}" for k, v in request.headers.items())
        lines.append(
            f"  {{method = {_lua_string(request.method)}, path = {_lua_string(request.path)}, "
            f"headers = {{{headers}}}, body = {_lua_string(request.body)}}},"
        )
    lines.append("}")
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    errors: int
    non_2xx: int
    latency_ms: dict[str, float]
    wrk_cpu_seconds: float
    server_cpu_seconds: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


def run_wrk(
    url: str,
    requests_file: Path,
    *,
    seconds: float,
    connections: int,
    threads: int = 1,
    server_pids: Callable[[], Sequence[int]] = list,
    timeout_seconds: float = 10.0,
) -> WrkResult:
    """One wrk run; CPU of wrk (rusage of the child) and of the server tree over the same interval."""
    try:
        binary = wrk_binary()
    except FileNotFoundError as error:
        raise BenchBroken(str(error)) from error
    argv = [
        binary,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        f"--timeout={timeout_seconds:g}s",
        "-s",
        str(REPLAY_SCRIPT),
        url,
    ]
    before_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    before_server = cpu_seconds(server_pids())
    completed = subprocess.run(
        argv, env={**os.environ, "WRK_REQUESTS": str(requests_file)}, capture_output=True, text=True, check=False
    )
    server_cpu = cpu_seconds(server_pids()) - before_server
    after_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    wrk_cpu = (after_children.ru_utime - before_children.ru_utime) + (
        after_children.ru_stime - before_children.ru_stime
    )
    match = re.search(r"^WRK_JSON (.*)$", completed.stdout, re.MULTILINE)
    if completed.returncode != 0 or match is None:
        raise BenchBroken(f"wrk failed ({completed.returncode}): {completed.stdout[-800:]} {completed.stderr[-800:]}")
    data = json.loads(match[1])
    errors = data["errors"]
    return WrkResult(
        requests=int(data["requests"]),
        seconds=data["duration_us"] / 1e6,
        errors=int(errors["connect"] + errors["read"] + errors["write"] + errors["timeout"]),
        non_2xx=int(errors["status"]),
        latency_ms={name: value / 1000 for name, value in data["latency_us"].items()},
        wrk_cpu_seconds=wrk_cpu,
        server_cpu_seconds=server_cpu,
    )
