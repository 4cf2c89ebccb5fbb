"""The container's default hooks, the hook runner and the artifact/memory helpers (no sockets)."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

from endpoint import codecs
from endpoint.download import safe_extract
from endpoint.errors import ArtifactInvalid, ContainerError
from endpoint.loader import InferenceProgram, RequestContext
from endpoint.memory import measure_bytes, release_memory


class FakeModel:
    def predict(self, data: np.ndarray) -> np.ndarray:
        return np.asarray(data).sum(axis=1)


def context(content_type: str | None = "text/csv", accept: str = "application/json") -> RequestContext:
    return RequestContext(target_model="m.tar.gz", content_type=content_type, accept=accept)


def test_default_csv_decoding_matches_genfromtxt() -> None:
    # Given two CSV rows, Then a 2-D float32 matrix; one row stays 1-D, as in the real container
    many = codecs.default_input_fn("1,2,3\n4,5,6", "text/csv")
    assert many.dtype == np.float32
    assert many.tolist() == [[1, 2, 3], [4, 5, 6]]
    assert codecs.default_input_fn("1,2,3", "text/csv").shape == (3,)


def test_default_json_and_npy_decoding() -> None:
    assert codecs.default_input_fn("[[1, 2], [3, 4]]", "application/json").tolist() == [[1, 2], [3, 4]]
    buffer = io.BytesIO()
    np.save(buffer, np.arange(4, dtype=np.int64).reshape(2, 2))
    decoded = codecs.default_input_fn(buffer.getvalue(), "application/x-npy")
    assert decoded.dtype == np.int64  # only UTF-8 types are cast to float32
    assert decoded.tolist() == [[0, 1], [2, 3]]


def test_default_encoders_follow_accept() -> None:
    prediction = np.array([1.5, 2.5])
    assert json.loads(codecs.default_output_fn(prediction, "application/json")) == [1.5, 2.5]
    assert codecs.default_output_fn(prediction, "text/csv") == "1.5\n2.5\n"
    npy = codecs.default_output_fn(prediction, "application/x-npy")
    assert np.load(io.BytesIO(npy)).tolist() == [1.5, 2.5]


@pytest.mark.parametrize("content_type", ["text/plain", None, "application/json; charset=utf-8"])
def test_unsupported_formats_are_415(content_type: str | None) -> None:
    with pytest.raises(codecs.UnsupportedFormatError) as caught:
        codecs.default_input_fn("1", content_type)
    assert caught.value.status_code == 415


def write(tmp_path: Path, source: str) -> InferenceProgram:
    path = tmp_path / "inference.py"
    path.write_text(source)
    return InferenceProgram.from_file(path)


def test_program_without_hooks_uses_container_defaults(tmp_path: Path) -> None:
    # Given a program defining only model_fn
    program = write(tmp_path, "def model_fn(model_dir):\n    return model_dir\n")
    # When invoked with two CSV rows and no explicit Accept
    result = program.invoke(FakeModel(), b"1,2\n3,4", context())
    # Then default decode -> model.predict -> JSON encode
    assert json.loads(result.body) == [3.0, 7.0]
    assert result.content_type == "application/json"
    assert program.load_model(tmp_path) == str(tmp_path)


def test_missing_model_fn_is_a_container_error(tmp_path: Path) -> None:
    program = write(tmp_path, "X = 1\n")
    with pytest.raises(ContainerError, match="model_fn") as caught:
        program.load_model(tmp_path)
    assert caught.value.status == 500


def test_output_fn_return_values_follow_the_model_server(tmp_path: Path) -> None:
    # Given output_fn returning a tuple, a dict and an unserialisable object depending on accept
    program = write(
        tmp_path,
        "def model_fn(d):\n    return None\n"
        "def input_fn(body, content_type):\n    return body\n"
        "def predict_fn(data, model):\n    return data\n"
        "def output_fn(prediction, accept):\n"
        "    if accept == 'tuple':\n        return ('a,b', 'text/csv')\n"
        "    if accept == 'dict':\n        return {'x': 1}\n"
        "    return object()\n",
    )
    tupled = program.invoke(None, b"", context(accept="tuple"))
    assert (tupled.body, tupled.content_type) == (b"a,b", "text/csv")
    as_json = program.invoke(None, b"", context(accept="dict"))
    assert json.loads(as_json.body) == {"x": 1}
    assert as_json.content_type == "dict"
    with pytest.raises(ContainerError) as caught:
        program.invoke(None, b"", context(accept="other"))
    assert caught.value.status == 503


def test_hook_errors_carry_status_and_message(tmp_path: Path) -> None:
    program = write(
        tmp_path,
        "class Teapot(Exception):\n    status_code = 418\n"
        "def model_fn(d):\n    return None\n"
        "def input_fn(body, content_type):\n    raise Teapot('short and stout')\n",
    )
    with pytest.raises(ContainerError, match="short and stout") as caught:
        program.invoke(None, b"1", context())
    assert caught.value.status == 418


def test_context_taking_hooks_receive_the_request_context(tmp_path: Path) -> None:
    program = write(
        tmp_path,
        "def model_fn(d):\n    return None\n"
        "def transform_fn(model, data, content_type, accept, context):\n"
        "    context.response_custom_attributes = 'seen=' + context.custom_attributes\n"
        "    return data.upper()\n",
    )
    ctx = context()
    ctx.custom_attributes = "abc"
    assert program.invoke(None, b"x,y", ctx).body == b"X,Y"
    assert ctx.response_custom_attributes == "seen=abc"


def test_transform_fn_with_other_hooks_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="transform_fn"):
        write(tmp_path, "def transform_fn(m, d, c, a):\n    return d\ndef input_fn(b, c):\n    return b\n")


def tar_gz(members: list[tarfile.TarInfo], data: bytes = b"") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for member in members:
            archive.addfile(member, io.BytesIO(data) if member.isfile() else None)
    return buffer.getvalue()


def file_member(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    return info


def test_safe_extract_unpacks_files_at_the_root(tmp_path: Path) -> None:
    archive = tmp_path / "ok.tar.gz"
    archive.write_bytes(tar_gz([file_member("model.joblib", 3)], b"abc"))
    assert safe_extract(archive, tmp_path / "out", max_unpacked_bytes=10) == 3
    assert (tmp_path / "out" / "model.joblib").read_bytes() == b"abc"


def test_safe_extract_refuses_traversal_links_and_bombs(tmp_path: Path) -> None:
    link = tarfile.TarInfo("evil")
    link.type = tarfile.SYMTYPE
    link.linkname = "/etc/passwd"
    cases = {
        "traversal": [file_member("../../escape.txt", 1)],
        "absolute": [file_member("/tmp/abs.txt", 1)],
        "symlink": [link],
        "too-big": [file_member("big.bin", 64)],
    }
    for label, members in cases.items():
        archive = tmp_path / f"{label}.tar.gz"
        archive.write_bytes(tar_gz(members, b"x" * 64))
        with pytest.raises(ArtifactInvalid):
            safe_extract(archive, tmp_path / f"out-{label}", max_unpacked_bytes=32)
    assert not (tmp_path.parent / "escape.txt").exists()


def test_measure_bytes_counts_array_buffers() -> None:
    # Given an object holding 8 MB of arrays, Then the measured size includes them (without copying)
    arrays = {"a": np.zeros(1_000_000), "b": np.ones(500_000, dtype=np.int64)}
    size = measure_bytes(arrays)
    assert 12_000_000 <= size < 12_100_000


def test_release_memory_trims_on_glibc() -> None:
    assert release_memory() in (True, False)
    import platform

    if platform.libc_ver()[0] == "glibc":
        assert release_memory() is True
