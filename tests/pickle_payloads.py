"""One hostile pickle for the tests that prove nothing unpickles: loading it writes a marker file."""

from __future__ import annotations

from pathlib import Path


class WritesMarker:
    """Unpickling this writes ``path``: if the file exists afterwards, a model file ran as code."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, ...]:
        return (Path.write_text, (self.path, "pickle executed"))
