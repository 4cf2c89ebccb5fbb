"""``make bench``: the endpoint against its ceiling and its peers in one run, plus cold loads and scale.

One local stack (``python -m local.stack``) provides moto S3, the model-sync path and the HTTP API;
the 10 seed cities are trained and published through ``training.jobs`` and promoted by model-sync,
whatever model format that produces. Then, every server running at once and measured interleaved
(round-robin rounds, median of ``--rounds``) with ``wrk -t1 -c50``, one CSV row per request over the
10 warm city models:

* the ceiling: bare Starlette on uvicorn + httptools + uvloop, and on uvicorn + h11 + asyncio;
* this project's endpoint (``python -m endpoint``; also 10- and 100-row requests, for rows/s);
* a Starlette + scikit-learn ``predict`` server; Seldon MLServer (own venv) inline + adaptive
  batching and with 2 parallel workers (joblib models trained here from ``training.data``);
* the HTTP API path: local HTTP API → router → endpoint, one house per request.

Every server's answers are checked against the expected prices before and after its load. Then cold
loads over ``--cold-models`` models and the scale run (``--scale-models`` models, Zipf(1.1) traffic,
a memory budget, RSS sampled). The existing bench scripts run last. Writes docs/benchmarks.md with
charts under docs/benchmarks/, and build/bench/results.json. Exit status: 0 when the run completed
(targets met or not: misses are reported), 1 when the run itself broke.

    .venv/bin/python bench/suite.py --mlserver build/bench/mlserver-venv/bin/mlserver
    .venv/bin/python bench/suite.py --quick      # a smoke run: short rounds, fewer models
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (
    REPO_ROOT,
    BenchBroken,
    HttpRequest,
    MemorySampler,
    Server,
    cpu_seconds,
    free_port,
    histogram_quantile,
    load_phases,
    memory_bytes,
    percentiles,
    prometheus_histograms,
    run_wrk,
    subtract_histograms,
    write_lua_requests,
    zipf_sequence,
)
from peers import CEILING_BODY, TARGET_MODEL_HEADER, mlserver_infer_body, write_mlserver_repository

from house_prices import schema

ENDPOINT_NAME = "bench"
HOUSE_SEED = 2024  # disjoint from the training seed: houses the models never saw
ROWS_PER_CITY = 10
BASE_ENV = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "PYTHONUNBUFFERED": "1",
}
MiB = 1024 * 1024
# Per request, the prices a correct server answers (None: the ceiling's constant body).
Expected = list[float] | None
Requests = tuple[list[HttpRequest], list[Expected]]


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class Options:
    rounds: int = 3
    seconds: float = 5.0
    warmup_seconds: float = 1.0
    connections: int = 50
    cold_models: int = 100
    scale_models: int = 10_000
    scale_seconds: float = 60.0
    scale_connections: int = 8
    scale_budget_bytes: int = 256 * MiB
    zipf_exponent: float = 1.1
    mlserver: Path | None = None
    legacy: bool = True
    work_dir: Path = REPO_ROOT / "build" / "bench"
    docs: Path = REPO_ROOT / "docs" / "benchmarks.md"
    endpoint_args: tuple[str, ...] = ()


# --------------------------------------------------------------------------- the local stack and models


@dataclass
class Stack:
    """``python -m local.stack`` as a child: its stack.json says where everything is."""

    state_dir: Path
    server: Server | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __enter__(self) -> Stack:
        shutil.rmtree(self.state_dir, ignore_errors=True)
        self.state_dir.mkdir(parents=True)
        self.server = Server(
            "local stack",
            [sys.executable, "-m", "local.stack", "--state-dir", str(self.state_dir), "--quiet"],
            env=BASE_ENV,
            cwd=REPO_ROOT,
            log_path=self.state_dir / "stack-stdout.log",
        ).start()
        stack_file = self.state_dir / "stack.json"
        deadline = time.monotonic() + 120
        while not stack_file.exists():
            if self.server.process is not None and self.server.process.poll() is not None:
                raise BenchBroken(f"local stack exited: see {self.server.log_path}")
            if time.monotonic() > deadline:
                raise BenchBroken("local stack not up within 120 s")
            time.sleep(0.2)
        self.info = json.loads(stack_file.read_text())
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.server is not None:
            self.server.stop()

    def client(self, service: str) -> Any:
        import boto3
        from botocore.config import Config

        url = {"s3": self.info["s3_endpoint_url"], "dynamodb": self.info["dynamodb_endpoint_url"]}[service]
        return boto3.client(  # type: ignore[call-overload]
            service,
            endpoint_url=url,
            region_name=self.info["region"],
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
            config=Config(max_pool_connections=16),
        )

    @property
    def pids(self) -> list[int]:
        return self.server.pids if self.server else []


@dataclass(frozen=True)
class CityModel:
    city: str
    target_model: str  # live TargetModel under the stack's ModelDataUrl
    artifact_key: str
    artifact: Path  # the local model.tar.gz training produced
    peer_joblib: Path  # the same data and hyperparameters, fitted here for the pickle-loading peers


@dataclass(frozen=True)
class Sample:
    """One house of one city: its CSV body and the price each family of server must answer."""

    city: str
    house: dict[str, Any]
    csv: str
    features: list[float]
    project_price: float  # training/inference.py hooks on the published artifact
    peer_price: float  # the peers' joblib model


def train_and_publish(stack: Stack, work_dir: Path) -> dict[str, CityModel]:
    """The 10 seed cities through training.jobs → S3 → model-sync → registry, like `make demo`."""
    from rich.console import Console

    from house_prices.naming import KeyLayout
    from house_prices.registry import ModelRegistry
    from local.demo import wait_for_live
    from training.local_runs import train_locally
    from training.publishing import S3Publisher, publish_local_run

    cities = list(schema.SEED_CITIES)
    report = train_locally(cities, work_dir / "training", progress=False)
    report.raise_for_failures()
    publisher = S3Publisher(stack.client("s3"), stack.info["bucket"], KeyLayout(stack.info["prefix"]))
    publish_local_run(publisher, report)
    registry = ModelRegistry(stack.client("dynamodb"), stack.info["registry_table"])
    live = wait_for_live(registry, cities, Console(quiet=True), timeout=120)
    prefix = KeyLayout(stack.info["prefix"]).mme_prefix
    peers_dir = work_dir / "peer-models"
    peer_models = fit_peer_models(cities, peers_dir)
    return {
        result.city: CityModel(
            city=result.city,
            target_model=live[result.city].target_model,
            artifact_key=prefix + live[result.city].target_model,
            artifact=result.artifact,
            peer_joblib=peer_models[result.city],
        )
        for result in report.results
    }


def fit_peer_models(cities: Sequence[str], out_dir: Path) -> dict[str, Path]:
    """RandomForestRegressor with training's hyperparameters on training's train split, as joblib."""
    import joblib
    from sklearn.ensemble import RandomForestRegressor

    from training.data import generate_city
    from training.inputs import Hyperparameters

    out_dir.mkdir(parents=True, exist_ok=True)
    params = Hyperparameters()
    paths = {}
    for city in cities:
        rows = generate_city(city).split_rows("train")
        model = RandomForestRegressor(
            n_estimators=params.n_estimators,
            min_samples_leaf=params.min_samples_leaf,
            random_state=params.random_state,
            n_jobs=1,
        ).fit(rows[:, 1:], rows[:, 0])
        paths[city] = out_dir / f"{city}.joblib"
        joblib.dump(model, paths[city])
    return paths


def project_predictor(artifact: Path, scratch: Path) -> Any:
    """The artifact's model through the project's own serving hooks (any format they support)."""
    from training import inference

    model_dir = scratch / artifact.parent.parent.name
    model_dir.mkdir(parents=True, exist_ok=True)
    with tarfile.open(artifact) as archive:
        archive.extractall(model_dir, filter="data")
    model = inference.model_fn(str(model_dir))
    return lambda csv: [float(p) for p in inference.predict_fn(inference.input_fn(csv, "text/csv"), model)]


def build_samples(models: Mapping[str, CityModel], work_dir: Path) -> dict[str, list[Sample]]:
    import joblib

    from training.data import generate_houses

    samples: dict[str, list[Sample]] = {}
    with tempfile.TemporaryDirectory(dir=work_dir) as scratch:
        for city, model in models.items():
            predict = project_predictor(model.artifact, Path(scratch))
            peer = joblib.load(model.peer_joblib)
            samples[city] = []
            for row in generate_houses(city, ROWS_PER_CITY, HOUSE_SEED)[:, 1:]:
                house = schema.house_from_row(row)
                features = [house[name] for name in schema.FEATURE_NAMES]
                csv = schema.rows_to_csv([features])
                samples[city].append(
                    Sample(
                        city=city,
                        house=house,
                        csv=csv,
                        features=[float(v) for v in features],
                        project_price=predict(csv)[0],
                        peer_price=float(peer.predict(np.asarray([features], dtype=np.float64))[0]),
                    )
                )
    return samples


# --------------------------------------------------------------------------- the servers under test


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


# --------------------------------------------------------------------------- cold loads and scale


def copy_artifacts(stack: Stack, models: Mapping[str, CityModel], prefix: str, count: int, name: str) -> list[str]:
    """``count`` copies of the live artifacts under distinct keys (server-side copies: cheap in moto)."""
    s3, bucket = stack.client("s3"), stack.info["bucket"]
    sources = [model.artifact_key for model in models.values()]
    targets = [f"{name}{index:05d}.tar.gz" for index in range(count)]

    def copy(index: int) -> None:
        s3.copy_object(
            Bucket=bucket,
            Key=prefix + targets[index],
            CopySource={"Bucket": bucket, "Key": sources[index % len(sources)]},
        )

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(copy, range(count)))
    return targets


def metrics_text(url: str) -> str:
    try:
        return httpx.get(f"{url}/metrics", timeout=10).text
    except httpx.HTTPError:
        return ""


def cold_loads(
    stack: Stack, models: Mapping[str, CityModel], samples: Mapping[str, list[Sample]], options: Options
) -> dict[str, Any]:
    prefix = "bench-cold/"
    targets = copy_artifacts(stack, models, prefix, options.cold_models, "Cold")
    cities = list(models)
    url = f"s3://{stack.info['bucket']}/{prefix}"
    server = endpoint_server(
        "endpoint-cold", url, stack.info["s3_endpoint_url"], options.work_dir / "logs", *options.endpoint_args
    )
    server.start().wait_ready()
    try:
        before = prometheus_histograms(metrics_text(server.url))
        latencies = []
        with httpx.Client(base_url=server.url, timeout=60) as client:
            for index, target in enumerate(targets):
                sample = samples[cities[index % len(cities)]][0]
                started = time.perf_counter()
                response = client.post(
                    f"/endpoints/{ENDPOINT_NAME}/invocations",
                    content=sample.csv,
                    headers={"Content-Type": "text/csv", TARGET_MODEL_HEADER: target},
                )
                latencies.append((time.perf_counter() - started) * 1000)
                if response.status_code != 200 or not math.isclose(
                    response.json()[0], sample.project_price, rel_tol=1e-9
                ):
                    raise BenchBroken(f"cold load of {target}: HTTP {response.status_code} {response.text[:200]}")
        after = prometheus_histograms(metrics_text(server.url))
    finally:
        server.stop()
    return {
        "models": len(targets),
        "client_ms": {
            **percentiles(latencies, (50, 90, 99)),
            "mean": statistics.fmean(latencies),
            "max": max(latencies),
        },
        "phases": load_phases(subtract_histograms(after, before)),
        "latencies_ms": latencies,
    }


@dataclass
class ScaleRecord:
    started: float
    latency_ms: float
    status: int
    first_touch: bool
    correct: bool


async def _drive(
    port: int,
    requests: Sequence[bytes],
    expected: Sequence[float],
    order: np.ndarray,
    connections: int,
    seconds: float,
) -> list[ScaleRecord]:
    """A minimal keep-alive HTTP/1.1 client: ``connections`` workers share one Zipf schedule."""
    records: list[ScaleRecord] = []
    seen: set[int] = set()
    position = 0
    origin = time.perf_counter()
    deadline = origin + seconds

    async def worker() -> None:
        nonlocal position
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.perf_counter() < deadline and position < len(order):
                model = int(order[position])
                position += 1
                first = model not in seen
                seen.add(model)
                started = time.perf_counter()
                status, body = 0, b""
                try:
                    writer.write(requests[model])
                    status_line = await asyncio.wait_for(reader.readline(), 30)
                    status = int(status_line.split()[1])
                    length, close = 0, False
                    while (line := await reader.readline()) not in (b"\r\n", b""):
                        name, _, value = line.decode("latin-1").partition(":")
                        if name.lower() == "content-length":
                            length = int(value)
                        elif name.lower() == "connection" and "close" in value.lower():
                            close = True
                    body = await reader.readexactly(length)
                except (TimeoutError, OSError, ValueError, IndexError, asyncio.IncompleteReadError):
                    close = True
                elapsed = (time.perf_counter() - started) * 1000
                correct = False
                if status == 200:
                    try:
                        correct = math.isclose(json.loads(body)[0], expected[model], rel_tol=1e-9)
                    except (ValueError, IndexError, TypeError):
                        correct = False
                records.append(ScaleRecord(started - origin, elapsed, status, first, correct))
                if close:
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(connections)))
    return records


def scale_run(
    stack: Stack, models: Mapping[str, CityModel], samples: Mapping[str, list[Sample]], options: Options
) -> dict[str, Any]:
    prefix = "bench-scale/"
    started = time.perf_counter()
    targets = copy_artifacts(stack, models, prefix, options.scale_models, "Scale")
    log(f"scale: {len(targets):,} models copied in {time.perf_counter() - started:.1f} s")
    cities = list(models)
    cache_dir = options.work_dir / "scale-cache"
    shutil.rmtree(cache_dir, ignore_errors=True)
    server = endpoint_server(
        "endpoint-scale",
        f"s3://{stack.info['bucket']}/{prefix}",
        stack.info["s3_endpoint_url"],
        options.work_dir / "logs",
        "--max-memory-bytes",
        str(options.scale_budget_bytes),
        "--cache-dir",
        str(cache_dir),
        *options.endpoint_args,
    )
    server.start().wait_ready()
    assert server.process is not None
    port = int(server.url.rsplit(":", 1)[1])
    requests, expected = [], []
    for index, target in enumerate(targets):
        sample = samples[cities[index % len(cities)]][0]
        body = sample.csv.encode()
        requests.append(
            (
                f"POST /endpoints/{ENDPOINT_NAME}/invocations HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                f"Content-Type: text/csv\r\nAccept: application/json\r\n{TARGET_MODEL_HEADER}: {target}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode()
            + body
        )
        expected.append(sample.project_price)
    order = zipf_sequence(len(targets), options.zipf_exponent, length=5_000_000)
    try:
        time.sleep(1.0)
        boot_rss, boot_pss = memory_bytes(server.pids)
        before_metrics = metrics_text(server.url)
        client_cpu = time.process_time()
        cpu_before = cpu_seconds(server.pids)
        with MemorySampler(server.process.pid, interval=0.5) as sampler:
            records = asyncio.run(
                _drive(port, requests, expected, order, options.scale_connections, options.scale_seconds)
            )
            time.sleep(1.0)  # a couple of samples after the load stops
        server_cpu = cpu_seconds(server.pids) - cpu_before
        client_cpu = time.process_time() - client_cpu
        after_metrics = metrics_text(server.url)
        disk_bytes = sum(p.stat().st_size for p in cache_dir.rglob("*") if p.is_file())
    finally:
        server.stop()
    duration = max(r.started + r.latency_ms / 1000 for r in records) if records else options.scale_seconds
    ok = [r for r in records if r.status == 200 and r.correct]
    errors = len(records) - len(ok)
    first = [r.latency_ms for r in records if r.first_touch]
    histograms = subtract_histograms(prometheus_histograms(after_metrics), prometheus_histograms(before_metrics))
    wait = next((entry for name, entry in histograms.items() if "wait" in name.lower()), None)
    hits = _summary_ratio(after_metrics, before_metrics, "ModelCacheHit")
    budget_line = boot_rss + options.scale_budget_bytes + 64 * MiB
    peak_rss = max((s[1] for s in sampler.samples), default=0)
    per_second = np.bincount(np.asarray([int(r.started) for r in records], dtype=np.int64)) if records else np.zeros(1)
    return {
        "models": len(targets),
        "connections": options.scale_connections,
        "seconds": duration,
        "requests": len(records),
        "errors": errors,
        "error_statuses": sorted({r.status for r in records if r.status != 200}),
        "rps": len(records) / duration if duration else 0.0,
        "rps_min_per_second": float(per_second[1:-1].min()) if len(per_second) > 2 else float(per_second.min()),
        "latency_ms": percentiles([r.latency_ms for r in records], (50, 90, 99)),
        "first_touch_ms": {**percentiles(first, (50, 90, 99)), "count": len(first)},
        "server_miss_wait_ms": (
            {
                "count": wait["count"],
                "p50": histogram_quantile(wait["buckets"], 0.5) * 1000,
                "p99": histogram_quantile(wait["buckets"], 0.99) * 1000,
            }
            if wait and wait["count"]
            else None
        ),
        "load_phases": load_phases(histograms),
        "hit_ratio": hits,
        "boot_rss": boot_rss,
        "boot_pss": boot_pss,
        "peak_rss": peak_rss,
        "rss_limit": budget_line,
        "budget_bytes": options.scale_budget_bytes,
        "samples": sampler.samples,
        "disk_cache_bytes": disk_bytes,
        "client_cpu": client_cpu / duration if duration else 0.0,
        "server_cpu": server_cpu / duration if duration else 0.0,
    }


def _summary_ratio(after: str, before: str, name: str) -> float | None:
    def totals(text: str) -> tuple[float, float]:
        from prometheus_client.parser import text_string_to_metric_families

        total = count = 0.0
        for family in text_string_to_metric_families(text):
            if family.name != name:
                continue
            for sample in family.samples:
                if sample.name.endswith("_sum"):
                    total += sample.value
                elif sample.name.endswith("_count"):
                    count += sample.value
        return total, count

    s1, c1 = totals(after)
    s0, c0 = totals(before)
    return (s1 - s0) / (c1 - c0) if c1 > c0 else None


# --------------------------------------------------------------------------- the existing scripts


def legacy_scripts(work_dir: Path) -> list[dict[str, Any]]:
    bench = Path(__file__).resolve().parent
    commands = [
        (
            "router cold import (built package, through the Lambda runtime's bootstrap)",
            [
                sys.executable,
                str(bench / "router_import_time.py"),
                "--built",
                "--lambda-runtime",
                str(bench.parent / "build" / "bench" / "lambda-runtime"),
            ],
        ),
        (
            "packed-forest predict and model_fn vs scikit-learn (issue 7 targets)",
            [sys.executable, str(bench / "forest_predict.py"), "--rounds", "7"],
        ),
        (
            "endpoint single-client latency",
            [sys.executable, str(bench / "endpoint_latency.py"), "--requests", "500", "--cold-models", "5"],
        ),
        (
            "router handler CPU per warm invocation (in process, against the local stack)",
            [sys.executable, str(bench / "router_invocation.py"), "--invocations", "500"],
        ),
        (
            "stack single-client latency",
            [sys.executable, str(bench / "stack_latency.py"), "--cities", "3", "--requests", "200", "--batch", "100"],
        ),
    ]
    api_bench = bench / "http_api_throughput.py"
    if api_bench.exists():  # the HTTP API's own throughput bench, when it has landed: its defaults
        commands.append(("HTTP API throughput (its own bench)", [sys.executable, str(api_bench)]))
    results = []
    for title, argv in commands:
        started = time.perf_counter()
        completed = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, check=False, timeout=600)
        broken = completed.returncode != 0 and "Traceback" in completed.stderr
        results.append(
            {
                "title": title,
                "command": " ".join(
                    Path(a).name if a == sys.executable else os.path.relpath(a, REPO_ROOT) if a.startswith("/") else a
                    for a in argv
                ),
                "exit": completed.returncode,
                "broken": broken,
                "seconds": time.perf_counter() - started,
                "output": (completed.stdout + (completed.stderr[-2000:] if broken else "")).strip(),
            }
        )
        log(f"{title}: exit {completed.returncode} in {time.perf_counter() - started:.0f} s")
    return results


# --------------------------------------------------------------------------- main


def run(options: Options) -> dict[str, Any]:
    results: dict[str, Any] = {
        "options": {k: str(v) for k, v in asdict(options).items()},
        "skipped": [],
        "load_average_start": os.getloadavg(),
    }
    started = time.perf_counter()
    options.work_dir.mkdir(parents=True, exist_ok=True)
    with Stack(options.work_dir / "stack") as stack:
        log(f"local stack up: API {stack.info['api_url']}")
        models = train_and_publish(stack, options.work_dir)
        log(f"{len(models)} cities trained, published and promoted")
        samples = build_samples(models, options.work_dir)
        results["format"] = model_format(next(iter(models.values())).artifact)
        servers, skipped = start_servers(stack, models, options)
        results["skipped"] += skipped
        try:
            targets = build_targets(stack, servers, models, samples)
            log(f"servers up: {', '.join(servers)}; {options.rounds} rounds of {len(targets)} configurations")
            results["throughput"] = measure_throughput(targets, options)
        finally:
            for server in servers.values():
                server.stop()
        log("cold loads")
        results["cold"] = cold_loads(stack, models, samples, options)
        log(f"scale run: {options.scale_models:,} models, {options.scale_seconds:.0f} s")
        results["scale"] = scale_run(stack, models, samples, options)
    if options.legacy:
        results["legacy"] = legacy_scripts(options.work_dir)
    results["wall_seconds"] = time.perf_counter() - started
    results["load_average_end"] = os.getloadavg()
    return results


def model_format(artifact: Path) -> str:
    with tarfile.open(artifact) as archive:
        return ", ".join(sorted(archive.getnames()))


def parse_args(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0, help="wrk duration per configuration and round")
    parser.add_argument("--cold-models", type=int, default=100)
    parser.add_argument("--scale-models", type=int, default=10_000)
    parser.add_argument("--scale-seconds", type=float, default=60.0)
    parser.add_argument("--mlserver", type=Path, help="the mlserver executable of its own venv")
    parser.add_argument("--no-legacy", action="store_true", help="skip the older single-client scripts")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 round of 2 s, 20 cold, 500 scale models")
    parser.add_argument("--docs", type=Path, default=Options.docs, help="report path (charts go beside it)")
    parser.add_argument(
        "--endpoint-arg", action="append", default=[], help="extra option for every `python -m endpoint` (repeatable)"
    )
    args = parser.parse_args(argv)
    options = Options(
        rounds=args.rounds,
        seconds=args.seconds,
        cold_models=args.cold_models,
        scale_models=args.scale_models,
        scale_seconds=args.scale_seconds,
        mlserver=args.mlserver.resolve() if args.mlserver else None,
        legacy=not args.no_legacy,
        docs=args.docs,
        endpoint_args=tuple(args.endpoint_arg),
    )
    if args.quick:
        options = Options(
            **{
                **asdict(options),
                "rounds": 1,
                "seconds": 2.0,
                "warmup_seconds": 1.0,
                "cold_models": 20,
                "scale_models": 500,
                "scale_seconds": 10.0,
            }
        )
    return options


def main(argv: Sequence[str] | None = None) -> int:
    from report import evaluate_targets, write_report

    options = parse_args(argv)
    try:
        results = run(options)
    except BenchBroken as error:
        print(f"bench broken: {error}", file=sys.stderr)
        return 1
    except Exception:
        traceback.print_exc()
        return 1
    results["targets"] = evaluate_targets(results)
    (options.work_dir / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    write_report(results, options.docs)
    for target in results["targets"]:
        verdict = "MET    " if target["met"] else "NOT MET" if target["met"] is False else "N/A    "
        print(f"{verdict} {target['name']}: {target['measured']}")
    print(f"report: {os.path.relpath(options.docs, Path.cwd())} ({results['wall_seconds']:.0f} s)")
    broken = [item["title"] for item in results.get("legacy", []) if item["broken"]]
    if broken:
        print(f"bench broken: {', '.join(broken)} crashed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
