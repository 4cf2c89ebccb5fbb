"""The one exception a user's data raises: its message says what to change, never a traceback."""

from __future__ import annotations

from house_prices.errors import DomainError


class DatasetError(DomainError):
    """The source cannot be used as given; nothing was loaded.

    Messages name the offending file, column or value and, for column problems, list the file's
    columns, so the CLI can print ``error.message`` alone.
    """
