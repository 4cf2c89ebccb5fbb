"""Loads the configured ``inference.py`` and runs its hooks the way the scikit-learn container does.

Which container: the configured image's serving stack (``endpoint.toolkit``), whose rules decide how
hooks are called, which defaults fill in the hooks the program does not define (``endpoint.codecs``;
``model_fn`` has none, so a program without it fails every load, as on SageMaker) and what a failing
hook answers. Anything a hook raises becomes a ``ContainerError`` carrying the status and body the
model server would send; tracebacks go to the endpoint's log, never to the client.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import json
import logging
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from endpoint import codecs, toolkit
from endpoint.errors import ContainerError
from endpoint.toolkit import ServingStack

log = logging.getLogger("endpoint.program")
_MAX_ORIGINAL_MESSAGE = 1500


@dataclass(slots=True)
class RequestContext:
    """What a context-taking hook can see; it may set ``response_custom_attributes``."""

    target_model: str
    content_type: str | None
    accept: str
    custom_attributes: str | None = None
    inference_id: str | None = None
    response_custom_attributes: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Prediction:
    body: bytes
    content_type: str


class InferenceProgram:
    """One imported ``SAGEMAKER_PROGRAM`` with its hooks resolved (defaults filled in)."""

    def __init__(self, module: ModuleType, stack: ServingStack | None = None) -> None:
        self.stack = stack or toolkit.for_image()
        defaults = codecs.default_hooks(npy_allow_pickle=self.stack.npy_allow_pickle)
        self.model_fn = _Hook.of(getattr(module, "model_fn", defaults.model_fn))
        transform_fn = getattr(module, "transform_fn", None)
        input_fn = getattr(module, "input_fn", None)
        predict_fn = getattr(module, "predict_fn", None)
        output_fn = getattr(module, "output_fn", None)
        if transform_fn and (input_fn or predict_fn or output_fn):
            raise ValueError("Cannot use transform_fn together with input_fn, predict_fn and/or output_fn")
        self.transform_fn = _Hook.of(transform_fn) if transform_fn is not None else None
        self.input_fn = _Hook.of(input_fn or defaults.input_fn)
        self.predict_fn = _Hook.of(predict_fn or defaults.predict_fn)
        self.output_fn = _Hook.of(output_fn or defaults.output_fn)

    @classmethod
    def from_file(cls, path: str | Path, stack: ServingStack | None = None) -> InferenceProgram:
        """Import ``path`` as a fresh module, with its directory on ``sys.path`` as in the container."""
        path = Path(path).resolve()
        if not path.is_file():
            raise FileNotFoundError(f"inference program not found: {path}")
        directory = str(path.parent)
        if directory not in sys.path:
            sys.path.insert(0, directory)
        # A unique module name per file: two endpoints (or tests) with different programs never clash.
        name = f"_endpoint_program_{path.stem}_{hashlib.sha256(str(path).encode()).hexdigest()[:12]}"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot import {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(name, None)
            raise
        return cls(module, stack)

    def load_model(self, model_dir: str | Path) -> Any:
        try:
            return self._call(self.model_fn, None, str(model_dir))
        except Exception as error:
            # MMS swallows model_fn's error at load and answers each request with its own 503.
            log.warning("model_fn raised for %s", model_dir, exc_info=error)
            raise self.stack.model_load_error() from error

    def invoke(self, model: Any, body: bytes, context: RequestContext) -> Prediction:
        """input_fn -> predict_fn -> output_fn (or transform_fn), then the model server's body rules."""
        try:
            data: Any = body
            if context.content_type in codecs.UTF8_TYPES:
                data = body.decode("utf-8")
            if self.transform_fn is not None:
                result = self._call(self.transform_fn, context, model, data, context.content_type, context.accept)
            else:
                features = self._call(self.input_fn, context, data, context.content_type)
                prediction = self._call(self.predict_fn, context, features, model)
                result = self._call(self.output_fn, context, prediction, context.accept)
        except Exception as error:
            raise self._container_error(error) from error
        content_type = context.accept
        if isinstance(result, tuple):
            # The toolkit's backwards-compatible (body, content_type) form.
            result, content_type = result[0], result[1]
        return Prediction(body=self._to_bytes(result), content_type=str(content_type))

    def _call(self, hook: _Hook, context: RequestContext | None, *args: Any) -> Any:
        if not self.stack.hooks_take_context:
            # As the toolkit calls it: a hook that wants more arguments fails with Python's TypeError.
            return hook.func(*args)
        arity = _arity(hook.func) if hook.arity is None else hook.arity
        if arity == len(args):
            return hook.func(*args)
        if arity == len(args) + 1:
            return hook.func(*args, context)
        raise TypeError(f"{hook.func.__name__} takes {arity} arguments but {len(args)} were given.")

    def _to_bytes(self, value: Any) -> bytes:
        """MMS's rules: str -> UTF-8, bytes as they are, anything else JSON (or MMS's 503 if it cannot be)."""
        if isinstance(value, str):
            return value.encode("utf-8")
        if isinstance(value, (bytes, bytearray, memoryview)):
            return bytes(value)
        try:
            return json.dumps(value, indent=2).encode("utf-8")
        except TypeError as error:
            raise self.stack.unserialisable_output() from error

    def _container_error(self, error: Exception) -> ContainerError:
        if isinstance(error, ContainerError):
            return error
        log.warning("inference hook raised %s", type(error).__name__, exc_info=error)
        answer = self.stack.hook_error(error, traceback.format_exc())
        if len(answer.message) > _MAX_ORIGINAL_MESSAGE:
            answer = ContainerError(answer.message[: _MAX_ORIGINAL_MESSAGE - 3] + "...", answer.status)
        return answer


@dataclass(frozen=True)
class _Hook:
    """A hook with its parameter count, read once at import instead of on every request."""

    func: Callable[..., Any]
    # None when the signature cannot be read (e.g. ``model_fn = None``): such a hook must keep failing
    # per request, as a ContainerError, rather than stop the program from importing.
    arity: int | None

    @classmethod
    def of(cls, func: Callable[..., Any]) -> _Hook:
        try:
            return cls(func, _arity(func))
        except Exception:
            return cls(func, None)


def _arity(func: Callable[..., Any]) -> int:
    return len(inspect.signature(func).parameters)
