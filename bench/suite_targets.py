"""``make bench``'s servers under test: started together, their request lists and expected answers,
measured interleaved with wrk (round-robin rounds), every answer checked before and after the load.
"""

from __future__ import annotations

import json
import math
import shutil
import statistics
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.peers import CEILING_BODY, TARGET_MODEL_HEADER, mlserver_infer_body, write_mlserver_repository
from bench.processes import REPO_ROOT, BenchBroken, Server, memory_bytes
from bench.suite_config import BASE_ENV, ENDPOINT_NAME, Options, log
from bench.suite_stack import CityModel, Sample, Stack
from bench.wrk_runs import HttpRequest, run_wrk, write_lua_requests
from testkit.servers import free_port

# Per request, the prices a correct server answers (None: the ceiling's constant body).
Expected = list[float] | None
Requests = tuple[list[HttpRequest], list[Expected]]


@dataclass
class Target:
    """One configuration measured with wrk: a server, the request list, and how to check answers."""

    name: str
    server: Server | None  # None: the stack's HTTP API (pids from the stack)
    requests: list[HttpRequest]
    expected: list[Expected]
    family: str  # "sagemaker" | "mlserver" | "api"
    rows_per_request: int = 1
    group: str = "single-row"
    url: str = ""
    pids: Any = None  # () -> list[int]
    requests_file: Path | None = None


def sagemaker_requests(samples: Mapping[str, list[Sample]], rows: int, price: str, target_of: Any) -> Requests:
    requests: list[HttpRequest] = []
    expected: list[Expected] = []
    for city, city_samples in samples.items():
        chunks = (
            [city_samples[i : i + rows] for i in range(0, len(city_samples), rows)]
            if rows <= len(city_samples)
            else [[city_samples[i % len(city_samples)] for i in range(rows)]]
        )
        for chunk in chunks:
            body = "".join(s.csv for s in chunk)
            headers = {"Content-Type": "text/csv", "Accept": "application/json", TARGET_MODEL_HEADER: target_of(city)}
            requests.append(HttpRequest("POST", f"/endpoints/{ENDPOINT_NAME}/invocations", headers, body))
            expected.append([getattr(s, price) for s in chunk])
    return requests, expected


def json_requests(
    samples: Mapping[str, list[Sample]],
    path: Callable[[str], str],
    body: Callable[[Sample], str],
    price: Callable[[Sample], float],
) -> Requests:
    """One JSON POST per sample to ``path(city)``, expecting ``price(sample)`` back (the single-row families)."""
    requests: list[HttpRequest] = []
    expected: list[Expected] = []
    for city, city_samples in samples.items():
        for sample in city_samples:
            requests.append(HttpRequest("POST", path(city), {"Content-Type": "application/json"}, body(sample)))
            expected.append([price(sample)])
    return requests, expected


def mlserver_requests(samples: Mapping[str, list[Sample]]) -> Requests:
    return json_requests(
        samples,
        lambda city: f"/v2/models/{city}/infer",
        lambda sample: mlserver_infer_body([sample.features]),
        lambda sample: sample.peer_price,
    )


def api_requests(samples: Mapping[str, list[Sample]]) -> Requests:
    return json_requests(
        samples,
        lambda city: f"/locations/{city}/predictions",
        lambda sample: json.dumps(sample.house),
        lambda sample: sample.project_price,
    )


def prices_in(family: str, payload: Any) -> list[float]:
    if family == "mlserver":
        return [float(v) for v in payload["outputs"][0]["data"]]
    if family == "api":
        return [float(p["price"]) for p in payload["predictions"]]
    return [float(v) for v in payload]


def check_answers(target: Target) -> dict[str, int]:
    """Send every distinct request once; compare each answer with its expected prices."""
    wrong: list[str] = []
    with httpx.Client(base_url=target.url, timeout=30) as client:
        for request, expected in zip(target.requests, target.expected, strict=True):
            response = client.request(request.method, request.path, headers=dict(request.headers), content=request.body)
            if response.status_code != 200:
                wrong.append(f"{request.path}: HTTP {response.status_code} {response.text[:200]}")
                continue
            if expected is None:
                if response.content != CEILING_BODY:
                    wrong.append(f"{request.path}: body {response.content[:100]!r}")
                continue
            got = prices_in(target.family, response.json())
            if len(got) != len(expected) or not all(
                math.isclose(g, e, rel_tol=1e-9, abs_tol=1e-6) for g, e in zip(got, expected, strict=False)
            ):
                wrong.append(f"{request.path} {request.headers}: got {got[:3]}, expected {expected[:3]}")
    if wrong:
        raise BenchBroken(
            f"{target.name}: {len(wrong)} of {len(target.requests)} answers wrong:\n  " + "\n  ".join(wrong[:5])
        )
    return {"checked": len(target.requests), "wrong": 0}


def endpoint_server(name: str, model_data_url: str, s3_url: str, log_dir: Path, *extra: str) -> Server:
    return Server(
        name,
        [
            sys.executable,
            "-m",
            "endpoint",
            "--fd",
            "{fd}",
            "--endpoint-name",
            ENDPOINT_NAME,
            "--model-data-url",
            model_data_url,
            "--log-level",
            "warning",
            "--exit-with-parent",
            *extra,
        ],
        env={**BASE_ENV, "AWS_ENDPOINT_URL_S3": s3_url},
        cwd=REPO_ROOT,
        log_path=log_dir / f"{name.replace(' ', '-')}.log",
    )


def start_servers(
    stack: Stack, models: Mapping[str, CityModel], options: Options
) -> tuple[dict[str, Server], list[str]]:
    logs = options.work_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    peers = str(Path(__file__).resolve().parent / "peers.py")
    servers: dict[str, Server] = {
        "ceiling": Server(
            "ceiling",
            [sys.executable, peers, "ceiling", "--fd", "{fd}", "--http", "httptools", "--loop", "uvloop"],
            log_path=logs / "ceiling.log",
        ),
        "h11": Server("h11", [sys.executable, peers, "ceiling", "--fd", "{fd}"], log_path=logs / "h11.log"),
        "endpoint": endpoint_server(
            "endpoint", stack.info["model_data_url"], stack.info["s3_endpoint_url"], logs, *options.endpoint_args
        ),
        # Two worker processes on one socket, sharing the disk cache and the mmap'd packed forests.
        "endpoint-2w": endpoint_server(
            "endpoint-2w",
            stack.info["model_data_url"],
            stack.info["s3_endpoint_url"],
            logs,
            "--workers",
            "2",
            *options.endpoint_args,
        ),
    }
    joblib_dir = options.work_dir / "peer-models-by-target"
    shutil.rmtree(joblib_dir, ignore_errors=True)
    joblib_dir.mkdir(parents=True)
    for model in models.values():
        (joblib_dir / f"{model.target_model}.joblib").symlink_to(model.peer_joblib.resolve())
    servers["sklearn"] = Server(
        "sklearn",
        [sys.executable, peers, "sklearn", "--fd", "{fd}", "--models-dir", str(joblib_dir)],
        log_path=logs / "sklearn.log",
    )
    skipped: list[str] = []
    if options.mlserver is not None and options.mlserver.exists():
        joblibs = {city: model.peer_joblib for city, model in models.items()}
        for key, workers, batch in (("mlserver-batch", 0, 32), ("mlserver-2w", 2, 0)):
            repo = options.work_dir / key
            shutil.rmtree(repo, ignore_errors=True)
            write_mlserver_repository(
                repo, joblibs, parallel_workers=workers, max_batch_size=batch, max_batch_time=0.002 if batch else 0.0
            )
            port = free_port()
            servers[key] = Server(
                key,
                [str(options.mlserver), "start", str(repo)],
                env={
                    "MLSERVER_HTTP_PORT": str(port),
                    "MLSERVER_GRPC_PORT": str(free_port()),
                    "MLSERVER_METRICS_PORT": str(free_port()),
                    "MLSERVER_HOST": "127.0.0.1",
                },
                cwd=repo,
                ready_path="/v2/health/ready",
                log_path=logs / f"{key}.log",
                port=port,
            )
    else:
        skipped.append(f"MLServer: no executable at {options.mlserver} (make bench builds its venv)")
    for server in servers.values():
        server.start()
    for server in servers.values():
        server.wait_ready(timeout=180)
    return servers, skipped


def build_targets(
    stack: Stack, servers: Mapping[str, Server], models: Mapping[str, CityModel], samples: Mapping[str, list[Sample]]
) -> list[Target]:
    live = {city: model.target_model for city, model in models.items()}
    targets: list[Target] = []

    def add(name: str, key: str | None, reqs: Requests, family: str, **kw: Any) -> None:
        server = servers.get(key) if key else None
        if key and server is None:
            return
        url, pids = (server.url, lambda: server.pids) if server else (stack.info["api_url"], lambda: stack.pids)
        targets.append(Target(name, server, reqs[0], reqs[1], family, url=url, pids=pids, **kw))

    ceiling_reqs = sagemaker_requests(samples, 1, "project_price", live.get)
    no_check: list[Expected] = [None] * len(ceiling_reqs[0])
    add("ceiling: Starlette, uvicorn httptools+uvloop", "ceiling", (ceiling_reqs[0], no_check), "sagemaker")
    add("Starlette, uvicorn h11+asyncio", "h11", (ceiling_reqs[0], no_check), "sagemaker")
    add("this endpoint", "endpoint", ceiling_reqs, "sagemaker")
    add("this endpoint, 2 worker processes", "endpoint-2w", ceiling_reqs, "sagemaker")
    add(
        "Starlette + scikit-learn predict",
        "sklearn",
        sagemaker_requests(samples, 1, "peer_price", live.get),
        "sagemaker",
    )
    add("MLServer 1.7.1, inline + adaptive batching", "mlserver-batch", mlserver_requests(samples), "mlserver")
    add("MLServer 1.7.1, 2 parallel workers", "mlserver-2w", mlserver_requests(samples), "mlserver")
    add("HTTP API → router → endpoint (1 house)", None, api_requests(samples), "api")
    for rows in (10, 100):
        add(
            f"this endpoint, {rows} rows/request",
            "endpoint",
            sagemaker_requests(samples, rows, "project_price", live.get),
            "sagemaker",
            rows_per_request=rows,
            group="rows",
        )
    return targets


def measure_throughput(targets: list[Target], options: Options) -> dict[str, Any]:
    lua_dir = options.work_dir / "wrk"
    lua_dir.mkdir(parents=True, exist_ok=True)
    for index, target in enumerate(targets):
        target.requests_file = write_lua_requests(lua_dir / f"target{index}.lua", target.requests)
    checks = {target.name: {"before": check_answers(target)} for target in targets}
    runs: dict[str, list[dict[str, Any]]] = {target.name: [] for target in targets}
    for round_number in range(1, options.rounds + 1):
        for target in targets:
            assert target.requests_file is not None
            run_wrk(target.url, target.requests_file, seconds=options.warmup_seconds, connections=options.connections)
            result = run_wrk(
                target.url,
                target.requests_file,
                seconds=options.seconds,
                connections=options.connections,
                server_pids=target.pids,
            )
            runs[target.name].append({"round": round_number, **asdict(result), "rps": result.rps})
            log(
                f"round {round_number} {target.name}: {result.rps:,.0f} req/s, p50 {result.latency_ms['p50']:.1f} ms,"
                f" p99 {result.latency_ms['p99']:.1f} ms, errors {result.errors + result.non_2xx},"
                f" CPU wrk {result.wrk_cpu_seconds / result.seconds:.0%}"
                f" server {result.server_cpu_seconds / result.seconds:.0%}"
            )
    for target in targets:
        checks[target.name]["after"] = check_answers(target)
    memory = {}
    for target in targets:
        if target.group == "single-row":
            rss, pss = memory_bytes(target.pids())
            memory[target.name] = {"rss": rss, "pss": pss, "processes": len(target.pids())}
    return summarise_throughput(targets, runs, checks, memory)


def summarise_throughput(
    targets: Sequence[Target], runs: Mapping[str, list[dict[str, Any]]], checks: Any, memory: Any
) -> dict[str, Any]:
    ceiling = targets[0].name
    rows = []
    for target in targets:
        own = runs[target.name]
        ratios = [run["rps"] / ceil["rps"] for run, ceil in zip(own, runs[ceiling], strict=True)]
        rows.append(
            {
                "name": target.name,
                "group": target.group,
                "rows_per_request": target.rows_per_request,
                "rps": statistics.median(run["rps"] for run in own),
                "rows_per_second": statistics.median(run["rps"] for run in own) * target.rows_per_request,
                "p50_ms": statistics.median(run["latency_ms"]["p50"] for run in own),
                "p90_ms": statistics.median(run["latency_ms"]["p90"] for run in own),
                "p99_ms": statistics.median(run["latency_ms"]["p99"] for run in own),
                "ratio_to_ceiling": statistics.median(ratios),
                "errors": sum(run["errors"] + run["non_2xx"] for run in own),
                "wrk_cpu": statistics.median(run["wrk_cpu_seconds"] / run["seconds"] for run in own),
                "server_cpu": statistics.median(run["server_cpu_seconds"] / run["seconds"] for run in own),
                "rounds": [run["rps"] for run in own],
                "memory": memory.get(target.name),
                "checked_answers": checks[target.name],
            }
        )
    return {"ceiling": ceiling, "rows": rows, "runs": runs}
