"""house_prices.captures.CaptureLines: a partition's lines looked up by prediction id, parsing only what is asked,
with the answers of a full read (the last prediction of an id; torn and foreign lines skipped)."""

from __future__ import annotations

import gzip
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from house_prices import captures, ids

ROW = (2005, 3100, 4, 2.5, 1.1, 2)


def prediction_ids(count: int, city: str = "Chicago_IL") -> list[str]:
    return ids.new_prediction_ids(city, count)


def line(pids: list[str], price: float = 1.0, house_ids: list[str | None] | None = None) -> str:
    (text,) = captures.capture_lines(
        city="Chicago_IL",
        version="20261125T040000Z-1a2b3c4d",
        request_id="req",
        prediction_ids=pids,
        rows=[ROW] * len(pids),
        prices=[price] * len(pids),
        house_ids=house_ids or [None] * len(pids),
    )
    return text


def full_read(texts: list[str]) -> dict[str, captures.CapturedPrediction]:
    """The reference: every readable line of every text parsed, the last prediction of an id kept."""
    found: dict[str, captures.CapturedPrediction] = {}
    for text in texts:
        for each in text.splitlines():
            if each.strip():
                try:
                    found.update((p.prediction_id, p) for p in captures.parse_capture_line(each))
                except ValueError:
                    continue
    return found


def count_parses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every line ``captures.parse_capture_line`` is given from now on, in order."""
    parsed: list[str] = []
    original = captures.parse_capture_line

    def counted(text: str) -> list[captures.CapturedPrediction]:
        parsed.append(text)
        return original(text)

    monkeypatch.setattr(captures, "parse_capture_line", counted)
    return parsed


def test_get_parses_only_the_line_holding_the_id(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a partition of two objects, 200 lines, and a torn line that would fail to parse
    pids = prediction_ids(200)
    texts = ["\n".join(line([pid]) for pid in pids[:100]) + "\n{torn", "\n".join(line([pid]) for pid in pids[100:])]
    lines = captures.CaptureLines(texts)
    parsed = count_parses(monkeypatch)
    # When one id is asked for
    found = lines.get(pids[42])
    # Then it is found by parsing its one line
    assert found is not None
    assert (found.prediction_id, found.features["SQUARE_FEET"]) == (pids[42], 3100)
    assert parsed == [line([pids[42]])]


def test_a_partition_asked_for_many_ids_is_parsed_whole_once_rather_than_searched_each_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a partition of 50 lines whose ids are each asked for 4 times (a big label batch on one city-day)
    pids = prediction_ids(50)
    lines = captures.CaptureLines(["\n".join(line([pid]) for pid in pids)])
    parsed = count_parses(monkeypatch)
    # When all 200 lookups are made
    found = [lines.get(pid) for pid in pids * 4]
    # Then each is right, and past the search budget the partition was parsed once, not searched 200 times
    assert [p.prediction_id if p else None for p in found] == pids * 4
    assert len(parsed) < 2 * len(pids)


def test_the_last_prediction_of_an_id_wins_and_an_id_in_another_field_is_not_taken_for_it() -> None:
    # Given an id priced twice (a resent line in a later object) and named as another prediction's house_id
    first, other = prediction_ids(2)
    texts = [line([first], price=1.0), line([first], price=2.0) + "\n" + line([other], house_ids=[first])]
    lines = captures.CaptureLines(texts)
    # Then the lookup answers as a full read does
    assert lines.get(first) == full_read(texts)[first]
    assert lines.get(first).price == 2.0  # type: ignore[union-attr]
    assert lines.get(other) == full_read(texts)[other]


def test_an_id_no_line_holds_is_none_after_one_full_read() -> None:
    pids = prediction_ids(3)
    lines = captures.CaptureLines([line(pids[:2])])
    assert lines.get(pids[2]) is None
    assert lines.get("") is None
    assert [p.prediction_id for p in lines] == pids[:2]


def test_lines_split_by_other_line_breaks_are_the_lines_a_full_read_sees() -> None:
    # Given lines separated by \r\n and by a record separator (str.splitlines breaks at both)
    pids = prediction_ids(3)
    texts = [line([pids[0]]) + "\r\n" + line([pids[1]]) + "\x1e" + line([pids[2]])]
    lines = captures.CaptureLines(texts)
    # Then each is found, and iterating gives the full read's predictions in order
    assert [lines.get(pid) for pid in pids] == [full_read(texts)[pid] for pid in pids]
    assert list(lines) == list(full_read(texts).values())


def test_a_delivered_object_is_decoded_gzipped_or_not_and_a_torn_gzip_is_none() -> None:
    text = line(prediction_ids(1))
    assert captures.decode_capture_object(gzip.compress(text.encode())) == text
    assert captures.decode_capture_object(text.encode() + b"\xff") == text + "\ufffd"
    assert captures.decode_capture_object(gzip.compress(text.encode())[:-8]) is None
    assert captures.decode_capture_object(b"\x1f\x8b" + b"\x08\x00" + b"garbage" * 10) is None


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.lists(
            st.tuples(st.integers(0, 7), st.sampled_from(["ok", "torn", "foreign", "blank"])),
            max_size=8,
        ),
        max_size=3,
    ),
    st.sampled_from(["\n", "\r\n", "\n\n"]),
)
def test_every_lookup_answers_as_a_full_read(objects: list[list[tuple[int, str]]], separator: str) -> None:
    # Given objects of lines drawn from 8 ids (repeats, torn and foreign lines, blank lines)
    pool = prediction_ids(9)
    texts = []
    for drawn in objects:
        rendered: list[str] = []
        for index, kind in drawn:
            whole = line([pool[index]], price=float(len(rendered)), house_ids=[pool[(index + 1) % 8]])
            rendered.append(
                {
                    "ok": whole,
                    "torn": whole[: len(whole) // 2],
                    "foreign": json.dumps({"id": pool[index]}),
                    "blank": " ",
                }[kind]
            )
        texts.append(separator.join(rendered))
    lines = captures.CaptureLines(texts)
    reference = full_read(texts)
    # Then every id (and one never captured) is answered as the full read answers it
    assert [lines.get(pid) for pid in pool] == [reference.get(pid) for pid in pool]
