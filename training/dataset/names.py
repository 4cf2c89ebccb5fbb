"""From a file's segment values to city names the whole system accepts (``naming.CITY_PATTERN``).

The rule is one pure function, so a value always gets the same name, in every run and on every
machine, and the name can be recomputed from the file alone.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Iterable

from house_prices import naming
from training.dataset.errors import DatasetError

MAX_CITY_LENGTH = 64
NUMERIC_PREFIX = "S_"
NAME_RULE = (
    "a valid city name is kept as is; otherwise the value is NFKD-normalised and its accents dropped, each run of "
    "characters other than A-Z a-z 0-9 _ - becomes '_', leading and trailing '_' and '-' are stripped, 'S_' is "
    "prefixed unless it starts with a letter, and it is cut to 64 characters; nothing left means no name"
)

_OUTSIDE = re.compile(r"[^A-Za-z0-9_-]+")
_LETTERS = frozenset(string.ascii_letters)


def city_name(value: str) -> str | None:
    """The city name of a segment value, or None when the rule leaves nothing.

    1. A value that already matches ``naming.CITY_PATTERN`` is its own name (so the rule is idempotent).
    2. NFKD-normalise and drop combining marks: "São Paulo" → "Sao Paulo", "ﬁ" → "fi".
    3. Replace each run of characters outside ``[A-Za-z0-9_-]`` (spaces, punctuation, other scripts) by "_".
    4. Strip leading and trailing "_" and "-"; if nothing is left, there is no name (the segment is skipped).
    5. Prefix "S_" unless the result starts with an ASCII letter: "98178" → "S_98178".
    6. Keep the first 64 characters.

    Every result matches ``naming.CITY_PATTERN``. Distinct values can share a name ("New York" and
    "New_York"); ``assign_city_names`` refuses that rather than merge two segments.
    """
    if naming.is_valid_city(value):
        return value
    decomposed = unicodedata.normalize("NFKD", value)
    without_marks = "".join(char for char in decomposed if not unicodedata.combining(char))
    core = _OUTSIDE.sub("_", without_marks).strip("_-")
    if not core:
        return None
    if core[0] not in _LETTERS:
        core = NUMERIC_PREFIX + core
    return core[:MAX_CITY_LENGTH]


def assign_city_names(values: Iterable[str]) -> dict[str, str | None]:
    """Each distinct value's city name; two values sharing one name is a DatasetError naming both."""
    names: dict[str, str | None] = {}
    owners: dict[str, list[str]] = {}
    for value in values:
        if value in names:
            continue
        name = city_name(value)
        names[value] = name
        if name is not None:
            owners.setdefault(name, []).append(value)
    collisions = sorted((name, sorted(raw)) for name, raw in owners.items() if len(raw) > 1)
    if collisions:
        shown = "; ".join(f"{' and '.join(repr(v) for v in raw)} → {name!r}" for name, raw in collisions[:10])
        more = f" (and {len(collisions) - 10} more)" if len(collisions) > 10 else ""
        raise DatasetError(
            f"{len(collisions)} city name(s) would be shared by different segment values: {shown}{more}. "
            f"Make these values distinct in the file, or restrict the run with --segments. Rule: {NAME_RULE}."
        )
    return names
