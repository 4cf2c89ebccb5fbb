"""Which program serves a model, how its hooks are called, and what a failing hook answers."""

from __future__ import annotations

from pathlib import Path

import pytest

from container.errors import InvalidModel
from container.programs import STACK, Programs, invocation_error, load_model
from container.settings import DEFAULT_SUBMIT_DIRECTORY
from endpoint.errors import ContainerError as HookError
from endpoint.program import InferenceProgram, RequestContext


def programs(*, allow: bool) -> Programs:
    return Programs.from_file(DEFAULT_SUBMIT_DIRECTORY / "inference.py", allow_model_code=allow)


def write(path: Path, source: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source)
    return path


def test_a_model_without_code_gets_the_container_s_program() -> None:
    chosen = programs(allow=True)

    assert chosen.for_model(None) is chosen.default


def test_model_code_is_refused_unless_allowed_and_then_imported_once_per_content(tmp_path: Path) -> None:
    first = write(tmp_path / "a" / "code" / "inference.py", "def model_fn(model_dir):\n    return 1\n")
    same = write(tmp_path / "b" / "code" / "inference.py", first.read_text())
    other = write(tmp_path / "c" / "code" / "inference.py", first.read_text() + "# another\n")

    with pytest.raises(InvalidModel, match="ALLOW_MODEL_CODE"):
        programs(allow=False).for_model(first)
    allowing = programs(allow=True)
    assert allowing.for_model(first) is allowing.for_model(same)
    assert allowing.for_model(first) is not allowing.for_model(other)


def test_model_code_that_raises_on_import_is_an_invalid_model(tmp_path: Path) -> None:
    code = write(tmp_path / "code" / "inference.py", "raise RuntimeError('needs a GPU')\n")

    with pytest.raises(InvalidModel, match="needs a GPU"):
        programs(allow=True).for_model(code)


def test_model_fn_gets_the_directory_and_no_context(tmp_path: Path) -> None:
    code = write(
        tmp_path / "code" / "inference.py",
        "def model_fn(model_dir, context):\n    return (model_dir, context)\n",
    )
    program = InferenceProgram.from_file(code, STACK)

    assert load_model(program, tmp_path) == (str(tmp_path), None)


def test_hooks_may_take_a_context_and_set_the_response_custom_attributes(tmp_path: Path) -> None:
    code = write(
        tmp_path / "code" / "inference.py",
        "def model_fn(model_dir):\n    return 2\n"
        "def predict_fn(data, model, context):\n"
        "    context.response_custom_attributes = 'seen=' + context.custom_attributes\n"
        "    return data * model\n",
    )
    program = InferenceProgram.from_file(code, STACK)
    context = RequestContext("t", "application/json", "application/json", custom_attributes="x")

    prediction = program.invoke(2, b"[[1, 2]]", context)

    assert prediction.body == b"[[2.0, 4.0]]"
    assert context.response_custom_attributes == "seen=x"


def test_a_hook_s_exception_keeps_its_message_with_line_breaks_and_a_toolkit_status() -> None:
    class BaseInferenceToolkitError(Exception):
        def __init__(self, status_code: int, message: str, phrase: str) -> None:
            self.status_code, self.message, self.phrase = status_code, message, phrase

    BaseInferenceToolkitError.__module__ = "sagemaker_inference.errors"

    plain = invocation_error(STACK.hook_error(ValueError("bad row\nsee docs")))
    toolkit = invocation_error(STACK.hook_error(BaseInferenceToolkitError(415, "no such type", "Unsupported")))
    silent = invocation_error(STACK.hook_error(KeyError()))

    assert (plain.status, plain.message) == (500, "bad row\nsee docs")
    assert (toolkit.status, toolkit.message) == (415, "no such type")
    assert (silent.status, silent.message) == (500, "Invalid Request")
    assert plain.body()["type"] == "InvocationException"


def test_the_default_program_serves_a_packed_forest_like_training_inference(tmp_path: Path) -> None:
    from tests.container_harness import OLD_HOUSE, tiny_forest

    (tmp_path / "forest.npz").write_bytes(tiny_forest(low=11.0, high=12.0))
    program = programs(allow=False).default
    model = load_model(program, tmp_path)

    prediction = program.invoke(model, OLD_HOUSE.encode(), RequestContext("t", "text/csv", "application/json"))

    assert prediction.body == b"[11.0]"
    assert prediction.content_type == "application/json"


def test_an_output_that_cannot_be_sent_is_a_500_saying_so(tmp_path: Path) -> None:
    code = write(
        tmp_path / "code" / "inference.py",
        "def model_fn(model_dir):\n    return 1\n"
        "def predict_fn(data, model):\n    return data\n"
        "def output_fn(prediction, accept):\n    return object()\n",
    )
    program = InferenceProgram.from_file(code, STACK)

    with pytest.raises(HookError) as raised:
        program.invoke(1, b"[1]", RequestContext("t", "application/json", "application/json"))

    assert raised.value.status == 500
    assert "neither str, bytes nor JSON" in raised.value.message
