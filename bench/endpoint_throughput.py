"""Warm InvokeEndpoint throughput with wrk, beside a bare Starlette ceiling, interleaved in one run.

A quick check of the endpoint's hot path (its throughput target: docs/endpoint.md), not the full `make bench`
report:

    python bench/endpoint_throughput.py --rounds 3 --seconds 5 --workers 1 2 --rows 1 10 100

moto S3 runs in this process; the endpoint runs as ``python -m endpoint`` (its CLI, as the stack runs
it); the ceiling is a bare Starlette app answering a constant, on uvicorn + httptools + uvloop, one
process. Each round runs every configuration once (interleaved, so machine drift hits all alike);
the figure per configuration is the median round. Every endpoint response is checked by wrk's Lua
script (non-200 counted) and one response per row count is compared with the model's own predict.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
ROW = "1995,3000,4,2.5,1.0,2"
ENDPOINT_NAME = "bench"
BUCKET = "bench-throughput"
PREFIX = "multi_model_artifacts/"

CEILING_APP = """
import sys, socket
import uvicorn
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

async def invocations(request):
    await request.body()
    return Response(b"[1.0]", media_type="application/json")

app = Starlette(routes=[Route("/endpoints/{name}/invocations", invocations, methods=["POST"])])
sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind(("127.0.0.1", 0)); sock.listen(2048)
print(f"listening on http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
uvicorn.Server(uvicorn.Config(app, loop="uvloop", http="httptools", log_level="warning")).run(sockets=[sock])
"""

WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = [[%(body)s]]
wrk.headers["Content-Type"] = "text/csv"
wrk.headers["Accept"] = "application/json"
local targets = {%(targets)s}
local i = 0
request = function()
  i = i + 1
  wrk.headers["X-Amzn-SageMaker-Target-Model"] = targets[(i %% #targets) + 1]
  return wrk.format(nil, wrk.path)
end
"""


@contextlib.contextmanager
def spawn(args: list[str], env: dict[str, str]) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    from testkit.servers import startup_url

    process = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = startup_url(process)
        # Keep reading its output, or a chatty server would block on a full pipe.
        threading.Thread(target=process.stdout.read, daemon=True).start()  # type: ignore[union-attr]
        yield url, process
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()


def wrk(url: str, script: Path, seconds: float, connections: int) -> dict[str, float]:
    output = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))}  # type: ignore[union-attr]
    for label, key in (("50%", "p50"), ("99%", "p99")):
        match = re.search(rf"{re.escape(label)}\s+([\d.]+)(us|ms|s)", output)
        if match:
            scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[match.group(2)]
            result[key] = float(match.group(1)) * scale
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    result["bad"] = float(non_2xx.group(1)) if non_2xx else 0.0
    result["socket_errors"] = float(sum(int(value) for value in errors.groups())) if errors else 0.0
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--models", type=int, default=10)
    parser.add_argument("--workers", type=int, nargs="+", default=[1])
    parser.add_argument("--rows", type=int, nargs="+", default=[1])
    parser.add_argument("--no-ceiling", action="store_true")
    parser.add_argument("--endpoint-arg", action="append", default=[], help="extra python -m endpoint argument")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)

    from testkit.aws import moto_s3, s3_client
    from testkit.models import bench_model

    env = {**os.environ, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench"}
    env["AWS_DEFAULT_REGION"] = "us-east-1"
    targets = [f"Bench{index}_XX.20261125T040000Z-{index:08x}.tar.gz" for index in range(args.models)]
    figures: dict[str, list[dict[str, float]]] = {}
    with moto_s3(BUCKET) as s3_url, tempfile.TemporaryDirectory(prefix="bench-throughput-") as work:
        s3 = s3_client(s3_url)
        models = {}
        for index, target in enumerate(targets):
            model, artifact = bench_model(seed=index)
            models[target] = model
            s3.put_object(Bucket=BUCKET, Key=PREFIX + target, Body=artifact)
        env["AWS_ENDPOINT_URL_S3"] = s3_url
        bodies = {rows: "\n".join([ROW] * rows) for rows in args.rows}
        scripts = {}
        for rows, body in bodies.items():
            script = Path(work) / f"rows{rows}.lua"
            script.write_text(
                WRK_SCRIPT % {"body": body, "targets": ", ".join(json.dumps(target) for target in targets)}
            )
            scripts[rows] = script
        with contextlib.ExitStack() as servers:
            urls: dict[str, str] = {}
            if not args.no_ceiling:
                urls["ceiling"], _ = servers.enter_context(spawn([sys.executable, "-c", CEILING_APP], env))
            for workers in args.workers:
                cache = Path(work) / f"cache-{workers}"
                command = [sys.executable, "-m", "endpoint", "--port", "0", "--endpoint-name", ENDPOINT_NAME]
                command += ["--model-data-url", f"s3://{BUCKET}/{PREFIX}", "--cache-dir", str(cache)]
                command += [*args.endpoint_arg]
                if workers != 1:
                    command += ["--workers", str(workers)]
                url, _ = servers.enter_context(spawn(command, env))
                urls[f"endpoint w{workers}"] = url
                check_answers(url, targets, models, bodies, workers)
            for round_index in range(args.rounds):
                for name, url in urls.items():
                    for rows, script in scripts.items():
                        if name == "ceiling" and rows != args.rows[0]:
                            continue
                        invoke_url = f"{url}/endpoints/{ENDPOINT_NAME}/invocations"
                        result = wrk(invoke_url, script, args.seconds, args.connections)
                        key = name if name == "ceiling" else f"{name} rows={rows}"
                        figures.setdefault(key, []).append(result)
                        print(f"round {round_index + 1} {key}: {result}", file=sys.stderr)
    ceiling = statistics.median(r["rps"] for r in figures["ceiling"]) if "ceiling" in figures else None
    print(f"{'configuration':28} {'req/s':>9} {'rows/s':>10} {'p50 ms':>7} {'p99 ms':>7} {'x ceiling':>9} {'bad':>5}")
    summary = {}
    for key, runs in figures.items():
        rps = statistics.median(r["rps"] for r in runs)
        rows = int(key.split("rows=")[1]) if "rows=" in key else 1
        p50 = statistics.median(r.get("p50", 0.0) for r in runs)
        p99 = statistics.median(r.get("p99", 0.0) for r in runs)
        bad = sum(r["bad"] + r["socket_errors"] for r in runs)
        ratio = rps / ceiling if ceiling else float("nan")
        summary[key] = {"rps": rps, "rows_per_s": rps * rows, "p50_ms": p50, "p99_ms": p99, "ratio": ratio, "bad": bad}
        print(f"{key:28} {rps:9.0f} {rps * rows:10.0f} {p50:7.2f} {p99:7.2f} {ratio:9.3f} {bad:5.0f}")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    return 0


def check_answers(url: str, targets: list[str], models: dict[str, Any], bodies: dict[int, str], workers: int) -> None:
    """Warm every model in every worker and compare one answer per row count with the model's own predict."""
    import numpy as np

    with httpx.Client(base_url=url, timeout=60) as client:
        for _ in range(4 * workers):
            for target in targets:
                for rows, body in bodies.items():
                    response = client.post(
                        f"/endpoints/{ENDPOINT_NAME}/invocations",
                        content=body,
                        headers={"Content-Type": "text/csv", "X-Amzn-SageMaker-Target-Model": target},
                    )
                    response.raise_for_status()
                    expected = models[target].predict(np.loadtxt(io.StringIO(body), delimiter=",", ndmin=2))
                    if response.json() != expected.tolist():
                        raise AssertionError(f"{target} rows={rows}: {response.text[:200]} != {expected[:3]}")


if __name__ == "__main__":
    sys.exit(main())
