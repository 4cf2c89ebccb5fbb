"""The endpoint's disk cache against a real S3 (moto server): the budget holds, and lock files go with the
directories they guard, also when two worker processes share the cache directory (two caches over one
root: flock conflicts between open files in one process exactly as between processes)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from endpoint.config import ModelDataUrl
from endpoint.download import ArtifactCache
from testkit.aws import s3_client
from testkit.models import fit_forest, model_tar_gz
from tests.integration.endpoint_harness import artifact_bucket

BUCKET = "disk-cache-models"
PREFIX = "mme/"
MODELS = [f"city-{n}/v1/model.tar.gz" for n in range(5)]


@pytest.fixture(scope="module")
def s3() -> Iterator[object]:
    artifact = model_tar_gz(fit_forest(seed=1, n_estimators=3))
    with artifact_bucket(BUCKET, PREFIX, dict.fromkeys(MODELS, artifact)) as url:
        yield s3_client(url)


def cache(s3: object, root: Path, models_on_disk: int) -> ArtifactCache:
    first = ArtifactCache(s3, ModelDataUrl(BUCKET, PREFIX), root, 1 << 30, 1 << 26, 1 << 28)
    directory = first.fetch(MODELS[0]).model_dir
    first.unpin(directory)
    size = sum(path.stat().st_size for path in directory.rglob("*") if path.is_file())
    return ArtifactCache(s3, ModelDataUrl(BUCKET, PREFIX), root, size * models_on_disk, 1 << 26, 1 << 28)


def names(directory: Path) -> set[str]:
    return {path.name for path in directory.iterdir()}


def test_eviction_removes_each_evicted_models_lock_file(s3: object, tmp_path: Path) -> None:
    # Given a disk budget for two models
    artifacts = cache(s3, tmp_path, models_on_disk=2)
    # When five models are fetched and released in turn
    for target in MODELS:
        artifacts.unpin(artifacts.fetch(target).model_dir)
    # Then two stay on disk, and only they have lock files
    assert len(names(tmp_path / "models")) == 2
    assert names(tmp_path / "locks") == names(tmp_path / "models")


def test_a_model_another_worker_uses_keeps_its_directory_and_lock_until_released(s3: object, tmp_path: Path) -> None:
    # Given two workers sharing one cache directory with room for one model, both having used model 1,
    # and worker A still using it
    worker_a = cache(s3, tmp_path, models_on_disk=1)
    worker_b = cache(s3, tmp_path, models_on_disk=1)
    in_use = worker_a.fetch(MODELS[1]).model_dir
    worker_b.unpin(worker_b.fetch(MODELS[1]).model_dir)
    # When worker B fetches further models and so tries to evict model 1
    for target in MODELS[2:4]:
        worker_b.unpin(worker_b.fetch(target).model_dir)
    # Then the model in use is neither deleted nor unlocked
    assert in_use.is_dir()
    assert in_use.name in names(tmp_path / "locks")
    # and once A releases it, B's next eviction removes it with its lock file
    worker_a.unpin(in_use)
    worker_b.unpin(worker_b.fetch(MODELS[4]).model_dir)
    assert not in_use.is_dir()
    assert in_use.name not in names(tmp_path / "locks")
    assert names(tmp_path / "locks") <= names(tmp_path / "models")


def test_lock_files_without_a_model_are_removed_at_start(s3: object, tmp_path: Path) -> None:
    # Given lock files left without their directories (a crash mid-fetch, or an older version)
    (tmp_path / "locks").mkdir()
    for orphan in ("0" * 32, "f" * 32):
        (tmp_path / "locks" / orphan).touch()
    # When a worker starts on that cache directory
    artifacts = cache(s3, tmp_path, models_on_disk=2)
    # Then only the lock files of models on disk remain
    assert names(tmp_path / "locks") == names(tmp_path / "models")
    assert artifacts.disk_bytes > 0
