"""The rules a ``model_name`` must follow, in the body of ``POST /models`` and in every ``/models/{name}`` path.

The contract calls it an opaque identifier chosen by SageMaker. It is only ever a key here (never a
path), so the rules are about being addressable and loggable: 1-1024 printable characters, not
starting with whitespace, and no ``/`` (a name with one could not be named in ``/models/{name}``).
"""

from __future__ import annotations

from container.errors import BadRequest

MAX_NAME_CHARS = 1024


def validate_model_name(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise BadRequest("model_name must be a non-empty string")
    if len(value) > MAX_NAME_CHARS:
        raise BadRequest(f"model_name is {len(value)} characters long; at most {MAX_NAME_CHARS} are accepted")
    if not value.isprintable() or value[0].isspace():
        raise BadRequest("model_name must be printable characters (no control characters) and not start with a space")
    if "/" in value:
        raise BadRequest("model_name must not contain '/'")
    return value
