"""House features: names, order, types and valid ranges — the only home of these facts.

The order of ``FEATURES`` is the CSV column order for training files (after ``PRICE``) and for
InvokeEndpoint bodies. Pure Python on purpose: the Lambda layer must stay free of numpy.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from house_prices.errors import FieldProblem, InvalidInput, PayloadTooLarge

TARGET = "PRICE"
MAX_YEAR = 2019
HOUSES_PER_CITY = 1000

NOTEBOOK_CITIES: tuple[str, ...] = (
    "NewYork_NY",
    "LosAngeles_CA",
    "Chicago_IL",
    "Houston_TX",
    "Dallas_TX",
    "Phoenix_AZ",
    "Philadelphia_PA",
    "SanAntonio_TX",
    "SanDiego_CA",
    "SanFrancisco_CA",
)


@dataclass(frozen=True)
class Feature:
    name: str
    minimum: float
    maximum: float
    integer: bool = False
    # Bathrooms come in halves; any other step would be a value the model never saw.
    step: float | None = None
    description: str = ""

    def problem_with(self, value: Any) -> str | None:
        """Return why ``value`` is not acceptable for this feature, or None if it is.

        The range is checked before any arithmetic: comparing a huge int or float with the bounds
        is exact and cannot overflow, while ``int(1e308 / 0.5)`` would.
        """
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"must be a number, got {type(value).__name__}"
        if isinstance(value, float) and not math.isfinite(value):
            return "must be a finite number"
        if not (self.minimum <= value <= self.maximum):
            return f"must be between {_fmt(self.minimum)} and {_fmt(self.maximum)}, got {_short(value)}"
        if self.integer and value != int(value):
            return f"must be a whole number, got {value}"
        if self.step is not None and (value / self.step) != int(value / self.step):
            return f"must be a multiple of {self.step}, got {value}"
        return None


FEATURES: tuple[Feature, ...] = (
    Feature("YEAR_BUILT", 1800, 2100, integer=True, description="year the house was built"),
    Feature("SQUARE_FEET", 100, 50_000, integer=True, description="living area in square feet"),
    Feature("NUM_BEDROOMS", 0, 20, integer=True, description="number of bedrooms"),
    Feature("NUM_BATHROOMS", 0, 20, step=0.5, description="bathrooms, in halves"),
    Feature("LOT_ACRES", 0, 100, description="lot size in acres"),
    Feature("GARAGE_SPACES", 0, 10, integer=True, description="garage spaces"),
)
FEATURE_NAMES: tuple[str, ...] = tuple(feature.name for feature in FEATURES)
# One plausible house, for examples printed by tools and docs.
EXAMPLE_HOUSE: dict[str, float] = dict(zip(FEATURE_NAMES, (2005, 3100, 4, 2.5, 1.1, 2)))
CSV_COLUMNS: tuple[str, ...] = (TARGET, *FEATURE_NAMES)

# A caller's own id for a house, optional, echoed back with its price and captured with it (so a sale
# price can later be sent with the city and this id). Never a feature: it never reaches the model.
# Printable US-ASCII without a leading or trailing space, so "A1" and "A1 " can never be two houses.
HOUSE_ID = "house_id"
HOUSE_ID_MAX_LENGTH = 64
HOUSE_ID_PATTERN = r"[!-~](?:[ -~]{0,62}[!-~])?"
_HOUSE_ID = re.compile(HOUSE_ID_PATTERN)

# The SageMaker Runtime InvokeEndpoint payload limit.
MAX_ENDPOINT_BODY_BYTES = 6_291_456
# Worst-case CSV bytes for one house row, so a batch limit can be proved to fit the endpoint body.
_MAX_ROW_BYTES = sum(len(f"{-f.maximum:.6f}") for f in FEATURES) + len(FEATURES)
DEFAULT_MAX_HOUSES_PER_REQUEST = 1000
assert DEFAULT_MAX_HOUSES_PER_REQUEST * _MAX_ROW_BYTES < MAX_ENDPOINT_BODY_BYTES


def _field_label(name: object) -> str:
    """A printable, bounded label for a client-supplied key (it is echoed back in errors)."""
    text = str(name)
    if not text:
        return "<empty key>"
    return text if len(text) <= 64 else text[:61] + "..."


def _short(value: float) -> str:
    """Echo a client's number without letting a 400-digit integer bloat the error."""
    text = repr(value)
    return text if len(text) <= 32 else text[:29] + "..."


def _fmt(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else str(number)


House = tuple[float, ...]


@dataclass(frozen=True)
class Batch:
    """A request's houses: feature rows for the model, and each house's ``house_id`` (None if not sent)."""

    rows: list[House]
    house_ids: list[str | None]


def house_id_problem(value: Any) -> str | None:
    """Why ``value`` is not a valid ``house_id``, or None if it is."""
    if not isinstance(value, str):
        return f"must be a string, got {type(value).__name__}"
    if not 1 <= len(value) <= HOUSE_ID_MAX_LENGTH:
        return f"must be 1 to {HOUSE_ID_MAX_LENGTH} characters, got {len(value)}"
    if not _HOUSE_ID.fullmatch(value):
        return "must be printable US-ASCII characters, without a leading or trailing space"
    return None


def parse_house(candidate: Any, path: str = "") -> House:
    """Validate one house mapping and return its values in feature order."""
    return _parse_house(candidate, path)[0]


def _parse_house(candidate: Any, path: str) -> tuple[House, str | None]:
    prefix = f"{path}." if path else ""
    if not isinstance(candidate, Mapping):
        raise InvalidInput([FieldProblem(path or "body", "must be a JSON object of house features")])
    problems: list[FieldProblem] = []
    for unknown in sorted(set(candidate) - set(FEATURE_NAMES) - {HOUSE_ID}, key=str):
        problems.append(FieldProblem(f"{prefix}{_field_label(unknown)}", "is not a known feature"))
    house_id = candidate.get(HOUSE_ID)
    if HOUSE_ID in candidate:
        id_problem = house_id_problem(house_id)
        if id_problem:
            problems.append(FieldProblem(f"{prefix}{HOUSE_ID}", id_problem))
    values: list[float] = []
    for feature in FEATURES:
        if feature.name not in candidate:
            problems.append(FieldProblem(f"{prefix}{feature.name}", "is required"))
            continue
        value = candidate[feature.name]
        problem = feature.problem_with(value)
        if problem:
            problems.append(FieldProblem(f"{prefix}{feature.name}", problem))
        else:
            values.append(int(value) if feature.integer else float(value))
    if problems:
        raise InvalidInput(problems)
    return tuple(values), house_id


def parse_houses(payload: Any, max_houses: int = DEFAULT_MAX_HOUSES_PER_REQUEST) -> list[House]:
    """Accept one house object or ``{"houses": [...]}`` and return rows in feature order."""
    return parse_batch(payload, max_houses).rows


def parse_batch(payload: Any, max_houses: int = DEFAULT_MAX_HOUSES_PER_REQUEST) -> Batch:
    """Accept one house object or ``{"houses": [...]}``: rows in feature order and each house's id.

    Every problem in every house is reported at once, each naming its field path.
    """
    if isinstance(payload, Mapping) and "houses" in payload:
        houses = payload["houses"]
        extra = sorted(set(payload) - {"houses"}, key=str)
        if extra:
            raise InvalidInput([FieldProblem(_field_label(name), "is not allowed next to 'houses'") for name in extra])
        if not isinstance(houses, list):
            raise InvalidInput([FieldProblem("houses", "must be a list of house objects")])
        if not houses:
            raise InvalidInput([FieldProblem("houses", "must contain at least one house")])
        if len(houses) > max_houses:
            raise PayloadTooLarge("houses", f"at most {max_houses} houses per request, got {len(houses)}")
        rows: list[House] = []
        house_ids: list[str | None] = []
        problems: list[FieldProblem] = []
        for index, house in enumerate(houses):
            try:
                row, house_id = _parse_house(house, f"houses[{index}]")
            except InvalidInput as invalid:
                problems.extend(invalid.problems)
                continue
            rows.append(row)
            house_ids.append(house_id)
        if problems:
            raise InvalidInput(problems)
        return Batch(rows, house_ids)
    row, house_id = _parse_house(payload, "")
    return Batch([row], [house_id])


def rows_to_csv(rows: Sequence[Sequence[float]]) -> str:
    """Serialise rows as headerless CSV in feature order (the InvokeEndpoint body)."""
    return "".join(",".join(repr(value) for value in row) + "\n" for row in rows)


def house_from_row(row: Sequence[float]) -> dict[str, float]:
    """The API's JSON object for a row in feature order (e.g. a numpy row), with plain int/float values.

    Integer features come back as ``int`` so the object serialises as a client would send it.
    """
    if len(row) != len(FEATURES):
        raise ValueError(f"expected {len(FEATURES)} values, got {len(row)}")
    # The length is checked above because py3.9 in SageMaker sklearn 1.2-1 has no zip(strict=).
    return {f.name: int(value) if f.integer else float(value) for f, value in zip(FEATURES, row)}


def describe_features() -> list[dict[str, Any]]:
    """Feature documentation for API responses and docs."""
    return [
        {
            "name": f.name,
            "type": "integer" if f.integer else "number",
            "minimum": f.minimum,
            "maximum": f.maximum,
            **({"multiple_of": f.step} if f.step else {}),
            "description": f.description,
        }
        for f in FEATURES
    ]
