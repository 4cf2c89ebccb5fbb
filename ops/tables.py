"""How ``python -m ops`` prints results for people: ids whole, prices rounded, "none" for nothing.

A table is printed at least as wide as its longest id needs, whatever the terminal's width or
``COLUMNS`` (pipes included), so a version, key or target model is never cut or wrapped: that is
what ``promote``, ``?version=`` and shell scripts copy. Only free-text columns (reasons, errors)
wrap, at spaces. Titles and messages are single lines (soft wrap): a terminal may fold them on
screen, but no newline is ever inserted into a command or a URL. Dollar amounts (``ae_p50``) are
rounded to whole dollars; ``--json`` keeps every digit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

# Columns whose text may wrap at spaces; every other column holds ids, keys, names or times.
FREE_TEXT_COLUMNS = frozenset({"reason", "error", "detail", "problem"})
DOLLAR_COLUMNS = frozenset({"ae_p50", "price", "median_price"})


def cell(column: str, value: Any) -> str:
    """One value as shown in a table: nothing for None, whole dollars, one list item per line."""
    if value is None:
        return ""
    if column in DOLLAR_COLUMNS and isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:,.0f}" if math.isfinite(value) else str(value)
    if isinstance(value, list | tuple):
        return "\n".join(str(item) for item in value)
    return str(value)


def line(console: Console, text: str) -> None:
    """A message or title: printed as is, on one line, however narrow the terminal."""
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> Table:
    rendered = Table()
    for column in columns:
        free = column in FREE_TEXT_COLUMNS
        rendered.add_column(column, no_wrap=not free, overflow="fold" if free else "ignore")
    for row in rows:
        rendered.add_row(*(Text(cell(column, row.get(column))) for column in columns))
    return rendered


def minimum_width(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> int:
    """The narrowest the table can be with every id whole: free text down to its longest word."""
    widths = []
    for column in columns:
        texts = [column, *(cell(column, row.get(column)) for row in rows)]
        if column in FREE_TEXT_COLUMNS:
            widths.append(max(cell_len(word) for text in texts for word in [*text.split(), ""]))
        else:
            widths.append(max(cell_len(part) for text in texts for part in [*text.splitlines(), ""]))
    # The default box: a border before each column and after the last, one space of padding each side.
    return sum(widths) + 3 * len(columns) + 1


def print_rows(console: Console, rows: Sequence[Mapping[str, Any]], columns: Sequence[str], title: str) -> None:
    """``title``, then the rows as a table; ``title: none`` when there are no rows."""
    if not rows:
        line(console, f"{title}: none")
        return
    line(console, title)
    rendered = table(rows, columns)
    needed = minimum_width(rows, columns)
    if needed <= console.width:
        console.print(rendered)
        return
    # Narrower than the ids: print at the width they need (a terminal folds the lines on screen only).
    wide = Console(
        file=console.file,
        width=needed,
        force_terminal=console.is_terminal,
        color_system=console.color_system,  # type: ignore[arg-type]
        quiet=console.quiet,
    )
    wide.print(rendered)
