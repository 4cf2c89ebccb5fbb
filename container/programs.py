"""Which ``inference.py`` serves a model, and how its hooks are called in this container.

The scikit-learn container puts ``{model_dir}/code`` first on ``PYTHONPATH`` and imports
``SAGEMAKER_PROGRAM`` (``inference.py``) from there, else from ``SAGEMAKER_SUBMIT_DIRECTORY``; hooks a
program lacks are the container's defaults. Here likewise: a model's ``code/<program>`` when the
operator allows model code (``ALLOW_MODEL_CODE=true``; a model file must not run code otherwise), else
the configured program (``training/inference.py`` by default), with ``endpoint.codecs`` filling in
missing hooks (``endpoint.program.InferenceProgram``). Programs are imported once per content: many
models shipping the same ``inference.py`` share one module.

Hook rules are the modern toolkit's (sagemaker-inference >= 1.7), not MMS 1.1.1's: a hook may take a
context as its last argument (it can set response custom attributes), a hook's exception is answered
with its message (500, or a toolkit error's own status) in a JSON body, so line breaks are harmless.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from container.errors import InvalidModel, InvocationFailed
from endpoint.errors import ContainerError as HookError
from endpoint.program import InferenceProgram
from endpoint.toolkit import ServingStack, ToolkitRules

log = logging.getLogger("container.programs")
# Each program's directory goes on sys.path (its sibling modules import from there); bound it.
MAX_MODEL_PROGRAMS = 256
_MAX_MESSAGE = 1500


@dataclass(frozen=True)
class DenseStack(ServingStack):
    """The serving rules of this container, in the shape ``InferenceProgram`` runs hooks by."""

    def hook_error(self, error: BaseException, trace: str = "") -> HookError:
        status, message = 500, str(error) or "Invalid Request"
        if _is_toolkit_error(error):
            toolkit_error: Any = error
            status, message = int(toolkit_error.status_code), str(toolkit_error.message)
            if not 400 <= status <= 599:
                status = 500  # a success status would pass an error off as a prediction
        if len(message) > _MAX_MESSAGE:
            message = message[: _MAX_MESSAGE - 3] + "..."
        return HookError(message, status)

    def model_load_error(self) -> HookError:
        return HookError("model_fn failed", 500)

    def unserialisable_output(self) -> HookError:
        return HookError("output_fn returned something that is neither str, bytes nor JSON-serialisable", 500)

    def describe(self) -> str:
        return "dense container (hooks may take a context; errors as JSON)"


STACK = DenseStack(
    image_version="dense-container",
    sagemaker_inference="n/a",
    multi_model_server="n/a",
    rules=ToolkitRules(hooks_take_context=True, traceback_in_body=False, phrase_line_breaks="removed"),
    npy_allow_pickle=False,
)


class Programs:
    """The configured program, and the models' own programs imported once per content."""

    def __init__(self, default: InferenceProgram, *, allow_model_code: bool, program_name: str) -> None:
        self.default = default
        self.allow_model_code = allow_model_code
        self.program_name = program_name
        self._by_digest: dict[str, InferenceProgram] = {}
        # Loads run in several threads; importing the same program twice would waste a module.
        self._lock = threading.Lock()

    @classmethod
    def from_file(cls, path: Path, *, allow_model_code: bool) -> Programs:
        return cls(InferenceProgram.from_file(path, STACK), allow_model_code=allow_model_code, program_name=path.name)

    def for_model(self, code: Path | None) -> InferenceProgram:
        """The program of a model whose directory holds ``code`` (``code/<program>``, or None)."""
        if code is None:
            return self.default
        if not self.allow_model_code:
            raise InvalidModel(
                f"the model brings code/{self.program_name}, which this container does not run unless the operator "
                "sets ALLOW_MODEL_CODE=true (it runs with the container's rights)"
            )
        try:
            digest = hashlib.sha256(code.read_bytes()).hexdigest()
        except OSError as error:
            raise InvalidModel(f"code/{self.program_name} cannot be read: {error.strerror}") from None
        with self._lock:
            program = self._by_digest.get(digest)
            if program is not None:
                return program
            if len(self._by_digest) >= MAX_MODEL_PROGRAMS:
                raise InvalidModel(f"more than {MAX_MODEL_PROGRAMS} different model programs; share one")
            try:
                program = InferenceProgram.from_file(code, STACK)
            except Exception as error:
                log.warning("importing %s failed", code, exc_info=error)
                raise InvalidModel(f"code/{self.program_name} cannot be imported: {_one_line(error)}") from None
            self._by_digest[digest] = program
            return program


def load_model(program: InferenceProgram, model_dir: Path) -> Any:
    """``model_fn(model_dir)`` (or ``model_fn(model_dir, context)``: no context exists at load, so None)."""
    hook = program.model_fn
    arity = hook.arity if hook.arity is not None else _arity(hook.func)
    return hook.func(str(model_dir), None) if arity == 2 else hook.func(str(model_dir))


def invocation_error(error: HookError) -> InvocationFailed:
    return InvocationFailed(error.message, status=error.status)


def _arity(func: Any) -> int:
    try:
        return len(inspect.signature(func).parameters)
    except (TypeError, ValueError):
        return 1


def _is_toolkit_error(error: BaseException) -> bool:
    # By name: programs may raise the toolkit's errors, but the toolkit is not installed here.
    return any(
        cls.__name__ == "BaseInferenceToolkitError" and cls.__module__ == "sagemaker_inference.errors"
        for cls in type(error).__mro__
    )


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 300 else text[:297] + "..."
