"""``make bench``'s local stack and models: ``python -m local.stack`` as a child, the 10 notebook cities trained,
published and promoted through it, the peers' joblib twins, and the houses every server is asked about.
"""

from __future__ import annotations

import json
import shutil
import sys
import tarfile
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.processes import REPO_ROOT, BenchBroken, Server
from bench.suite_config import BASE_ENV
from house_prices import schema

HOUSE_SEED = 2024  # disjoint from the training seed: houses the models never saw
ROWS_PER_CITY = 10


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
    """The 10 notebook cities through training.jobs → S3 → model-sync → registry, like `make demo`."""
    from rich.console import Console

    from house_prices.naming import KeyLayout
    from house_prices.registry import ModelRegistry
    from local.demo import wait_for_live
    from training.local_runs import train_locally
    from training.publishing import S3Publisher, publish_local_run

    cities = list(schema.NOTEBOOK_CITIES)
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
