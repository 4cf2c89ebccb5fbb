"""The density bench's models and requests: the 10 notebook cities trained once by the project's training code.

``train_cities`` runs ``training.local_runs.train_locally`` (the path ``make demo`` and ``make bench``
train with: packed forests of 100 trees, ``min_samples_leaf=3``). Every served model is a copy of one
city's artifact members in its own directory, ``ROOT/{name}/model/`` as SageMaker extracts it: one file
per model, so no two models (or two servers) share page-cache pages by accident. Expected prices come
from the same artifact through ``training/inference.py``'s hooks in this process.
"""

from __future__ import annotations

import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.wrk_runs import HttpRequest

HOUSE_SEED = 2024  # disjoint from the training seed: houses the models never saw
CSV_HEADERS = {"Content-Type": "text/csv", "Accept": "application/json"}


@dataclass(frozen=True)
class City:
    """One trained city: its artifact's members and some houses with the price its model must answer."""

    name: str
    members: dict[str, bytes]  # artifact member -> bytes (forest.npz, metrics.json)
    houses: tuple[str, ...]  # one CSV row each
    prices: tuple[float, ...]

    @property
    def forest_bytes(self) -> int:
        return sum(len(data) for data in self.members.values())


def train_cities(work: Path, cities: Sequence[str], houses_per_city: int) -> list[City]:
    from house_prices import schema
    from training import inference
    from training.data import generate_houses
    from training.local_runs import train_locally

    report = train_locally(list(cities), work / "training", progress=False)
    report.raise_for_failures()
    trained = []
    for result in report.results:
        with tarfile.open(result.artifact) as archive:
            members = {member.name: _read(archive, member) for member in archive.getmembers() if member.isfile()}
        model_dir = work / "expected" / result.city
        write_members(model_dir, members)
        model = inference.model_fn(str(model_dir))
        houses, prices = [], []
        for row in generate_houses(result.city, houses_per_city, HOUSE_SEED)[:, 1:]:
            house = schema.house_from_row(row)
            csv = schema.rows_to_csv([[house[name] for name in schema.FEATURE_NAMES]])
            houses.append(csv)
            prices.append(float(inference.predict_fn(inference.input_fn(csv, "text/csv"), model)[0]))
        trained.append(City(result.city, members, tuple(houses), tuple(prices)))
    return trained


def _read(archive: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    extracted = archive.extractfile(member)
    if extracted is None:
        raise ValueError(f"{member.name} is not a file")
    with extracted:
        return extracted.read()


def write_members(model_dir: Path, members: dict[str, bytes]) -> Path:
    model_dir.mkdir(parents=True, exist_ok=True)
    for name, data in members.items():
        (model_dir / name).write_bytes(data)
    return model_dir


def model_url(root: Path, name: str) -> str:
    return str(root / name / "model")


def lay_out(root: Path, names: Sequence[str], cities: Sequence[City]) -> dict[str, City]:
    """``root/{name}/model`` for each name, holding city ``i % len(cities)``'s files; name -> city."""
    served = {}
    for index, name in enumerate(names):
        city = cities[index % len(cities)]
        write_members(Path(model_url(root, name)), city.members)
        served[name] = city
    return served


def invoke_requests(served: dict[str, City]) -> tuple[list[HttpRequest], list[tuple[float, ...]]]:
    """One CSV row per request, every house of every model: the container's (and MMS's) invoke route."""
    requests: list[HttpRequest] = []
    expected: list[tuple[float, ...]] = []
    for name, city in served.items():
        for house, price in zip(city.houses, city.prices, strict=True):
            requests.append(HttpRequest("POST", f"/models/{name}/invoke", CSV_HEADERS, house))
            expected.append((price,))
    return requests, expected


def ceiling_requests(served: dict[str, City]) -> list[HttpRequest]:
    """The same bodies to the ceiling's route (it answers a constant)."""
    return [
        HttpRequest("POST", "/endpoints/density/invocations", CSV_HEADERS, house)
        for city in served.values()
        for house in city.houses
    ]
