"""Throughput of the local HTTP API (API Gateway → router sandboxes → endpoint) against a bare ceiling.

Three servers, measured with ``wrk`` in interleaved rounds so machine drift hits all alike:

* ``ceiling``: a bare Starlette app answering a small JSON body, on uvicorn with httptools + uvloop,
  one process — the fastest stock Python ASGI stack (the ceiling of `make bench`);
* ``bridge``: the local HTTP API in front of a handler that returns at once — what API Gateway
  emulation and the sandbox pool cost on their own;
* ``api``: the real path, one house per ``POST /locations/{city}/predictions`` through the local
  stack (router in its sandboxes, boto3 InvokeEndpoint, the local endpoint, a trained model);
* ``endpoint``: the InvokeEndpoint the router makes for that request, straight at the local endpoint
  (same CSV row, same target model) — the ``api`` path can be no faster than this.

Every response is checked (wrk counts non-2xx and socket errors; a run with any is flagged), and the
figures are medians over the rounds, reported as ratios to the ceiling of the same run.
Target: ``api`` ≥ 0.08 × ``ceiling`` (bench/report.py).

    .venv/bin/python bench/http_api_throughput.py [--rounds 3] [--seconds 5] [--connections 50] [--json]

``run(...)`` returns the same results as a dict for the ``make bench`` report.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from house_prices import schema
from local.process import LOCAL_HOST
from testkit.servers import wrk_binary

REPO_ROOT = Path(__file__).resolve().parent.parent
TARGET_RATIO = 0.08
CITY = "Chicago_IL"
NOOP_FUNCTION_DIR = Path(__file__).resolve().parent / "noop_function"
JSON_HEADERS = {"Content-Type": "application/json"}


# --- the servers -------------------------------------------------------------------------------


def ceiling_app() -> Any:
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def predict(_: Any) -> JSONResponse:
        return JSONResponse({"predictions": [{"price": 465000.5}]})

    return Starlette(routes=[Route("/predict", predict, methods=["POST"])])


def bridge_app(sandboxes: int) -> Any:
    """The local HTTP API around a handler that returns at once, in real sandbox processes."""
    from local.http_api import ApiIdentity, HttpApi
    from local.sandboxes import SandboxPool, SandboxSpec
    from local.template import FunctionSpec, HttpRoute

    function = FunctionSpec(
        logical_id="Noop",
        function_name="bench-Noop",
        code_uri=NOOP_FUNCTION_DIR,
        handler="noop_handler.handler",
        runtime="python3.13",
        timeout=10,
        memory_size=128,
        environment={},
        http_routes=(HttpRoute("Predict", "POST", "/predict"),),
    )
    pool = SandboxPool(SandboxSpec(function, "us-east-1", "123456789012"), size=sandboxes)
    return HttpApi(function, pool, ApiIdentity("123456789012"))


def serve(kind: str, port_file: Path, sandboxes: int) -> None:
    import uvicorn

    from endpoint.sockets import listening_socket
    from local.process import write_ready_file

    app = ceiling_app() if kind == "ceiling" else bridge_app(sandboxes)
    sock = listening_socket(LOCAL_HOST, 0)
    config = uvicorn.Config(app, log_level="warning", access_log=False, loop="uvloop", http="httptools")
    server = uvicorn.Server(config)

    def publish() -> None:
        while not server.started:
            time.sleep(0.01)
        write_ready_file(port_file, {"url": f"http://{LOCAL_HOST}:{sock.getsockname()[1]}"})

    import threading

    threading.Thread(target=publish, daemon=True).start()
    server.run(sockets=[sock])


@contextlib.contextmanager
def server_process(kind: str, work: Path, sandboxes: int) -> Iterator[str]:
    port_file = work / f"{kind}.json"
    process = subprocess.Popen(
        [sys.executable, __file__, "--serve", kind, "--port-file", str(port_file), "--sandboxes", str(sandboxes)],
        cwd=REPO_ROOT,
    )
    try:
        deadline = time.monotonic() + 60
        while not port_file.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the {kind} server did not start")
            time.sleep(0.05)
        yield json.loads(port_file.read_text())["url"]
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


# --- wrk ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    url: str
    body: str
    headers: Mapping[str, str]


def wrk(target: Target, seconds: float, connections: int, threads: int, work: Path) -> dict[str, Any]:
    script = work / "post.lua"
    headers = "".join(f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}\n" for k, v in target.headers.items())
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(target.body)}\n"
        f"{headers}"
        "done = function(summary, latency, requests)\n"
        '  io.write(string.format("JSON {\\"requests\\": %d, \\"duration_us\\": %d, \\"p50_us\\": %d,'
        ' \\"p99_us\\": %d, \\"errors\\": %d}\\n", summary.requests, summary.duration, latency:percentile(50),'
        " latency:percentile(99), summary.errors.connect + summary.errors.read + summary.errors.write"
        " + summary.errors.status + summary.errors.timeout))\n"
        "end\n"
    )
    try:
        binary = wrk_binary()
    except FileNotFoundError as error:
        raise SystemExit(str(error)) from None  # a setup step missing: its message, not a traceback
    output = subprocess.run(
        [
            binary,
            f"-t{threads}",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            target.url,
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    match = re.search(r"^JSON (.*)$", output, re.MULTILINE)
    if not match:
        raise RuntimeError(f"unexpected wrk output:\n{output}")
    facts = json.loads(match.group(1))
    return {
        "rps": facts["requests"] / (facts["duration_us"] / 1e6),
        "p50_ms": facts["p50_us"] / 1000,
        "p99_ms": facts["p99_us"] / 1000,
        "requests": facts["requests"],
        "errors": facts["errors"],  # non-2xx/3xx responses included
    }


# --- the run -----------------------------------------------------------------------------------


@contextlib.contextmanager
def api_with_a_live_model(work: Path) -> Iterator[tuple[Target, Target]]:
    """The local stack with CITY trained and live: (the API request, the endpoint request the router makes)."""
    from rich.console import Console

    from house_prices.registry import ModelRegistry
    from local.demo import train_and_publish, wait_for_live
    from local.stack import LocalStack, StackConfig

    quiet = Console(quiet=True)
    config = StackConfig(state_dir=work / "stack", write_stack_file=False)
    with LocalStack(config) as stack:
        train_and_publish(stack, (CITY,), quiet, work / "training", progress=False, workers=1)
        registry = ModelRegistry(stack.client("dynamodb"), stack.info.registry_table)
        live = wait_for_live(registry, (CITY,), quiet, timeout=90)[CITY]
        house = json.dumps(schema.EXAMPLE_HOUSE)
        api = Target(f"{stack.info.api_url}/locations/{CITY}/predictions", house, JSON_HEADERS)
        endpoint = Target(
            f"{stack.info.endpoint_url}/endpoints/{stack.info.endpoint_name}/invocations",
            schema.rows_to_csv([[schema.EXAMPLE_HOUSE[name] for name in schema.FEATURE_NAMES]]),
            {
                "Content-Type": "text/csv",
                "Accept": "application/json",
                "X-Amzn-SageMaker-Target-Model": live.target_model,
            },
        )
        yield api, endpoint


def warm_up(target: Target, requests: int = 50) -> None:
    """The model is loaded before timing, and a wrong answer stops the bench."""
    with httpx.Client(timeout=30) as client:
        for _ in range(requests):
            response = client.post(target.url, content=target.body, headers=dict(target.headers))
            if response.status_code != 200:
                raise RuntimeError(f"{target.url} answered {response.status_code}: {response.text[:200]}")


def run(
    rounds: int = 3,
    seconds: float = 5.0,
    connections: int = 50,
    threads: int = 1,
    sandboxes: int | None = None,
) -> dict[str, Any]:
    from local.sandboxes import default_pool_size
    from local.template import Template

    size = sandboxes or default_pool_size(Template.load().function("RouterFunction"))
    body = json.dumps(schema.EXAMPLE_HOUSE)
    samples: dict[str, list[dict[str, Any]]] = {"ceiling": [], "bridge": [], "endpoint": [], "api": []}
    with tempfile.TemporaryDirectory(prefix="bench-http-api-") as tmp, contextlib.ExitStack() as servers:
        work = Path(tmp)
        ceiling = servers.enter_context(server_process("ceiling", work, size))
        bridge = servers.enter_context(server_process("bridge", work, size))
        api, endpoint = servers.enter_context(api_with_a_live_model(work))
        targets = {
            "ceiling": Target(f"{ceiling}/predict", body, JSON_HEADERS),
            "bridge": Target(f"{bridge}/predict", body, JSON_HEADERS),
            "endpoint": endpoint,
            "api": api,
        }
        for target in targets.values():
            warm_up(target)
            # a short burst at full concurrency starts every sandbox before the timed rounds
            wrk(target, 1, connections, threads, work)
        for _ in range(rounds):
            for name, target in targets.items():
                samples[name].append(wrk(target, seconds, connections, threads, work))
    results: dict[str, Any] = {}
    for name, runs in samples.items():
        results[name] = {
            "rps": statistics.median(r["rps"] for r in runs),
            "p50_ms": statistics.median(r["p50_ms"] for r in runs),
            "p99_ms": statistics.median(r["p99_ms"] for r in runs),
            "errors": sum(r["errors"] for r in runs),
            "rounds": [round(r["rps"]) for r in runs],
        }
    ceiling = results["ceiling"]["rps"]
    for name in ("bridge", "endpoint", "api"):
        results[name]["ratio_to_ceiling"] = results[name]["rps"] / ceiling
    results["api"]["ratio_to_endpoint"] = results["api"]["rps"] / results["endpoint"]["rps"]
    return {
        "benchmark": "http_api_throughput",
        "settings": {
            "rounds": rounds,
            "seconds": seconds,
            "connections": connections,
            "wrk_threads": threads,
            "sandboxes": size,
            "cpus": os.cpu_count(),
        },
        "results": results,
        "target": {"api_ratio_to_ceiling": TARGET_RATIO, "met": results["api"]["ratio_to_ceiling"] >= TARGET_RATIO},
    }


def print_table(report: dict[str, Any]) -> None:
    print(f"{'server':<10} {'req/s':>9} {'x ceiling':>10} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}  rounds")
    for name, row in report["results"].items():
        ratio = row.get("ratio_to_ceiling", 1.0)
        print(
            f"{name:<10} {row['rps']:>9.0f} {ratio:>10.3f} {row['p50_ms']:>8.2f} {row['p99_ms']:>8.2f}"
            f" {row['errors']:>7}  {row['rounds']}"
        )
    target = report["target"]
    print(f"target api >= {target['api_ratio_to_ceiling']} x ceiling: {'met' if target['met'] else 'NOT met'}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--sandboxes", type=int, default=None, help="default: the local stack's default pool size")
    parser.add_argument("--json", action="store_true", help="print the results as JSON only")
    parser.add_argument("--serve", choices=["ceiling", "bridge"], help=argparse.SUPPRESS)
    parser.add_argument("--port-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve, args.port_file, args.sandboxes or 1)
        return 0
    report = run(args.rounds, args.seconds, args.connections, args.threads, args.sandboxes)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(report)
    errors = sum(row["errors"] for row in report["results"].values())
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
