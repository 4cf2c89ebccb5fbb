"""Captured predictions: the record format, written by the router and read by whatever aggregates them.

One **capture line** is one JSON object on one line, holding the sampled predictions of one request
(split over several lines only when one would exceed ``MAX_LINE_BYTES``)::

    {"capture": "predictions", "format": 1, "time": "2026-12-07T02:43:25.571Z", "city": "Chicago_IL",
     "version": "20261125T040000Z-1a2b3c4d", "request_id": "Ab1CdEfGhIjKlM=",
     "predictions": [{"prediction_id": "01M9764XR3HWF8CHSGVHCNWQHV-Chicago_IL", "price": 552316.4,
                      "features": {"YEAR_BUILT": 2005, "SQUARE_FEET": 3100, "NUM_BEDROOMS": 4,
                                   "NUM_BATHROOMS": 2.5, "LOT_ACRES": 1.1, "GARAGE_SPACES": 2},
                      "house_id": "listing-1234"}]}

* ``capture``/``format``: the fixed marker the CloudWatch Logs subscription filter matches
  (``FILTER_PATTERN``), and the version of this layout (readers refuse formats they do not know);
* ``time``: UTC, milliseconds, ``Z``; it is the millisecond of the first ``prediction_id`` of the
  request, and its date is the capture partition (``naming.KeyLayout.capture_prefix``), so a label
  carrying only a prediction id finds its record under ``city=…/date=…`` without any index;
* ``city``, ``version``: the model that priced every house of the line (one request, one model);
* ``request_id``: API Gateway's request id (the ``apigw-requestid`` header, the logs' ``correlation_id``);
* per prediction: ``prediction_id``, ``price``, ``features`` (the validated values, by name, as the
  model got them) and ``house_id`` only if the caller sent one.

Optional, added by rollouts (docs/rollouts.md, "Routing"); absent on older lines and outside
a rollout, so format 1 is unchanged for every reader:

* ``rollout``: ``{"candidate": version, "mode": "shadow"|"canary", "arm": "live"|"candidate",
  "sampled": bool}`` (``rollout_tag``) on every line written while the city has a rollout: ``arm`` is
  the side whose model priced the line's houses, ``sampled`` says the houses fell under the rollout's
  weight (canary: routed to the candidate; shadow: to be scored by the candidate off the response path);
* ``latency_ms``: the InvokeEndpoint call that priced the line's houses (every line of that call
  carries it: count calls by ``request_id`` and ``arm``);
* ``candidate_error``: the candidate's failure (an error class name) for houses routed to the
  candidate but priced by the live model instead (their ``arm`` is ``live``, ``sampled`` true).

Delivered to S3 by Firehose as gzipped JSON lines, one capture line per line (``read_capture_object``).
Standard library only: the router, a future aggregator function and the operator CLI all use it.
"""

from __future__ import annotations

import gzip
import json
import time
import zlib
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

from house_prices.ids import ulid_timestamp_ms
from house_prices.schema import FEATURE_NAMES

MARKER_FIELD = "capture"
MARKER = "predictions"
FORMAT = 1
# The template's subscription filter pattern: only capture lines leave the router's log group.
FILTER_PATTERN = f'{{ $.{MARKER_FIELD} = "{MARKER}" }}'
# CloudWatch Logs took at most 256 KiB per event (PutLogEvents; 26 bytes of it are overhead); a line
# stays well below so that Lambda never cuts one. A 1,000-house request is two or three lines.
MAX_LINE_BYTES = 200_000
# json.dumps builds a new encoder whenever an argument differs from its defaults; this one is built once.
_ENCODER = json.JSONEncoder(separators=(",", ":"))
# A search (str.rfind) reads a text ~60× faster than parse_capture_line parses it: after this many searches'
# worth of a partition, ``CaptureLines`` parses it whole instead (its cost then bounded by ~1.25 full parses).
_SCANS_BEFORE_FULL_PARSE = 16
# What json.loads(str) calls, without its per-call checks (readers parse a million lines).
_DECODE = json.JSONDecoder().decode
# str.splitlines() breaks lines at these too: a text holding any is re-joined with "\n" before it is
# searched, so that its "\n" lines are exactly the lines a full read sees (``CaptureLines``).
# (Nine substring tests: ~2 µs on a 5 kB text, where a regular expression's character class took 100×.)
_OTHER_LINE_BREAKS = ("\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029")


class CapturedPrediction(NamedTuple):
    """One prediction as read back from a capture line (a NamedTuple: 1 ms less of the router's cold start)."""

    prediction_id: str
    city: str
    version: str
    time: str
    request_id: str
    features: dict[str, float]
    price: float
    house_id: str | None = None
    # Rollout tags of the line (None on lines written outside a rollout or before rollouts existed).
    rollout: dict[str, Any] | None = None
    latency_ms: float | None = None
    candidate_error: str | None = None


def capture_time(prediction_id: str) -> str:
    """``YYYY-MM-DDTHH:MM:SS.mmmZ`` of a prediction id's (or ULID's) millisecond."""
    milliseconds = ulid_timestamp_ms(prediction_id[:26])
    seconds, millis = divmod(milliseconds, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


def rollout_tag(candidate: str, mode: str, arm: str, sampled: bool) -> dict[str, Any]:
    """A line's ``rollout`` object (the one place its field names are spelled)."""
    return {"candidate": candidate, "mode": mode, "arm": arm, "sampled": sampled}


def capture_lines(
    *,
    city: str,
    version: str,
    request_id: str,
    prediction_ids: Sequence[str],
    rows: Sequence[Sequence[float]],
    prices: Sequence[float],
    house_ids: Sequence[str | None],
    rollout: dict[str, Any] | None = None,
    latency_ms: float | None = None,
    candidate_error: str | None = None,
) -> list[str]:
    """The capture line(s) of one request's predictions (all sequences in house order, equal lengths).

    ``rollout``, ``latency_ms`` and ``candidate_error`` go on the line only when given.
    """
    count = len(prediction_ids)
    if not count or not len(rows) == len(prices) == len(house_ids) == count:
        raise ValueError(
            f"one id, row, price and house_id per prediction: {count}, {len(rows)}, {len(prices)}, {len(house_ids)}"
        )
    head = {
        MARKER_FIELD: MARKER,
        "format": FORMAT,
        "time": capture_time(prediction_ids[0]),
        "city": city,
        "version": version,
        "request_id": request_id,
    }
    if rollout is not None:
        head["rollout"] = rollout
    if latency_ms is not None:
        head["latency_ms"] = latency_ms
    if candidate_error is not None:
        head["candidate_error"] = candidate_error
    predictions: list[dict[str, Any]] = []
    for prediction_id, row, price, house_id in zip(prediction_ids, rows, prices, house_ids, strict=True):
        prediction: dict[str, Any] = {
            "prediction_id": prediction_id,
            "price": price,
            "features": dict(zip(FEATURE_NAMES, row, strict=True)),
        }
        if house_id is not None:
            prediction["house_id"] = house_id
        predictions.append(prediction)
    return _bounded_lines(head, predictions)


def _bounded_lines(head: dict[str, Any], predictions: list[dict[str, Any]]) -> list[str]:
    # json.dumps escapes every non-ASCII character, so characters are bytes.
    line = _ENCODER.encode({**head, "predictions": predictions})
    if len(line) <= MAX_LINE_BYTES or len(predictions) == 1:
        return [line]
    half = len(predictions) // 2
    return _bounded_lines(head, predictions[:half]) + _bounded_lines(head, predictions[half:])


def parse_capture_line(text: str) -> list[CapturedPrediction]:
    """The predictions of one capture line; ValueError for anything that is not one (of a known format)."""
    try:
        record = _DECODE(text) if type(text) is str else json.loads(text)
    except ValueError as error:
        raise ValueError(f"not JSON: {error}") from error
    if not isinstance(record, dict) or record.get(MARKER_FIELD) != MARKER:
        raise ValueError(f"not a capture line (no {MARKER_FIELD}={MARKER!r})")
    if record.get("format") != FORMAT:
        raise ValueError(f"capture format {record.get('format')!r} is not {FORMAT}")
    try:
        # The quality function reads every captured prediction once or twice: no per-prediction dict of
        # keywords, and a line's features object is kept as parsed when it already holds exactly the
        # model's features in order (the router writes them so), else it is rebuilt in that order.
        city = str(record["city"])
        version = str(record["version"])
        made = str(record["time"])
        request_id = str(record["request_id"])
        tags = _rollout_tags(record)
        rollout, latency_ms, candidate_error = tags.get("rollout"), tags.get("latency_ms"), tags.get("candidate_error")
        predictions = []
        for item in record["predictions"]:
            prediction_id = str(item["prediction_id"])
            features = item["features"]
            if type(features) is not dict or tuple(features) != FEATURE_NAMES:
                features = {name: features[name] for name in FEATURE_NAMES}
            predictions.append(
                CapturedPrediction(
                    prediction_id,
                    city,
                    version,
                    made,
                    request_id,
                    features,
                    float(item["price"]),
                    item.get("house_id"),
                    rollout,
                    latency_ms,
                    candidate_error,
                )
            )
        return predictions
    except (KeyError, TypeError) as error:
        raise ValueError(f"incomplete capture line: missing {error}") from error


def _rollout_tags(record: dict[str, Any]) -> dict[str, Any]:
    """The optional rollout fields of a line, type-checked; {} on lines without them (old or no rollout)."""
    tags: dict[str, Any] = {}
    rollout = record.get("rollout")
    if rollout is not None:
        if not isinstance(rollout, dict):
            raise ValueError("rollout must be an object")
        tags["rollout"] = rollout
    latency = record.get("latency_ms")
    if latency is not None:
        if isinstance(latency, bool) or not isinstance(latency, (int, float)):
            raise ValueError("latency_ms must be a number")
        tags["latency_ms"] = float(latency)
    error = record.get("candidate_error")
    if error is not None:
        tags["candidate_error"] = str(error)
    return tags


def read_capture_object(body: bytes) -> Iterator[CapturedPrediction]:
    """Every prediction of a delivered object (gzipped or not); blank lines are skipped."""
    if body[:2] == b"\x1f\x8b":
        body = gzip.decompress(body)
    for line in body.decode("utf-8").splitlines():
        if line.strip():
            yield from parse_capture_line(line)


def decode_capture_object(body: bytes) -> str | None:
    """A delivered object's text, gunzipped if gzipped, undecodable bytes replaced; None when its gzip is torn."""
    try:
        return (gzip.decompress(body) if body[:2] == b"\x1f\x8b" else body).decode("utf-8", errors="replace")
    except (OSError, EOFError, zlib.error):
        return None


class CaptureLines:
    """The capture lines of delivered objects (in order), read leniently (``decode_capture_object``; a torn
    or foreign line is skipped) and lazily: ``get`` parses only the lines that spell the id it is asked for.

    A label names one prediction of a partition that may hold thousands: parsing every line of every
    partition a label file touches cost the quality function as much as reading the captures themselves.
    """

    def __init__(self, texts: Sequence[str]) -> None:
        self._texts = [
            "\n".join(text.splitlines()) if any(c in text for c in _OTHER_LINE_BREAKS) else text for text in texts
        ]
        self._by_id: dict[str, CapturedPrediction] | None = None
        # Characters searched so far, against the budget after which one full parse is the cheaper way.
        self._scanned = 0
        self._budget = _SCANS_BEFORE_FULL_PARSE * sum(map(len, self._texts))

    def __iter__(self) -> Iterator[CapturedPrediction]:
        for text in self._texts:
            for line in text.split("\n"):
                if line.strip():
                    try:
                        yield from parse_capture_line(line)
                    except ValueError:
                        continue

    def get(self, prediction_id: str) -> CapturedPrediction | None:
        """What ``{p.prediction_id: p for p in self}.get(prediction_id)`` gives: the id's last prediction.

        The lines holding the id as written are parsed, last first (an id holds no character JSON escapes,
        and a line's other fields may spell it too, so each is parsed and checked); when none of them is
        that prediction, every line is parsed once (and kept) for this and later lookups. So is a partition
        searched so often that the searches would cost more than parsing it (many labels of one big partition).
        """
        if self._by_id is None and prediction_id and self._scanned <= self._budget:
            for text in reversed(self._texts):
                end = len(text)
                self._scanned += end
                while (at := text.rfind(prediction_id, 0, end)) >= 0:
                    start = text.rfind("\n", 0, at) + 1
                    stop = text.find("\n", at)
                    try:
                        found = parse_capture_line(text[start : len(text) if stop < 0 else stop])
                    except ValueError:
                        found = []
                    for prediction in reversed(found):
                        if prediction.prediction_id == prediction_id:
                            return prediction
                    end = start
        if self._by_id is None:
            self._by_id = {p.prediction_id: p for p in self}
        return self._by_id.get(prediction_id)
