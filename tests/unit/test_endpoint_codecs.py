"""The container's default hooks, the hook runner and the artifact/memory helpers (no sockets)."""

from __future__ import annotations

import io
import json
import tarfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from endpoint import codecs, toolkit
from endpoint.download import safe_extract
from endpoint.errors import ArtifactInvalid, ContainerError
from endpoint.memory import measure_bytes, release_memory
from endpoint.program import InferenceProgram, RequestContext


class FakeModel:
    def predict(self, data: np.ndarray) -> np.ndarray:
        return np.asarray(data).sum(axis=1)


def context(content_type: str | None = "text/csv", accept: str = "application/json") -> RequestContext:
    return RequestContext(target_model="m.tar.gz", content_type=content_type, accept=accept)


DEFAULTS = codecs.default_hooks(npy_allow_pickle=False)
STACK = toolkit.for_image("1.4-2-py312")


def test_default_csv_decoding_reshapes_one_row_like_the_container() -> None:
    # Given two CSV rows, Then a 2-D float32 matrix
    many = DEFAULTS.input_fn("1,2,3\n4,5,6", "text/csv")
    assert many.dtype == np.float32
    assert many.tolist() == [[1, 2, 3], [4, 5, 6]]
    # And one row becomes a 1-row matrix: handler_service's default_input_fn reshapes 1-D input
    assert DEFAULTS.input_fn("1,2,3", "text/csv").shape == (1, 3)


def test_default_json_and_npy_decoding() -> None:
    assert DEFAULTS.input_fn("[[1, 2], [3, 4]]", "application/json").tolist() == [[1, 2], [3, 4]]
    assert DEFAULTS.input_fn("[1, 2]", "application/json").shape == (1, 2)
    buffer = io.BytesIO()
    np.save(buffer, np.arange(4, dtype=np.int64).reshape(2, 2))
    decoded = DEFAULTS.input_fn(buffer.getvalue(), "application/x-npy")
    assert decoded.dtype == np.int64  # only UTF-8 types are cast to float32
    assert decoded.tolist() == [[0, 1], [2, 3]]


@pytest.mark.parametrize("allow_pickle", [False, True])
def test_pickled_npy_bodies_are_never_unpickled(allow_pickle: bool) -> None:
    # Given an object array (its npy holds a pickle)
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    hooks = codecs.default_hooks(npy_allow_pickle=allow_pickle)
    # Then both the patched decoder and the stand-in for the unpatched one refuse it
    with pytest.raises(ValueError, match="allow_pickle" if not allow_pickle else "would unpickle"):
        hooks.input_fn(buffer.getvalue(), "application/x-npy")


def test_default_encoders_follow_accept_and_return_it_as_the_type() -> None:
    prediction = np.array([1.5, 2.5])
    body, content_type = DEFAULTS.output_fn(prediction, "application/json")
    assert (json.loads(body), content_type) == ([1.5, 2.5], "application/json")
    assert DEFAULTS.output_fn(prediction, "text/csv") == ("1.5\n2.5\n", "text/csv")
    npy, _ = DEFAULTS.output_fn(prediction, "application/x-npy")
    assert np.load(io.BytesIO(npy)).tolist() == [1.5, 2.5]


@pytest.mark.parametrize("content_type", ["text/plain", None, "application/json; charset=utf-8"])
def test_unsupported_formats_raise_the_toolkits_multi_line_error(content_type: str | None) -> None:
    with pytest.raises(codecs.UnsupportedFormatError) as caught:
        DEFAULTS.input_fn("1", content_type)
    assert str(caught.value).startswith(f"Content type {content_type} is not supported by this framework.\n\n")
    assert not hasattr(caught.value, "status_code")  # a plain Exception in sagemaker-inference 1.2.0


def write(tmp_path: Path, source: str, stack: toolkit.ServingStack = STACK) -> InferenceProgram:
    path = tmp_path / "inference.py"
    path.write_text(source)
    return InferenceProgram.from_file(path, stack)


def test_program_without_hooks_uses_container_defaults(tmp_path: Path) -> None:
    # Given a program defining only model_fn
    program = write(tmp_path, "def model_fn(model_dir):\n    return model_dir\n")
    # When invoked with two CSV rows and no explicit Accept
    result = program.invoke(FakeModel(), b"1,2\n3,4", context())
    # Then default decode -> model.predict -> JSON encode
    assert json.loads(result.body) == [3.0, 7.0]
    assert result.content_type == "application/json"
    assert program.load_model(tmp_path) == str(tmp_path)


def test_a_failing_model_fn_answers_mms_prediction_failed(tmp_path: Path) -> None:
    # Given a program without model_fn (the container has no default)
    program = write(tmp_path, "X = 1\n")
    # When a model loads, Then MMS's own 503 JSON error answers: the reason stays in the log
    with pytest.raises(ContainerError) as caught:
        program.load_model(tmp_path)
    assert caught.value.status == 503
    assert json.loads(caught.value.message) == {
        "code": 503,
        "type": "InternalServerException",
        "message": "Prediction failed",
    }


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
    assert json.loads(caught.value.message)["message"] == "Unsupported model output data type."


def test_hook_errors_are_500_with_the_message_only(tmp_path: Path) -> None:
    # Given hooks raising an exception with its own status_code, an empty one, and a toolkit error
    program = write(
        tmp_path,
        "import types, sys\n"
        "errors = types.ModuleType('sagemaker_inference.errors')\n"
        "exec('class BaseInferenceToolkitError(Exception):\\n"
        "    def __init__(self, status_code, message, phrase):\\n"
        "        self.status_code, self.message, self.phrase = status_code, message, phrase\\n', errors.__dict__)\n"
        "class Teapot(Exception):\n    status_code = 418\n"
        "def model_fn(d):\n    return None\n"
        "def input_fn(body, content_type):\n"
        "    if body == b'teapot':\n        raise Teapot('short and stout')\n"
        "    if body == b'empty':\n        raise ValueError()\n"
        "    raise errors.BaseInferenceToolkitError(400, 'bad rows', 'Bad Request')\n",
    )
    # Then a plain exception is a 500 whatever its attributes, its str() the whole body (no traceback)
    with pytest.raises(ContainerError) as caught:
        program.invoke(None, b"teapot", context(content_type="x"))
    assert (caught.value.status, caught.value.message) == (500, "short and stout")
    with pytest.raises(ContainerError) as caught:
        program.invoke(None, b"empty", context(content_type="x"))
    assert (caught.value.status, caught.value.message) == (500, "Invalid Request")
    # And only the toolkit's own error type carries a status
    with pytest.raises(ContainerError) as caught:
        program.invoke(None, b"other", context(content_type="x"))
    assert (caught.value.status, caught.value.message) == (400, "bad rows")


def test_an_error_message_with_a_line_break_gets_no_response_on_the_image(tmp_path: Path) -> None:
    # Given the container's default input_fn and an unsupported content type (a multi-line toolkit error)
    program = write(tmp_path, "def model_fn(model_dir):\n    return model_dir\n")
    # Then MMS could not answer: locally a ModelError with status 0 that says so at once
    with pytest.raises(ContainerError) as caught:
        program.invoke(FakeModel(), b"1,2", context(content_type="text/plain"))
    assert caught.value.status == toolkit.NO_RESPONSE_STATUS
    assert "No response from the model container" in caught.value.message
    assert "Content type text/plain is not supported" in caught.value.message
    assert "\n" not in caught.value.message


def test_hooks_get_no_context_in_toolkit_1_2_0(tmp_path: Path) -> None:
    # Given a hook written for a newer toolkit (1.7.0+: one extra context parameter)
    program = write(
        tmp_path,
        "def model_fn(d):\n    return None\n"
        "def transform_fn(model, data, content_type, accept, context):\n"
        "    return data.upper()\n",
    )
    # Then it fails as the image's toolkit calls it: Python's own TypeError, as a 500
    with pytest.raises(ContainerError) as caught:
        program.invoke(None, b"x,y", context())
    assert caught.value.status == 500
    assert caught.value.message == "transform_fn() missing 1 required positional argument: 'context'"


def test_context_taking_hooks_receive_the_request_context_under_newer_rules(tmp_path: Path) -> None:
    # Given rules that pass a context (toolkit 1.7.0+), Then a hook may read and set attributes
    newer = replace(STACK, rules=replace(STACK.rules, hooks_take_context=True))
    program = write(
        tmp_path,
        "def model_fn(d):\n    return None\n"
        "def transform_fn(model, data, content_type, accept, context):\n"
        "    context.response_custom_attributes = 'seen=' + context.custom_attributes\n"
        "    return data.upper()\n",
        newer,
    )
    ctx = context()
    ctx.custom_attributes = "abc"
    assert program.invoke(None, b"x,y", ctx).body == b"X,Y"
    assert ctx.response_custom_attributes == "seen=abc"


def test_every_inference_image_has_its_serving_stack() -> None:
    # Given the image table, Then each inference tag resolves to emulated rules, and only 1.4-2-py312 is patched
    stacks = {version: toolkit.for_image(version) for version in ("1.2-1", "1.4-2-py312")}
    assert {stack.sagemaker_inference for stack in stacks.values()} == {"1.2.0"}
    assert (stacks["1.2-1"].npy_allow_pickle, stacks["1.4-2-py312"].npy_allow_pickle) == (True, False)
    assert toolkit.for_image(None).image_version == "1.4-2-py312"
    with pytest.raises(toolkit.UnknownServingStack, match="not an inference image"):
        toolkit.for_image("1.4-2")


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


def test_safe_extract_streams_and_refuses_a_truncated_archive(tmp_path: Path) -> None:
    # Given a valid archive as a stream (an S3 body), and the same archive cut short

    whole = tar_gz([file_member("forest.npz", 3)], b"abc")
    # Then the whole one extracts in one pass and the truncated one is an invalid artifact
    assert safe_extract(io.BytesIO(whole), tmp_path / "whole", max_unpacked_bytes=10) == 3
    with pytest.raises(ArtifactInvalid):
        safe_extract(io.BytesIO(whole[: len(whole) // 2]), tmp_path / "cut", max_unpacked_bytes=10)
