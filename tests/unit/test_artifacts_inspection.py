"""Streaming inspection of model.tar.gz: every hostile or broken archive is rejected with its reason.

The builders at the top are reused by the model-sync and ops tests (``from
tests.unit.test_artifacts_inspection import build_artifact, realistic_metrics``). Their default model is
a real packed forest that predicts ``VALIDATION_PRICE + ae_p50`` for every house, so on the rows of
``validation_csv()`` (every price ``VALIDATION_PRICE``) model-sync measures exactly the AE p50 that the
artifact's metrics report.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from collections.abc import Callable
from typing import Any

import pytest

from house_prices.artifacts import (
    MAX_METRICS_BYTES,
    ArtifactReport,
    HashingReader,
    inspect_artifact,
)
from house_prices.errors import InvalidArtifact
from house_prices.schema import FEATURE_NAMES
from packed_forest import format as packed_format

VALIDATION_PRICE = 300_000.0
_DEFAULT_AE_P50 = 21_000.0


def constant_forest(prediction: float, features: tuple[str, ...] | list[str] = FEATURE_NAMES) -> bytes:
    """forest.npz bytes of a one-leaf forest that predicts ``prediction`` for any house."""
    import numpy as np

    meta = packed_format.make_meta(list(features), 1, 1, {"estimator": "test-constant"})
    arrays = packed_format.validate(
        meta,
        np.array([0, 1], dtype=np.int64),
        feature=np.zeros(1, dtype=np.int32),
        threshold=np.array([packed_format.LEAF_THRESHOLD], dtype=np.float32),
        first_child=np.zeros(1, dtype=np.int32),
        value=np.array([float(prediction)]),
    )
    buffer = io.BytesIO()
    packed_format.write(buffer, arrays)
    return buffer.getvalue()


def validation_csv(rows: int = 20) -> bytes:
    """The notebook's headerless validation CSV (PRICE first); every price is VALIDATION_PRICE."""
    line = f"{int(VALIDATION_PRICE)},2005,3100,4,2.5,1.1,2\n"
    return (line * rows).encode()


def realistic_metrics(
    ae_p50: float = 21_000.0, features: tuple[str, ...] | list[str] = FEATURE_NAMES
) -> dict[str, Any]:
    """metrics.json as the training script writes it (keys fixed by the training contract)."""
    return {
        "validation": {
            "ae_p10": round(ae_p50 * 0.2, 2),
            "ae_p50": ae_p50,
            "ae_p90": round(ae_p50 * 2.9, 2),
            "r2": 0.93,
            "rows": 300,
        },
        "rows": {"train": 600, "validation": 300, "test": 100},
        "features": list(features),
        "versions": {"sklearn": "1.9.1", "numpy": "2.4.6", "python": "3.11.7"},
        "hyperparameters": {"n_estimators": 100, "min_samples_leaf": 3},
    }


def _tar_bytes(add_members: Callable[[tarfile.TarFile], None]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as archive:
        add_members(archive)
    return raw.getvalue()


def add_file(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 1_700_000_000
    archive.addfile(info, io.BytesIO(data))


def build_artifact(
    metrics: dict[str, Any] | bytes | None = None,
    model: bytes | None = None,
    extra: Callable[[tarfile.TarFile], None] | None = None,
    prefix: str = "",
) -> bytes:
    """A gzip tar with forest.npz + metrics.json at its root; the forest agrees with the reported AE p50."""
    metrics = realistic_metrics() if metrics is None else metrics
    model_bytes = model if model is not None else constant_forest(VALIDATION_PRICE + _reported_ae_p50(metrics))
    metrics_bytes = metrics if isinstance(metrics, bytes) else json.dumps(metrics).encode()

    def members(archive: tarfile.TarFile) -> None:
        add_file(archive, f"{prefix}forest.npz", model_bytes)
        add_file(archive, f"{prefix}metrics.json", metrics_bytes)
        if extra:
            extra(archive)

    return gzip.compress(_tar_bytes(members), mtime=0)


def _reported_ae_p50(metrics: dict[str, Any] | bytes) -> float:
    validation = metrics.get("validation") if isinstance(metrics, dict) else None
    value = validation.get("ae_p50") if isinstance(validation, dict) else None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else _DEFAULT_AE_P50


def _special(name: str, kind: bytes, linkname: str = "") -> Callable[[tarfile.TarFile], None]:
    def add(archive: tarfile.TarFile) -> None:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.linkname = linkname
        archive.addfile(info)

    return add


def _reject(data: bytes, **kwargs: Any) -> str:
    with pytest.raises(InvalidArtifact) as caught:
        inspect_artifact(io.BytesIO(data), **kwargs)
    return caught.value.message


def test_valid_artifact_is_described_with_sha256_members_and_metrics() -> None:
    # Given a well-formed artifact written the way the training job packs it
    data = build_artifact(metrics=realistic_metrics(ae_p50=12_345.5))
    # When it is inspected from a stream
    report = inspect_artifact(io.BytesIO(data))
    # Then the report names its content and hashes exactly the compressed bytes
    assert isinstance(report, ArtifactReport)
    assert report.sha256 == hashlib.sha256(data).hexdigest()
    assert report.size_bytes == len(data)
    assert report.members == ("forest.npz", "metrics.json")
    assert report.metrics["validation"]["ae_p50"] == 12_345.5
    # and hands back the packed model's bytes for model-sync to validate and measure
    assert report.packed_model == constant_forest(VALIDATION_PRICE + 12_345.5)
    assert report.unpacked_bytes == len(report.packed_model) + len(json.dumps(report.metrics).encode())


def test_dot_slash_member_names_count_as_the_archive_root() -> None:
    # Given `tar czf model.tar.gz -C model_dir .` style names ("./forest.npz" and a "." directory)
    def dot_dir(archive: tarfile.TarFile) -> None:
        info = tarfile.TarInfo(".")
        info.type = tarfile.DIRTYPE
        archive.addfile(info)

    data = build_artifact(prefix="./", extra=dot_dir)
    # Then the required files are found at the root
    report = inspect_artifact(io.BytesIO(data))
    assert set(report.members) == {"forest.npz", "metrics.json", "."}


def test_subdirectories_with_regular_files_are_allowed() -> None:
    def code_dir(archive: tarfile.TarFile) -> None:
        info = tarfile.TarInfo("code")
        info.type = tarfile.DIRTYPE
        archive.addfile(info)
        add_file(archive, "code/inference.py", b"def model_fn(model_dir): ...\n")

    report = inspect_artifact(io.BytesIO(build_artifact(extra=code_dir)))
    assert "code/inference.py" in report.members


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        (lambda a: add_file(a, "../evil.py", b"x"), "escapes the archive root"),
        (lambda a: add_file(a, "code/../../evil.py", b"x"), "escapes the archive root"),
        (lambda a: add_file(a, "/etc/cron.d/evil", b"x"), "absolute path"),
        (_special("link", tarfile.SYMTYPE, "/etc/passwd"), "symbolic link"),
        (_special("hard", tarfile.LNKTYPE, "forest.npz"), "hard link"),
        (_special("tty", tarfile.CHRTYPE), "device file"),
        (_special("disk", tarfile.BLKTYPE), "device file"),
        (_special("pipe", tarfile.FIFOTYPE), "FIFO"),
        (lambda a: add_file(a, "forest.npz", b"second copy"), "appears more than once"),
        (lambda a: add_file(a, "dir\\evil", b"x"), "backslash"),
    ],
    ids=["traversal", "nested-traversal", "absolute", "symlink", "hardlink", "chr", "blk", "fifo", "dup", "bslash"],
)
def test_unsafe_members_are_rejected_by_name(extra: Callable[[tarfile.TarFile], None], reason: str) -> None:
    # Given an otherwise valid artifact with one hostile member
    message = _reject(build_artifact(extra=extra))
    # Then the reason names the member and the problem
    assert reason in message
    assert "archive member" in message


def test_oversized_artifact_stops_reading_at_the_limit() -> None:
    # Given a 4 MiB model (compresses to almost nothing: a gzip bomb in miniature) and a 1 MiB limit
    data = build_artifact(model=b"\0" * (4 * 1024 * 1024))
    source = HashingReader(io.BytesIO(data))
    # When inspected
    with pytest.raises(InvalidArtifact, match="more than the limit of 1048576 bytes"):
        inspect_artifact(source, max_unpacked_bytes=1024 * 1024)
    # Then reading stopped early instead of inflating the whole archive
    assert not source.exhausted


def test_declared_member_sizes_count_against_the_limit() -> None:
    data = build_artifact(model=os.urandom(300_000))
    assert "more than the limit of 200000 bytes" in _reject(data, max_unpacked_bytes=200_000)


@pytest.mark.parametrize("cut", [0.5, 0.9])
def test_truncated_artifact_is_rejected(cut: float) -> None:
    data = build_artifact(model=os.urandom(50_000))
    assert "truncated" in _reject(data[: int(len(data) * cut)])


def test_missing_gzip_trailer_is_truncation() -> None:
    data = build_artifact()
    assert "truncated" in _reject(data[:-4])


def test_corrupted_crc_is_rejected() -> None:
    data = bytearray(build_artifact())
    data[-6] ^= 0xFF  # inside the CRC-32 trailer
    assert "not valid gzip" in _reject(bytes(data))


def test_plain_tar_is_not_gzip() -> None:
    raw = _tar_bytes(lambda a: add_file(a, "forest.npz", b"x"))
    assert "not valid gzip" in _reject(raw)


def test_gzip_of_something_else_is_not_a_tar() -> None:
    assert "gzip but not a tar archive" in _reject(gzip.compress(b"this is a text file, not a tar\n" * 40))


def test_empty_object_is_rejected() -> None:
    assert "empty" in _reject(b"")


def test_trailing_bytes_after_gzip_are_rejected() -> None:
    assert "trailing bytes" in _reject(build_artifact() + b"garbage")


@pytest.mark.parametrize("missing", ["forest.npz", "metrics.json"])
def test_missing_required_file_is_named(missing: str) -> None:
    present = "metrics.json" if missing == "forest.npz" else "forest.npz"
    data = gzip.compress(_tar_bytes(lambda a: add_file(a, present, b"{}")))
    message = _reject(data)
    assert "lacks required file" in message
    assert missing in message


def test_required_file_in_a_subdirectory_does_not_count() -> None:
    data = gzip.compress(
        _tar_bytes(lambda a: (add_file(a, "out/forest.npz", b"m"), add_file(a, "out/metrics.json", b"{}")))
    )
    assert "lacks required file(s) at its root: forest.npz, metrics.json" in _reject(data)


def test_empty_model_is_rejected() -> None:
    assert "forest.npz is empty" in _reject(build_artifact(model=b""))


def test_a_pickle_only_artifact_is_rejected_with_the_remedy() -> None:
    # Given an artifact that holds a pickled estimator instead of a packed forest
    data = gzip.compress(
        _tar_bytes(lambda a: (add_file(a, "model.joblib", b"\x80\x04pickle"), add_file(a, "metrics.json", b"{}")))
    )
    # Then it is rejected without being read, and the reason names the converter
    message = _reject(data)
    assert "only a pickled model (model.joblib)" in message
    assert "python -m training.convert" in message


@pytest.mark.parametrize(
    ("metrics", "reason"),
    [
        (b"{not json", "metrics.json is not valid JSON"),
        (b'{"validation": {"ae_p50": NaN}}', "non-finite number NaN"),
        (b'{"validation": {"ae_p50": 1e999}}', "non-finite number"),
        (b"[1, 2, 3]", "must hold a JSON object, got list"),
        (b"\xff\xfe", "metrics.json is not valid JSON"),
        (b'{"pad": "' + b"x" * MAX_METRICS_BYTES + b'"}', "more than the limit of 65536"),
        (b"[" * 5000 + b"]" * 5000, "nested"),
        (b'{"a":' * 40 + b"1" + b"}" * 40, "nested more than 32 levels"),
        (b'{"validation": {"ae_p50": 1' + b"0" * 4000 + b"}}", "too large for a float"),
    ],
    ids=["syntax", "nan", "inf", "not-object", "not-utf8", "too-big", "deep-5000", "deep-40", "huge-int"],
)
def test_bad_metrics_json_is_rejected(metrics: bytes, reason: str) -> None:
    assert reason in _reject(build_artifact(metrics=metrics))


def test_hashing_reader_can_finish_the_hash_after_a_rejection() -> None:
    # Given a rejected artifact read through a HashingReader
    data = build_artifact(extra=lambda a: add_file(a, "../evil", b"x"))
    reader = HashingReader(io.BytesIO(data))
    with pytest.raises(InvalidArtifact):
        inspect_artifact(reader)
    # When the rest is drained, the digest names the whole object (so a version can still be derived)
    assert reader.drain(max_bytes=len(data))
    assert reader.sha256 == hashlib.sha256(data).hexdigest()
    assert reader.bytes_read == len(data)


def test_hashing_reader_drain_gives_up_past_its_budget() -> None:
    reader = HashingReader(io.BytesIO(b"x" * 10_000))
    assert reader.drain(max_bytes=100) is False
