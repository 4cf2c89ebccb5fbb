"""Many segments per worker: real processes forked from the zygote; one failing segment never fails its shard."""

from __future__ import annotations

import os
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest

from house_prices import naming
from training import data, local_runs
from training.inputs import Hyperparameters
from training.shards import SegmentInput, synthetic_segment, write_shard
from training.workers import WorkerPool

pytestmark = pytest.mark.slow


def broken_segment(city: str) -> SegmentInput:
    """A segment with no training rows: scikit-learn refuses to fit it."""
    good = data.generate_city(city, 40)
    splits = {**good.splits, "train": np.array([], dtype=np.int64)}
    return SegmentInput(data.CityData(city, good.rows, splits), data_hash="broken")


def test_a_failing_segment_is_reported_and_its_shard_mates_still_train(tmp_path: Path) -> None:
    # Given one worker (so every segment shares one shard and one interpreter) and one broken segment
    segments = [
        synthetic_segment("Austin_TX", 60, 1),
        broken_segment("Boston_MA"),
        synthetic_segment("Miami_FL", 60, 1),
    ]
    # When the shard trains
    report = local_runs.train_segments(
        segments, tmp_path, hyperparameters=Hyperparameters(n_estimators=5), workers=1, progress=False
    )
    # Then the broken segment fails with scikit-learn's reason and the other two are trained and packaged
    assert [result.city for result in report.results] == ["Austin_TX", "Miami_FL"]
    [failure] = report.failures
    assert failure.city == "Boston_MA"
    assert "ValueError" in failure.stderr
    assert len({result.job_name for result in report.results} | {failure.job_name}) == 1
    for result in report.results:
        with tarfile.open(result.artifact, "r:gz") as archive:
            assert sorted(archive.getnames()) == sorted(naming.REQUIRED_ARTIFACT_FILES)
        # And the data's identity travels in the artifact's metrics
        assert result.metrics["data"]["hash"] == next(s.data_hash for s in segments if s.city == result.city)
        assert result.metrics["rows"]["train"] == result.metrics["data"]["split_rows"]["train"]


def test_a_rerun_never_leaves_a_previous_runs_artifact_for_a_segment_that_now_fails(tmp_path: Path) -> None:
    # Given a segment trained once
    first = local_runs.train_segments([synthetic_segment("Austin_TX", 60, 1)], tmp_path, workers=1, progress=False)
    artifact = first.results[0].artifact
    assert artifact.is_file()
    # When the same segment fails on the next run
    second = local_runs.train_segments([broken_segment("Austin_TX")], tmp_path, workers=1, progress=False)
    # Then it is a failure and its old artifact is gone (nothing stale can be published)
    assert [failure.city for failure in second.failures] == ["Austin_TX"]
    assert not artifact.exists()


def _until_exit(pool: WorkerPool, job: str, timeout: float = 120.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for event in pool.events(timeout=1.0):
            if event.get("id") == job and "returncode" in event:
                return int(event["returncode"])
    raise AssertionError(f"{job} never ended")


def test_a_worker_killed_mid_shard_ends_alone_and_the_zygote_forks_the_next(tmp_path: Path) -> None:
    # Given a zygote and a shard heavy enough to be still training when it is killed
    heavy = tmp_path / "heavy"
    write_shard([synthetic_segment("Austin_TX", 4_000, 1)], heavy / "input/data/train")
    light = tmp_path / "light"
    write_shard([synthetic_segment("Miami_FL", 60, 1)], light / "input/data/train")

    def argv(job_dir: Path, trees: int) -> list[str]:
        hps = {**Hyperparameters(n_estimators=trees).for_shard("segments-1-00000"), "artifacts-dir": str(tmp_path)}
        channels = ["--train", str(job_dir / "input/data/train"), "--model-dir", str(job_dir / "model")]
        return [*local_runs.train_command(hps)[2:], *channels]

    with WorkerPool() as pool:
        pool.submit("heavy", argv(heavy, 500), {}, heavy, heavy / "out.log", heavy / "err.log")
        while "heavy" not in pool.pids:
            pool.events(timeout=1.0)
        # When that worker is killed (as an OOM kill would), then a shard with a bad argument and a good one start
        pool.kill("heavy")
        heavy_code = _until_exit(pool, "heavy")
        pool.submit("bad", ["--n-estimators", "many"], {}, light, light / "bad.log", light / "bad-err.log")
        bad_code = _until_exit(pool, "bad")
        pool.submit("light", argv(light, 5), {}, light, light / "out.log", light / "err.log")
        light_code = _until_exit(pool, "light")
    # Then the killed worker ends by its signal, the bad one with argparse's message, and the next shard trains
    assert heavy_code == -9
    assert not (tmp_path / "Austin_TX" / "output" / naming.ARTIFACT_FILENAME).exists()
    assert bad_code == 2
    assert "--n-estimators" in (light / "bad-err.log").read_text()
    assert light_code == 0, (light / "err.log").read_text()
    assert (tmp_path / "Miami_FL" / "output" / naming.ARTIFACT_FILENAME).is_file()
    assert '"status": "trained"' in (light / "out.log").read_text()


def test_a_shard_past_its_timeout_is_killed_and_its_segments_fail_with_the_reason(tmp_path: Path) -> None:
    # Given a segment that takes seconds to train and a timeout of a fraction of that
    segments = [synthetic_segment("Austin_TX", 4_000, 1)]
    # When it trains
    report = local_runs.train_segments(
        segments, tmp_path, hyperparameters=Hyperparameters(n_estimators=500), workers=1, progress=False,
        timeout_seconds=0.5,
    )  # fmt: skip
    # Then the segment fails, killed, with the timeout named, and no artifact is left
    [failure] = report.failures
    assert failure.returncode == -9
    assert "timed out after 0.5 s" in failure.stderr
    assert not report.results


def test_workers_that_cannot_start_fail_every_segment_with_the_reason(tmp_path: Path) -> None:
    # Given a zygote whose scikit-learn import breaks (a package earlier on its path shadows the real one)
    shadow = tmp_path / "shadow" / "sklearn"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('scikit-learn is broken here')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(shadow.parent), local_runs.python_path()])}
    segments = [synthetic_segment("Austin_TX", 60, 1), synthetic_segment("Miami_FL", 60, 1)]
    # When a run trains on it
    with WorkerPool(env) as pool:
        report = local_runs.train_segments(segments, tmp_path / "work", workers=2, progress=False, pool=pool)
    # Then nothing trains, and every segment fails naming the zygote's error (no hang, no traceback out)
    assert not report.results
    assert sorted(failure.city for failure in report.failures) == ["Austin_TX", "Miami_FL"]
    assert all("scikit-learn is broken here" in failure.stderr for failure in report.failures)


def test_a_shard_trains_from_the_unpacked_sourcedir_on_the_images_python_and_scikit_learn(tmp_path: Path) -> None:
    """As SageMaker runs it: only sourcedir.tar.gz on the path, the image's Python 3.10 + scikit-learn 1.4.2."""
    import json
    import subprocess

    from tests.sagemaker_image import image_python
    from training import packaging
    from training.local_runs import training_environment

    python = image_python()
    if python is None:
        pytest.skip("python3.10 is not installed")
    # Given the sourcedir unpacked as the training toolkit does, and a shard of two segments
    code = tmp_path / "code"
    with tarfile.open(packaging.build_sourcedir(tmp_path / "sourcedir.tar.gz"), "r:gz") as archive:
        archive.extractall(code, filter="data")
    job_dir = tmp_path / "job"
    write_shard(
        [synthetic_segment("Austin_TX", 60, 1), synthetic_segment("Miami_FL", 60, 1)], job_dir / "input/data/train"
    )
    hps = {**Hyperparameters(n_estimators=5).for_shard("segments-1-00000"), "artifacts-dir": str(tmp_path / "out")}
    env = training_environment(job_dir, hps, base={"PATH": "/usr/bin:/bin"}, channels=("train",))
    env["PYTHONPATH"] = str(code)
    # When the image's interpreter runs train.py from there
    command = [str(python), "train.py", *[item for name, value in hps.items() for item in (f"--{name}", str(value))]]
    completed = subprocess.run(command, cwd=code, env=env, capture_output=True, text=True, timeout=120, check=False)
    # Then both segments train, each packed where the runner expects it, with the image's versions recorded
    assert completed.returncode == 0, completed.stderr
    report = json.loads((job_dir / "model" / "report.json").read_text())
    assert [entry["status"] for entry in report["segments"]] == ["trained", "trained"]
    assert report["segments"][0]["metrics"]["versions"]["sklearn"] == "1.4.2"
    for city in ("Austin_TX", "Miami_FL"):
        assert (tmp_path / "out" / city / "output" / naming.ARTIFACT_FILENAME).is_file()
    assert "Segments-trained: 2" in completed.stdout
