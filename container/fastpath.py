"""The built-in program's hot path: one CSV row in, a JSON price out, without the generic hook machinery.

The image's default program, ``training/inference.py``, decodes a ``text/csv`` body with ``np.loadtxt``,
checks the matrix, predicts with the packed forest and encodes ``application/json``; run through
``endpoint.program.InferenceProgram`` that is ~35 numpy and Python calls around the walk of the forest,
as much CPU as the walk itself. For the request nearly every invocation is — ``Content-Type`` exactly
``text/csv``, the answer type exactly ``application/json``, one row of plain decimal numbers, a packed
forest — this does the same steps directly: the row's tokens become floats as ``np.loadtxt`` reads them
(both round a decimal string to the nearest double), float32 as ``PackedForest.predict`` casts them,
``PackedForest.predict_one`` walks the forest with the same bits, and the price is written as
``json.dumps`` writes a float.

Anything else returns None and takes the generic path, which gives the answer or the error it always
did: another program, type or accept; several rows, a header, spaces, ``nan``, ``1_000``, a value that
is not finite as a double or as a float32; a model that is not a ``PackedForest`` (an unservable one,
an opt-in pickle). The path only exists for the program it mirrors: it is built only when the default
program's hooks are, source for source, the ones it was checked against (``MIRRORED_HOOKS_SHA256``);
after any edit to them it stays off until someone re-checks it and updates the digest (a unit test
fails meanwhile, saying so).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import math
import re
import sys
from types import ModuleType
from typing import Any

import numpy as np

from endpoint.program import InferenceProgram, Prediction
from packed_forest import PackedForest

log = logging.getLogger("container.fastpath")

CSV = "text/csv"
JSON = "application/json"
# What training/inference.py runs for a CSV request and a JSON answer, and the digest of their source
# when this path was checked against them.
MIRRORED_HOOKS = ("_media_type", "_text", "input_fn", "_as_feature_matrix", "predict_fn", "_choose_accept", "output_fn")
MIRRORED_HOOKS_SHA256 = "f8b5206ca076f5d556e1313f7d6b6ee1743a8503f76809c715327e4d92e563f9"
# A plain decimal number, as np.loadtxt and float() both read it to the same double. Everything else
# (signs other than '-', spaces, '_', hex, inf, nan) is left to the generic path.
_NUMBER = rb"(-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?)"
# Below float32's largest finite value (3.4028235e38) with room to spare: a larger value might round
# to infinity as float32, which the generic path refuses with its own message.
_FLOAT32_SAFE = 1e38


def hooks_digest(module: ModuleType) -> str | None:
    """sha256 of the mirrored hooks' source, in order; None if one is missing or has no source."""
    digest = hashlib.sha256()
    for name in MIRRORED_HOOKS:
        hook = getattr(module, name, None)
        try:
            digest.update(inspect.getsource(hook).encode())  # type: ignore[arg-type]
        except (TypeError, OSError):
            return None
    return digest.hexdigest()


class CsvJsonFastPath:
    """``invoke(model, body)``: the built-in program's answer to a one-row CSV body, or None (use the hooks)."""

    def __init__(self, program: InferenceProgram, module: ModuleType) -> None:
        self.program = program
        self.n_features = len(module.FEATURE_NAMES)
        # One row: the fields, then optional line ends (the generic path strips surrounding whitespace).
        self._row = re.compile(rb",".join([_NUMBER] * self.n_features) + rb"[\r\n]*")

    @classmethod
    def for_program(cls, program: InferenceProgram) -> CsvJsonFastPath | None:
        """The path for ``program`` when it is the one mirrored here, else None."""
        module = sys.modules.get(getattr(program.input_fn.func, "__module__", ""))
        if module is None or program.transform_fn is not None:
            return None
        if hooks_digest(module) != MIRRORED_HOOKS_SHA256:
            log.info("the default program's hooks differ from the ones the CSV/JSON fast path mirrors: it is off")
            return None
        hooks = ("input_fn", "predict_fn", "output_fn")
        own = all(getattr(program, hook).func is getattr(module, hook) for hook in hooks)
        # The globals those hooks read, as this path assumes them.
        constants = (
            getattr(module, "CSV", None) == CSV
            and getattr(module, "JSON", None) == JSON
            and JSON in getattr(module, "SUPPORTED_CONTENT_TYPES", ())
            and getattr(module, "PackedForest", None) is PackedForest
        )
        return cls(program, module) if own and constants else None

    def invoke(self, model: Any, body: bytes) -> Prediction | None:
        if type(model) is not PackedForest or model.n_features != self.n_features:
            return None
        match = self._row.fullmatch(body)
        if match is None:
            return None
        values = [float(token) for token in match.groups()]
        if not (-_FLOAT32_SAFE < min(values) and max(values) < _FLOAT32_SAFE):  # also false for inf
            return None
        price = model.predict_one(np.array(values, dtype=np.float32))
        # json.dumps([price]) is "[" + repr(price) + "]" for a finite float; keep json's own words otherwise.
        text = f"[{price!r}]" if math.isfinite(price) else json.dumps([price])
        return Prediction(text.encode(), JSON)
