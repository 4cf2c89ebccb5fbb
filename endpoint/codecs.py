"""The scikit-learn container's default hooks, used when ``inference.py`` omits one.

Mirrors ``sagemaker_inference.decoder``/``encoder`` 1.2.0 and the container's
``handler_service.DefaultSKLearnUserModuleInferenceHandler``: content types match exactly (a
``charset`` parameter makes a type unknown); CSV via ``np.genfromtxt``, JSON via
``np.array(json.loads(...))``, NPY via ``np.load``; **1-D input is reshaped to one row**; CSV/JSON input
is cast to float32; ``output_fn`` returns ``(encoded, accept)``. An unknown type raises the toolkit's
``UnsupportedFormatError``, a plain ``Exception`` whose message has line breaks (see
``endpoint.toolkit`` for what that means on AWS).

NPY bodies are never unpickled here. The 1.4-2-py312 image refuses pickled NPY too (its patched
decoder); the toolkit's own decoder (image 1.2-1) would unpickle one, which a stand-in does not do.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

JSON = "application/json"
CSV = "text/csv"
NPY = "application/x-npy"
ANY = "*/*"
UTF8_TYPES = (JSON, CSV)


class UnsupportedFormatError(Exception):
    """``sagemaker_inference.errors.UnsupportedFormatError`` of 1.2.0, message and all."""

    def __init__(self, content_type: str | None) -> None:
        # textwrap.dedent() of the toolkit's literal changes nothing (its first line is not indented).
        super().__init__(
            f"Content type {content_type} is not supported by this framework.\n\n"
            "            Please implement input_fn to to deserialize the request data or an output_fn to\n"
            "            serialize the response. For more information, see the SageMaker Python SDK README."
        )


@dataclass(frozen=True)
class DefaultHooks:
    model_fn: Callable[[str], Any]
    input_fn: Callable[[Any, str | None], Any]
    predict_fn: Callable[[Any, Any], Any]
    output_fn: Callable[[Any, str], Any]


def default_hooks(*, npy_allow_pickle: bool) -> DefaultHooks:
    """The container's defaults; ``npy_allow_pickle`` is the image's decoder (only its message differs here)."""

    def input_fn(input_data: Any, content_type: str | None) -> np.ndarray:
        array = decode(input_data, content_type, npy_allow_pickle=npy_allow_pickle)
        if len(array.shape) == 1:
            array = array.reshape(1, -1)
        return array.astype(np.float32) if content_type in UTF8_TYPES else array

    return DefaultHooks(
        model_fn=default_model_fn, input_fn=input_fn, predict_fn=default_predict_fn, output_fn=default_output_fn
    )


def decode(body: Any, content_type: str | None, *, npy_allow_pickle: bool = False) -> np.ndarray:
    if content_type == CSV:
        return np.genfromtxt(io.StringIO(body), delimiter=",")
    if content_type == JSON:
        return np.array(json.loads(body))
    if content_type == NPY:
        return _load_npy(bytes(body), npy_allow_pickle)
    raise UnsupportedFormatError(content_type)


def encode(array_like: Any, accept: str | None) -> str | bytes:
    if accept == JSON:
        return json.dumps(array_like, default=_tolist)
    if accept == CSV:
        stream = io.StringIO()
        np.savetxt(stream, array_like, delimiter=",", fmt="%s")
        return stream.getvalue()
    if accept == NPY:
        buffer = io.BytesIO()
        np.save(buffer, array_like)
        return buffer.getvalue()
    raise UnsupportedFormatError(accept)


def default_predict_fn(input_data: Any, model: Any) -> Any:
    return model.predict(input_data)


def default_output_fn(prediction: Any, accept: str) -> tuple[str | bytes, str]:
    return encode(prediction, accept), accept


def default_model_fn(model_dir: str) -> Any:
    raise NotImplementedError(
        "Please provide a model_fn implementation. The scikit-learn container has no default model_fn."
    )


def _load_npy(raw: bytes, allow_pickle: bool) -> np.ndarray:
    try:
        return np.load(io.BytesIO(raw), allow_pickle=False)
    except ValueError as error:
        if allow_pickle and "allow_pickle" in str(error):
            raise ValueError(
                "this application/x-npy body holds pickled objects: the image's decoder would unpickle it "
                "(np.load(allow_pickle=True)); the local endpoint never runs code from a request"
            ) from error
        raise


def _tolist(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")
