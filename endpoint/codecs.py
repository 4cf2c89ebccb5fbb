"""The scikit-learn container's default (de)serialisers, used when ``inference.py`` omits a hook.

Mirrors ``sagemaker_inference.decoder``/``encoder`` and the sklearn container's defaults: bodies of
UTF-8 types arrive as ``str``; CSV via ``np.genfromtxt``; JSON via ``np.array(json.loads(...))``;
NPY via ``np.load``; CSV/JSON input is cast to float32. Like the real container, a single CSV row
decodes to a 1-D array and is *not* reshaped, so ``model.predict`` rejects it: a local run must not
accept what SageMaker would refuse.
"""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np

JSON = "application/json"
CSV = "text/csv"
NPY = "application/x-npy"
ANY = "*/*"
UTF8_TYPES = (JSON, CSV)


class UnsupportedFormatError(Exception):
    """A content type the default hooks cannot handle; ``status_code`` follows the toolkit's errors."""

    status_code = 415

    def __init__(self, content_type: str | None) -> None:
        super().__init__(
            f"Content type {content_type} is not supported by this framework. Please implement input_fn to "
            "deserialize the request data or an output_fn to serialize the response."
        )


def decode(body: Any, content_type: str | None) -> np.ndarray:
    if content_type == CSV:
        return np.genfromtxt(io.StringIO(_text(body)), delimiter=",")
    if content_type == JSON:
        return np.array(json.loads(_text(body)))
    if content_type == NPY:
        raw = body.encode("latin-1") if isinstance(body, str) else bytes(body)
        # The toolkit passes allow_pickle=True; a stand-in has no reason to unpickle request bodies.
        return np.load(io.BytesIO(raw), allow_pickle=False)
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


def default_input_fn(input_data: Any, content_type: str | None) -> np.ndarray:
    array = decode(input_data, content_type)
    return array.astype(np.float32) if content_type in UTF8_TYPES else array


def default_predict_fn(input_data: Any, model: Any) -> Any:
    return model.predict(input_data)


def default_output_fn(prediction: Any, accept: str | None) -> str | bytes:
    return encode(prediction, accept)


def default_model_fn(model_dir: str) -> Any:
    raise NotImplementedError(
        "Please provide a model_fn implementation. The scikit-learn container has no default model_fn."
    )


def _text(body: Any) -> str:
    return body if isinstance(body, str) else bytes(body).decode("utf-8")


def _tolist(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")
