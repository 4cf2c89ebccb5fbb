"""Serving hooks for the SageMaker scikit-learn container (``SAGEMAKER_PROGRAM=inference.py``).

The container (and the local endpoint) call ``model_fn`` once per model, then per request
``input_fn`` -> ``predict_fn`` -> ``output_fn``. Kept light at import: numpy only, plus
``house_prices.schema`` (feature order) and ``packed_forest`` (the model format), which travel in the
same ``sourcedir.tar.gz``. scikit-learn is never imported here.

Models are packed forests (``forest.npz``; docs/model-format.md): plain arrays, loaded with
``allow_pickle=False``. Nothing unpickles unless the operator sets ``ALLOW_PICKLED_MODELS=true`` on the
serving container, for users who bring their own estimators as ``model.joblib``: a pickle executes code
on load, so only do that for artifacts you trust.

``output_fn`` returns ``(body: bytes, content_type: str)``. Both serving stacks of the container
unwrap that tuple into the response body and its Content-Type: the multi-model (MMS) transformer of
``sagemaker-scikit-learn-container``/``sagemaker-inference`` and the legacy single-model gunicorn
worker of ``sagemaker-containers``. A bare body would get the Accept value as its type in the first
and no explicit type in the second, so the tuple is the form that is right in both.
"""

from __future__ import annotations

import io
import json
import os
from typing import Any

import numpy as np

from house_prices.naming import PACKED_MODEL_FILENAME, PICKLED_MODEL_FILENAME
from house_prices.schema import FEATURE_NAMES
from packed_forest import PackedForest

ALLOW_PICKLE_VARIABLE = "ALLOW_PICKLED_MODELS"

CSV = "text/csv"
JSON = "application/json"
NPY = "application/x-npy"
SUPPORTED_CONTENT_TYPES = (CSV, JSON, NPY)
DEFAULT_ACCEPT = JSON


class UnservableModel:
    """A model directory that cannot be served, kept with its reason so that each request reports it.

    The image's serving stack (multi-model-server 1.1.1 with sagemaker-inference 1.2.0) swallows an
    exception from ``model_fn`` and answers every request with a bare 503 "Prediction failed", leaving
    the reason in the container's log only. ``predict_fn`` raises it instead, which the toolkit sends
    as the error message (a 500). One line: MMS cannot send a message with a line break at all.
    """

    def __init__(self, reason: str) -> None:
        self.reason = " ".join(reason.split())


def model_fn(model_dir: str) -> Any:
    """The packed forest of an unpacked ``model.tar.gz``, or an ``UnservableModel`` saying why not."""
    try:
        return load_model(model_dir)
    except Exception as error:
        return UnservableModel(str(error) or type(error).__name__)


def load_model(model_dir: str) -> Any:
    """Load the packed forest (memory-mapped: processes share its pages); raise ValueError if unservable.

    A directory holding only a pickle is refused with the remedy, unless pickles were explicitly allowed.
    """
    packed = os.path.join(model_dir, PACKED_MODEL_FILENAME)
    if os.path.isfile(packed):
        forest = PackedForest.load(packed, mmap=True)
        if forest.feature_names != FEATURE_NAMES:
            raise ValueError(
                f"model features {list(forest.feature_names)} differ from the serving order {list(FEATURE_NAMES)}"
            )
        return forest
    pickled = os.path.join(model_dir, PICKLED_MODEL_FILENAME)
    if os.path.isfile(pickled) and pickles_allowed():
        return _load_pickled_estimator(pickled)
    if os.path.isfile(pickled):
        raise ValueError(
            f"this model holds only a pickle ({PICKLED_MODEL_FILENAME}), which is not loaded because unpickling runs "
            f"code. Convert it: python -m training.convert model.tar.gz --out packed.tar.gz (or set "
            f"{ALLOW_PICKLE_VARIABLE}=true on the endpoint if you trust it)"
        )
    raise ValueError(f"no {PACKED_MODEL_FILENAME} in the model directory; see docs/model-format.md")


def pickles_allowed() -> bool:
    return os.environ.get(ALLOW_PICKLE_VARIABLE, "").strip().lower() == "true"


def _load_pickled_estimator(path: str) -> Any:
    """The opt-in path for a user's own estimator; served single-threaded.

    A forest pickled with ``n_jobs=-1`` spins a thread pool per call: ~32 ms for one row instead of
    ~5 ms, and the endpoint already serves requests concurrently.
    """
    import joblib

    model = joblib.load(path)
    if hasattr(model, "n_jobs"):
        model.n_jobs = 1
    expected = getattr(model, "n_features_in_", len(FEATURE_NAMES))
    if expected != len(FEATURE_NAMES):
        raise ValueError(f"model expects {expected} features but the schema has {len(FEATURE_NAMES)}: {FEATURE_NAMES}")
    return model


def _media_type(header: str | None) -> str:
    return (header or "").split(";", 1)[0].strip().lower()


def _text(body: str | bytes | bytearray) -> str:
    return body if isinstance(body, str) else bytes(body).decode("utf-8")


def input_fn(body: str | bytes | bytearray, content_type: str) -> np.ndarray:
    """Decode a request body into a float64 matrix with one row per house, in schema feature order."""
    media_type = _media_type(content_type)
    try:
        if media_type == CSV:
            text = _text(body).strip()
            if not text:
                raise ValueError("empty text/csv body")
            data = np.loadtxt(io.StringIO(text), delimiter=",", ndmin=2, dtype=np.float64)
        elif media_type == JSON:
            data = np.asarray(json.loads(_text(body)), dtype=np.float64)
        elif media_type == NPY:
            raw = body.encode("latin-1") if isinstance(body, str) else bytes(body)
            array = np.load(io.BytesIO(raw), allow_pickle=False)
            if array.dtype.kind not in "biuf":
                # Casting would silently drop an imaginary part or misread text/bytes as numbers.
                raise ValueError(f"application/x-npy body must hold real numbers, got dtype {array.dtype}")
            data = np.asarray(array, dtype=np.float64)
        else:
            raise ValueError(
                f"unsupported content type {content_type!r}; use one of {', '.join(SUPPORTED_CONTENT_TYPES)}"
            )
    except (TypeError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"cannot decode {media_type} body: {error}") from error
    return _as_feature_matrix(data)


def _as_feature_matrix(data: np.ndarray) -> np.ndarray:
    if data.size == 0:
        raise ValueError(f"no rows in body; expected rows of {len(FEATURE_NAMES)} features {list(FEATURE_NAMES)}")
    if data.ndim == 1:
        data = data.reshape(1, -1)
    if data.ndim != 2:
        raise ValueError(
            f"expected rows of {len(FEATURE_NAMES)} features {list(FEATURE_NAMES)}, got shape {data.shape}"
        )
    if data.shape[1] != len(FEATURE_NAMES):
        raise ValueError(
            f"expected {len(FEATURE_NAMES)} columns per row in this order: {', '.join(FEATURE_NAMES)}; "
            f"got {data.shape[1]}"
        )
    if not np.isfinite(data).all():
        row, col = np.argwhere(~np.isfinite(data))[0]
        raise ValueError(f"row {row} {FEATURE_NAMES[col]} must be a finite number")
    return data


def predict_fn(data: np.ndarray, model: Any) -> np.ndarray:
    """Predict one price per row: all trees at once for a packed forest (bit-identical to sklearn)."""
    if isinstance(model, PackedForest):
        return model.predict(data)
    if isinstance(model, UnservableModel):
        raise ValueError(f"this model cannot be served: {model.reason}")
    return np.asarray(model.predict(data), dtype=np.float64)


def _choose_accept(accept: str | None) -> str:
    """The first supported type in an Accept header; JSON for none or ``*/*`` (the container default)."""
    for candidate in (accept or "").split(","):
        media_type = _media_type(candidate)
        if media_type in SUPPORTED_CONTENT_TYPES:
            return media_type
        if media_type in ("", "*/*", "application/*"):
            return DEFAULT_ACCEPT
    raise ValueError(f"unsupported accept type {accept!r}; use one of {', '.join(SUPPORTED_CONTENT_TYPES)}")


def output_fn(prediction: np.ndarray, accept: str | None) -> tuple[bytes, str]:
    """Serialise predictions: JSON list of floats (default), one CSV value per line, or a 1-D npy array."""
    media_type = _choose_accept(accept)
    values = np.asarray(prediction, dtype=np.float64).reshape(-1)
    if media_type == JSON:
        return json.dumps(values.tolist()).encode("utf-8"), JSON
    if media_type == CSV:
        return "".join(f"{value!r}\n" for value in values.tolist()).encode("utf-8"), CSV
    buffer = io.BytesIO()
    np.save(buffer, values, allow_pickle=False)
    return buffer.getvalue(), NPY
