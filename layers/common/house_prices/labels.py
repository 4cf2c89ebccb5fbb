"""Late labels (docs/quality.md): what a sale price reported for a prediction looks like, checked once.

A label names its prediction either by ``prediction_id`` (``house_prices.ids``: the id gives the city
and the time of the prediction, so its capture partition and its age) or by ``city`` and the caller's
``house_id`` sent with the prediction. It carries ``sale_price`` (a finite number > 0) and ``sold_at``
(an ISO date, ``YYYY-MM-DD``). The router validates ``POST /feedback`` bodies with ``parse_feedback``;
the quality function reads bulk files (CSV or JSON lines under ``labels/``) with ``parse_label_file``
and the router's queue messages with ``parse_label_message``. Pure: no clock, no I/O (``now`` is passed).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any, NamedTuple

from house_prices.errors import FieldProblem, InvalidInput, PayloadTooLarge
from house_prices.feedback_api import (
    CITY,
    DEFAULT_MAX_LABELS_PER_REQUEST,
    LABELS,
    MAX_SALE_PRICE,
    PREDICTION_ID,
    SALE_PRICE,
    SOLD_AT,
)
from house_prices.ids import parse_prediction_id
from house_prices.naming import CITY_PATTERN, is_valid_city
from house_prices.schema import HOUSE_ID, house_id_problem

DEFAULT_RETENTION_DAYS = 365
# sold_at may be "today" in any time zone: up to one day after the UTC date of `now`.
FUTURE_SLACK = timedelta(days=1)
MESSAGE_FORMAT = 1
_BY_ID = frozenset({PREDICTION_ID, SALE_PRICE, SOLD_AT})
_BY_HOUSE = frozenset({CITY, HOUSE_ID, SALE_PRICE, SOLD_AT})


class Label(NamedTuple):
    """One validated label. ``prediction_id`` or (``city``, ``house_id``) names the prediction."""

    city: str
    sale_price: float
    sold_at: str  # ISO date
    prediction_id: str | None = None
    house_id: str | None = None

    @property
    def key(self) -> str:
        """The idempotency key: a label is counted once per key (``id#…`` or ``house#city#house_id``)."""
        return f"id#{self.prediction_id}" if self.prediction_id else f"house#{self.city}#{self.house_id}"

    def as_dict(self) -> dict[str, Any]:
        named: dict[str, Any] = (
            {PREDICTION_ID: self.prediction_id} if self.prediction_id else {CITY: self.city, HOUSE_ID: self.house_id}
        )
        return {**named, SALE_PRICE: self.sale_price, SOLD_AT: self.sold_at}


def _city_problem(value: Any) -> str | None:
    if not isinstance(value, str):
        return f"must be a string, got {type(value).__name__}"
    if not is_valid_city(value):
        return f"must match ^{CITY_PATTERN}$ (letters, digits, '_' or '-')"
    return None


def _price_problem(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"must be a number, got {type(value).__name__}"
    try:
        number = float(value)
    except OverflowError:
        return "must be a finite number"
    if not math.isfinite(number) or number <= 0:
        return "must be a finite number > 0"
    if number > MAX_SALE_PRICE:
        return f"must be at most {MAX_SALE_PRICE:.0f}"
    return None


def _sold_at(value: Any, now: datetime) -> tuple[str | None, str | None]:
    if not isinstance(value, str):
        return None, f"must be an ISO date (YYYY-MM-DD) string, got {type(value).__name__}"
    try:
        day = date.fromisoformat(value) if len(value) == 10 else None
    except ValueError:
        day = None
    if day is None:
        shown = value if len(value) <= 40 else value[:37] + "..."
        return None, f"must be an ISO date (YYYY-MM-DD), got {shown!r}"
    if day > (now + FUTURE_SLACK).date():
        return None, "must not be in the future"
    return day.isoformat(), None


def parse_label(candidate: Any, now: datetime, retention_days: int = DEFAULT_RETENTION_DAYS, path: str = "") -> Label:
    """One label object → ``Label``; ``InvalidInput`` naming every bad field (prefixed by ``path``)."""
    label, problems = _parse_label(candidate, now, retention_days, path)
    if label is None:
        raise InvalidInput(problems, message="Invalid label")
    return label


def _parse_label(
    candidate: Any, now: datetime, retention_days: int, path: str
) -> tuple[Label | None, list[FieldProblem]]:
    def at(name: str) -> str:
        return f"{path}.{name}" if path else name

    if not isinstance(candidate, Mapping):
        return None, [FieldProblem(path or "body", f"must be a JSON object, got {type(candidate).__name__}")]
    keys = set(candidate)
    problems: list[FieldProblem] = []
    by_id = PREDICTION_ID in keys
    allowed = _BY_ID if by_id else _BY_HOUSE
    for name in sorted(k for k in keys if k not in allowed):
        shown = name if len(str(name)) <= 64 else str(name)[:61] + "..."
        problems.append(
            FieldProblem(
                at(str(shown)),
                "is not a field of a label" + (" that names a prediction_id" if by_id and name in _BY_HOUSE else ""),
            )
        )
    for name in sorted(allowed - keys):
        problems.append(
            FieldProblem(
                at(name),
                "is required" + ("" if by_id else f" (or send {PREDICTION_ID} instead of {CITY} and {HOUSE_ID})"),
            )
        )
    city = house_id = prediction_id = None
    if by_id:
        try:
            parts = parse_prediction_id(candidate[PREDICTION_ID], at(PREDICTION_ID))
        except InvalidInput as error:
            problems.extend(error.problems)
        else:
            prediction_id, city = candidate[PREDICTION_ID], parts.city
            if now - parts.timestamp > timedelta(days=retention_days):
                problems.append(
                    FieldProblem(at(PREDICTION_ID), f"is older than the {retention_days}-day retention window")
                )
            elif parts.timestamp - now > FUTURE_SLACK:
                problems.append(FieldProblem(at(PREDICTION_ID), "names a time in the future: not an id the API made"))
    else:
        if CITY in candidate and (problem := _city_problem(candidate[CITY])):
            problems.append(FieldProblem(at(CITY), problem))
        else:
            city = candidate.get(CITY)
        if HOUSE_ID in candidate and (problem := house_id_problem(candidate[HOUSE_ID])):
            problems.append(FieldProblem(at(HOUSE_ID), problem))
        else:
            house_id = candidate.get(HOUSE_ID)
    if SALE_PRICE in candidate and (problem := _price_problem(candidate[SALE_PRICE])):
        problems.append(FieldProblem(at(SALE_PRICE), problem))
    sold_at = None
    if SOLD_AT in candidate:
        sold_at, problem = _sold_at(candidate[SOLD_AT], now)
        if problem:
            problems.append(FieldProblem(at(SOLD_AT), problem))
    if problems:
        return None, problems
    if city is None or sold_at is None:  # unreachable: each is set unless a problem was recorded
        return None, [FieldProblem(path or "body", "is not a label")]
    return Label(city, float(candidate[SALE_PRICE]), sold_at, prediction_id, house_id), []


def parse_feedback(
    payload: Any,
    now: datetime,
    retention_days: int = DEFAULT_RETENTION_DAYS,
    max_labels: int = DEFAULT_MAX_LABELS_PER_REQUEST,
) -> list[Label]:
    """A ``POST /feedback`` body (one label, or ``{"labels": [...]}``) → labels; all or nothing.

    ``InvalidInput`` names every bad field (``labels[3].sale_price``); ``PayloadTooLarge`` beyond
    ``max_labels``. A body with a problem in one label is refused whole: the caller fixes and resends,
    and idempotency per prediction makes resending the good ones harmless.
    """
    if isinstance(payload, Mapping) and LABELS in payload:
        if len(payload) != 1:
            extra = sorted(str(k) for k in payload if k != LABELS)[:5]
            raise InvalidInput([FieldProblem(name, "is not a field of a labels body") for name in extra])
        items = payload[LABELS]
        if not isinstance(items, list):
            raise InvalidInput([FieldProblem(LABELS, f"must be a JSON array, got {type(items).__name__}")])
        if not items:
            raise InvalidInput([FieldProblem(LABELS, "must hold at least one label")])
        if len(items) > max_labels:
            raise PayloadTooLarge(LABELS, f"must hold at most {max_labels} labels, got {len(items)}")
        labels: list[Label] = []
        problems: list[FieldProblem] = []
        for index, item in enumerate(items):
            label, found = _parse_label(item, now, retention_days, f"{LABELS}[{index}]")
            problems.extend(found)
            if label is not None:
                labels.append(label)
        if problems:
            raise InvalidInput(problems, message="Invalid labels")
        return labels
    return [parse_label(payload, now, retention_days)]


def label_message(labels: Sequence[Label], received_at: datetime) -> str:
    """The queue message of one request's labels (SQS: at most 256 KiB; 1,000 labels take ~130 KB)."""
    body = {"format": MESSAGE_FORMAT, "received_at": _iso(received_at), LABELS: [label.as_dict() for label in labels]}
    return json.dumps(body, separators=(",", ":"))


def parse_label_message(text: str, now: datetime, retention_days: int = DEFAULT_RETENTION_DAYS) -> list[Label]:
    """A queue message written by ``label_message`` → labels (validated again: the queue is an input too)."""
    return read_label_message(text, now, retention_days)[1]


def read_label_message(
    text: str, now: datetime, retention_days: int = DEFAULT_RETENTION_DAYS
) -> tuple[datetime, list[Label]]:
    """A queue message → (when the labels were received, the labels). A ``received_at`` that is missing,
    unreadable or later than ``now`` reads as ``now`` (it only bounds how long a label may wait)."""
    try:
        body = json.loads(text)
    except ValueError as error:
        raise InvalidInput([FieldProblem("message", f"is not JSON: {error}")]) from None
    if not isinstance(body, Mapping) or body.get("format") != MESSAGE_FORMAT:
        raise InvalidInput([FieldProblem("message.format", f"must be {MESSAGE_FORMAT}")])
    labels = parse_feedback({LABELS: body.get(LABELS)}, now, retention_days, max_labels=10_000)
    return min(_received_at(body.get("received_at")) or now, now), labels


def _received_at(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


class FileRow(NamedTuple):
    """One row of a bulk label file: a label, or the problems that kept it out (reported, counted)."""

    line: int
    label: Label | None
    problems: tuple[FieldProblem, ...] = ()


def parse_label_file(
    key: str, body: bytes, now: datetime, retention_days: int = DEFAULT_RETENTION_DAYS
) -> Iterator[FileRow]:
    """A bulk label file under ``labels/`` → one ``FileRow`` per record: ``.csv`` (a header row naming
    the fields) or JSON lines (any other name). ``.gz`` names are gunzipped first. A bad row never stops
    the file: it is yielded with its problems (the field is ``line N: …``)."""
    if key.endswith(".gz"):
        import gzip

        body = gzip.decompress(body)
        key = key[:-3]
    text = body.decode("utf-8-sig", errors="replace")
    if key.lower().endswith(".csv"):
        yield from _csv_rows(text, now, retention_days)
    else:
        yield from _jsonl_rows(text, now, retention_days)


def _row(line: int, candidate: Any, now: datetime, retention_days: int) -> FileRow:
    label, problems = _parse_label(candidate, now, retention_days, f"line {line}")
    return FileRow(line, label, tuple(problems))


def _jsonl_rows(text: str, now: datetime, retention_days: int) -> Iterator[FileRow]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            candidate = json.loads(line)
        except ValueError as error:
            yield FileRow(number, None, (FieldProblem(f"line {number}", f"is not JSON: {error}"),))
            continue
        yield _row(number, candidate, now, retention_days)


def _csv_rows(text: str, now: datetime, retention_days: int) -> Iterator[FileRow]:
    reader = csv.DictReader(io.StringIO(text))
    for row in reader:
        number = reader.line_num
        if None in row:
            yield FileRow(number, None, (FieldProblem(f"line {number}", "has more cells than the header"),))
            continue
        candidate: dict[str, Any] = {k: v for k, v in row.items() if v not in (None, "")}
        if SALE_PRICE in candidate:
            # A cell that is no number stays a string, which the label's own check reports.
            with contextlib.suppress(ValueError):
                candidate[SALE_PRICE] = float(candidate[SALE_PRICE])
        yield _row(number, candidate, now, retention_days)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
