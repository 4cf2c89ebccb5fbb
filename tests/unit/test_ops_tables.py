"""ops.tables: what `python -m ops` prints for people, in any terminal width or a pipe."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from ops.tables import cell, minimum_width, print_rows

VERSION = "20261125T040000Z-1a2b3c4d"
TARGET = f"Chicago_IL.{VERSION}.tar.gz"
ROWS = [
    {
        "city": "Chicago_IL",
        "version": VERSION,
        "target_model": TARGET,
        "ae_p50": 15890.2371,
        "reason": "gate not-worse-than-live-by:5 passed: measured validation.ae_p50 15890.2 vs live 16011.7",
    }
]
COLUMNS = ("city", "version", "target_model", "ae_p50", "reason")


def printed(rows: list[dict[str, object]], width: int, title: str = "Live models") -> str:
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, force_terminal=False, color_system=None)
    print_rows(console, rows, COLUMNS, title)
    return buffer.getvalue()


@pytest.mark.parametrize("width", [30, 60, 80, 250])
def test_ids_are_never_cut_or_wrapped_whatever_the_width(width: int) -> None:
    # Given a console as narrow as a pipe with COLUMNS=30 (or wide)
    # When a row with a version, a target model and a long reason is printed
    lines = printed(ROWS, width).splitlines()
    # Then each id is whole on one line, nothing is elided, and the table is as narrow as the ids allow
    for text in ("Chicago_IL", VERSION, TARGET):
        assert any(text in line for line in lines), text
    assert not any("…" in line for line in lines)
    widest, needed = max(len(line) for line in lines), minimum_width(ROWS, COLUMNS)
    assert widest == needed if width < needed else widest <= width
    # And only the free-text reason wrapped, at word boundaries
    assert "15890.2" in "".join(lines)


def test_dollars_are_rounded_in_tables_only() -> None:
    assert cell("ae_p50", 15890.2371) == "15,890"
    assert cell("ae_p50", None) == ""
    assert cell("version", 15890.2371) == "15890.2371"
    assert "15,890" in printed(ROWS, 200)
    assert "15890.2371" not in printed(ROWS, 200)


def test_lists_are_one_item_per_line() -> None:
    assert cell("keys", ["a/model.tar.gz", "b/model.tar.gz"]) == "a/model.tar.gz\nb/model.tar.gz"


def test_nothing_to_show_is_one_line_saying_none() -> None:
    assert printed([], 80) == "Live models: none\n"


def test_long_titles_are_one_line_even_in_a_narrow_console() -> None:
    title = "Failed model-sync events: 3 waiting in https://sqs.eu-west-3.amazonaws.com/123456789012/a-long-queue-name"
    assert printed(ROWS, 30, title).splitlines()[0] == title
