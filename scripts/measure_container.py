"""Measure the dense container (``python -m container``) as docs/container.md reports it.

* memory: PSS of the whole process tree (supervisor + workers), empty, after loading N notebook-sized
  packed forests (100 trees, 600 rows, ``min_samples_leaf=3``: the notebook cities' size; each a separate
  file, as SageMaker extracts each model to its own directory), and after every worker has mapped
  every model (each model invoked over fresh connections until each worker served it);
* ``POST /models`` latency for a model already on disk (sequential, one keep-alive connection);
* invoke throughput under wrk (one CSV row, cycling over 10 warm models) against a bare Starlette
  app on the same uvicorn + httptools + uvloop stack (the ceiling), interleaved rounds.

    .venv/bin/python scripts/measure_container.py --models 200 --workers 2 --rounds 3 --seconds 5

Needs the dev venv (scikit-learn fits the forest) and wrk (``make wrk``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

from bench.processes import Server, memory_bytes
from bench.wrk_runs import HttpRequest, run_wrk, write_lua_requests
from endpoint.memory import process_tree
from testkit.models import bench_model, packed_bytes

REPO_ROOT = Path(__file__).resolve().parent.parent
HOUSE = "1995,3000,4,2.5,1.0,2"
MIB = 1024**2


def container_server(root: Path, workers: int, log: Path) -> Server:
    return Server(
        name=f"container-{workers}w",
        argv=[
            sys.executable,
            "-m",
            "container",
            "--host",
            "127.0.0.1",
            "--port",
            "{port}",
            "--workers",
            str(workers),
            "--model-root",
            str(root),
            "--log-level",
            "warning",
        ],
        env={"CONTAINER_MEMORY_BUDGET_BYTES": str(8 * 1024 * MIB)},
        cwd=REPO_ROOT,
        log_path=log,
        port=0,
    )


def settled_pss(server: Server) -> int:
    """PSS once it stops moving (the allocator and the page cache settle within a second)."""
    time.sleep(1.0)
    return memory_bytes(process_tree(server.process.pid if server.process else 0))[1]


def measure_memory_and_loads(root: Path, names: list[str], workers: int, work: Path) -> dict[str, float]:
    server = container_server(root, workers, work / f"container-{workers}.log")
    server.start()
    try:
        server.wait_ready()
        empty = settled_pss(server)
        latencies = []
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for name in names:
                started = time.perf_counter()
                response = client.post("/models", json={"model_name": name, "url": str(root / name / "model")})
                latencies.append(time.perf_counter() - started)
                if response.status_code != 200:
                    raise RuntimeError(f"load of {name} failed: {response.status_code} {response.text}")
        loaded = settled_pss(server)
        # New connections land on the workers' SO_REUSEPORT sockets at random: 12 per model leave a
        # worker out with probability 2**-12 each (2 workers).
        for name in names:
            for _ in range(12 if workers > 1 else 1):
                with httpx.Client(base_url=server.url, timeout=30) as client:
                    answer = client.post(f"/models/{name}/invoke", content=HOUSE, headers={"content-type": "text/csv"})
                    if answer.status_code != 200:
                        raise RuntimeError(f"invoke of {name} failed: {answer.status_code} {answer.text}")
        mapped = settled_pss(server)
    finally:
        server.stop()
    latencies.sort()
    count = len(names)
    return {
        "workers": workers,
        "models": count,
        "pss_empty_mib": empty / MIB,
        "pss_per_model_loaded_mib": (loaded - empty) / count / MIB,
        "pss_per_model_mapped_everywhere_mib": (mapped - empty) / count / MIB,
        "load_p50_ms": latencies[count // 2] * 1000,
        "load_p90_ms": latencies[int(count * 0.9)] * 1000,
        "load_max_ms": latencies[-1] * 1000,
    }


def measure_throughput(
    root: Path, names: list[str], workers: int, rounds: int, seconds: float, connections: Sequence[int], work: Path
) -> list[dict[str, object]]:
    container = container_server(root, workers, work / f"throughput-{workers}.log")
    ceiling = Server(
        name="ceiling",
        argv=[sys.executable, "bench/peers.py", "ceiling", "--fd", "{fd}", "--http", "httptools", "--loop", "uvloop"],
        cwd=REPO_ROOT,
        log_path=work / "ceiling.log",
    )
    warm = names[:10]
    invoke_requests = write_lua_requests(
        work / "invoke.lua",
        [HttpRequest("POST", f"/models/{name}/invoke", {"Content-Type": "text/csv"}, HOUSE) for name in warm],
    )
    ceiling_requests = write_lua_requests(
        work / "ceiling.lua",
        [HttpRequest("POST", "/endpoints/x/invocations", {"Content-Type": "text/csv"}, HOUSE)],
    )
    results: dict[tuple[str, int], list[tuple[float, float, float]]] = {}
    for server in (container, ceiling):
        server.start()
    try:
        container.wait_ready()
        ceiling.wait_ready()
        with httpx.Client(base_url=container.url, timeout=30) as client:
            for name in warm:
                client.post("/models", json={"model_name": name, "url": str(root / name / "model")})
        for _ in range(rounds):
            for count in connections:
                for server, requests in ((ceiling, ceiling_requests), (container, invoke_requests)):
                    result = run_wrk(
                        server.url,
                        requests,
                        seconds=seconds,
                        connections=count,
                        server_pids=lambda server=server: server.pids,  # type: ignore[misc]
                    )
                    if result.errors or result.non_2xx:
                        raise RuntimeError(f"{server.name}: {result.errors} errors, {result.non_2xx} non-2xx")
                    cpu_ms = result.server_cpu_seconds / max(result.requests, 1) * 1000
                    results.setdefault((server.name, count), []).append((result.rps, result.latency_ms["p99"], cpu_ms))
    finally:
        for server in (container, ceiling):
            server.stop()
    rows = []
    for count in connections:
        ceiling_rps = statistics.median(rps for rps, _, _ in results[("ceiling", count)])
        for name in ("ceiling", container.name):
            samples = results[(name, count)]
            rps = statistics.median(value for value, _, _ in samples)
            rows.append(
                {
                    "server": name,
                    "connections": count,
                    "rps": rps,
                    "p99_ms": statistics.median(value for _, value, _ in samples),
                    "cpu_ms_per_request": statistics.median(value for _, _, value in samples),
                    "x_ceiling": rps / ceiling_rps,
                }
            )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=int, default=200)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, nargs="+", default=[8, 50])
    parser.add_argument("--no-throughput", action="store_true")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="measure-container-"))
    root = work / "models"
    forest = packed_bytes(bench_model(seed=7)[0])
    names = [f"city-{index:05d}" for index in range(args.models)]
    for name in names:
        directory = root / name / "model"
        directory.mkdir(parents=True)
        (directory / "forest.npz").write_bytes(forest)  # a file per model: nothing shared by accident
    report: dict[str, object] = {"forest_bytes": len(forest), "work": str(work)}
    report["memory"] = [measure_memory_and_loads(root, names, workers, work) for workers in args.workers]
    if not args.no_throughput:
        report["throughput"] = [
            row
            for workers in args.workers
            for row in measure_throughput(root, names, workers, args.rounds, args.seconds, args.connections, work)
        ]
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
