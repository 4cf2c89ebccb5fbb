"""Which models are loaded, shared by every worker process: a journal of loads and unloads in one directory.

``POST /models`` reaches one worker, but any worker may get the model's invocations, and ``DELETE``
must reach them all. The truth is therefore on disk, in ``registry.journal``: one JSON line per
event, appended by whichever worker acts, under an exclusive ``flock`` on ``registry.lock``. Every
worker keeps the journal's state in memory and catches up by reading what was appended since it last
looked (``sync``: one ``fstat`` when nothing changed, so the invoke path can afford it per request).

Events: ``claim`` (a load started: name, url, loader pid, a reservation of bytes), ``loaded`` (its
measured charge), ``failed`` (with the error's status, type and message, so a concurrent caller can
report the same), ``unload``. A load is identified by its claim's sequence number: a worker holding a
model mapped for an older load of the same name knows it is stale. Decisions (claim, commit, unload)
are taken under the lock right after catching up, so they see every other worker's writes:

* one load per name: a claim for a name that is loaded or being loaded is refused (``Present``);
  the caller answers 409 or waits for the running load's outcome;
* the memory budget: claims reserve bytes (the model's file size) and a commit replaces the
  reservation with the measured charge; either is refused (``OverBudget``) when the total would pass
  the budget, so concurrent loads cannot overshoot it together;
* a claim whose loader died (its pid is gone) or that is older than the load timeout is failed by the
  next worker that looks at it, so a crash mid-load never pins a name.

The journal grows with every event; when it holds more than twice the live entries (plus a margin),
the writer holding the lock compacts it: the current state goes to a new file that replaces the
journal atomically, and a ``moved`` record at the end of the old file sends every reader to the new
one. Not thread-safe: each process uses its registry from one thread (the event loop).
"""

from __future__ import annotations

import base64
import binascii
import bisect
import contextlib
import fcntl
import itertools
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from endpoint.lifetime import process_alive

JOURNAL = "registry.journal"
LOCK = "registry.lock"
# Compact when the journal holds more than COMPACT_FACTOR records per live entry plus this margin.
COMPACT_MARGIN = 4096
COMPACT_FACTOR = 2
# Page tokens are base64url without padding (a name is at most 1024 characters).
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,1400}")
# Failures kept for callers waiting on another worker's load.
RECENT_FAILURES = 1024

State = Literal["loading", "loaded"]


@dataclass(frozen=True, slots=True)
class Entry:
    name: str
    url: str
    seq: int
    state: State
    pid: int
    # While loading: the reservation; once loaded: the measured charge.
    charged: int
    started: float


@dataclass(frozen=True, slots=True)
class Failure:
    status: int
    kind: str
    message: str


class Present(Exception):
    """A claim for a name that is already loaded or being loaded."""

    def __init__(self, entry: Entry) -> None:
        super().__init__(entry.name)
        self.entry = entry


class OverBudget(Exception):
    def __init__(self, needed: int, used: int, budget: int) -> None:
        super().__init__(f"{needed} bytes more would make {used + needed} of a budget of {budget}")
        self.needed = needed
        self.used = used
        self.budget = budget


class NotLoaded(Exception):
    pass


class BadPageToken(ValueError):
    pass


class Registry:
    def __init__(
        self,
        directory: Path,
        *,
        budget_bytes: int,
        stale_after_seconds: float,
        pid: int | None = None,
        clock: Callable[[], float] = time.time,
        alive: Callable[[int], bool] | None = None,
    ) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.budget_bytes = budget_bytes
        self.stale_after_seconds = stale_after_seconds
        self.pid = os.getpid() if pid is None else pid
        self._clock = clock
        self._alive = alive or process_alive
        self._path = directory / JOURNAL
        self._lock_fd = os.open(directory / LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        self._reset()

    def _reset(self) -> None:
        self._offset = 0
        self._tail = b""
        self._records = 0
        self._entries: dict[str, Entry] = {}
        self._by_seq: dict[int, str] = {}
        self._failures: dict[int, Failure] = {}
        self._charged = 0
        self._next_seq = 1
        self._sorted: list[str] | None = None
        # Names whose load changed since the last ``changes()``; None: anything may have (a new journal).
        self._changed: set[str] | None = set()

    def close(self) -> None:
        for fd in (self._fd, self._lock_fd):
            with contextlib.suppress(OSError):
                os.close(fd)

    # Reading (any worker, any time) ---------------------------------------------------------------

    def sync(self) -> bool:
        """Catch up with the journal; whether anything changed. One ``fstat`` when nothing did."""
        changed = False
        while True:
            size = os.fstat(self._fd).st_size
            if size <= self._offset:
                return changed
            data = os.pread(self._fd, size - self._offset, self._offset)
            if not data:
                return changed
            self._offset += len(data)
            lines = (self._tail + data).split(b"\n")
            # A writer may be mid-line: keep the unfinished tail for the next call.
            self._tail = lines.pop()
            for line in lines:
                if line and self._apply(json.loads(line)):
                    # The journal was replaced by a compacted one: read that from its start.
                    self._reopen()
                    changed = True
                    break
                changed = True

    def get(self, name: str) -> Entry | None:
        return self._entries.get(name)

    def loaded(self, name: str) -> Entry | None:
        entry = self._entries.get(name)
        return entry if entry is not None and entry.state == "loaded" else None

    def failure(self, seq: int) -> Failure | None:
        return self._failures.get(seq)

    def entry_of(self, seq: int) -> Entry | None:
        name = self._by_seq.get(seq)
        return self._entries.get(name) if name is not None else None

    @property
    def charged_bytes(self) -> int:
        """Bytes charged to the budget: loaded models' measured charges plus running loads' reservations."""
        return self._charged

    def __len__(self) -> int:
        return len(self._entries)

    def changes(self) -> set[str] | None:
        """Names whose load changed (unloaded, failed, reloaded) since the last call; None: possibly all."""
        changed, self._changed = self._changed, set()
        return changed

    def page(self, token: str | None, limit: int) -> tuple[list[Entry], str | None]:
        """Loaded models in name order after ``token``, at most ``limit``, and the next page's token.

        The token is the last name of the previous page (base64url): pages stay consistent while models
        come and go, where an offset would skip or repeat names.
        """
        after = _decode_token(token) if token else None
        names = self._names()
        start = bisect.bisect_right(names, after) if after is not None else 0
        page: list[Entry] = []
        index = start
        while index < len(names) and len(page) < limit:
            entry = self._entries.get(names[index])
            if entry is not None and entry.state == "loaded":
                page.append(entry)
            index += 1
        # A token only when a loaded model follows (names of running loads are skipped, not promised).
        more = any(self._entries[name].state == "loaded" for name in itertools.islice(names, index, None))
        return page, (_encode_token(page[-1].name) if page and more else None)

    def _names(self) -> list[str]:
        if self._sorted is None:
            self._sorted = sorted(self._entries)
        return self._sorted

    # Writing (under the lock, after catching up) ----------------------------------------------------

    def claim(self, name: str, url: str, reservation: int) -> Entry:
        """Start a load of ``name``: ``Present`` if it is loaded or loading, ``OverBudget`` if it cannot fit."""
        with self._locked():
            existing = self._entries.get(name)
            if existing is not None and existing.state == "loading" and self._abandoned(existing):
                self._append(
                    {
                        "op": "failed",
                        "seq": existing.seq,
                        "status": 500,
                        "type": "ModelLoadException",
                        "message": f"the worker loading {name!r} stopped before it finished",
                    }
                )
                existing = None
            if existing is not None:
                raise Present(existing)
            if self._charged + reservation > self.budget_bytes:
                raise OverBudget(reservation, self._charged, self.budget_bytes)
            seq = self._next_seq
            self._append(
                {
                    "op": "claim",
                    "seq": seq,
                    "name": name,
                    "url": url,
                    "pid": self.pid,
                    "bytes": reservation,
                    "at": self._clock(),
                }
            )
            return self._entries[name]

    def commit(self, seq: int, charged: int) -> Entry:
        """Finish a load with its measured charge; ``OverBudget`` (and the claim is dropped) if it does not fit."""
        with self._locked():
            entry = self.entry_of(seq)
            if entry is None or entry.state != "loading":
                # Failed meanwhile as abandoned (this worker looked dead or slow to another).
                raise NotLoaded(f"load {seq} is no longer pending")
            used = self._charged - entry.charged
            if used + charged > self.budget_bytes:
                self._append(
                    {
                        "op": "failed",
                        "seq": seq,
                        "status": 507,
                        "type": "InsufficientMemoryException",
                        "message": f"{entry.name!r} needs {charged} bytes; {used} of {self.budget_bytes} are in use",
                    }
                )
                raise OverBudget(charged, used, self.budget_bytes)
            self._append({"op": "loaded", "seq": seq, "bytes": charged})
            return self._entries[entry.name]

    def fail(self, seq: int, status: int, kind: str, message: str) -> None:
        """Give up a claim (its load failed); concurrent callers waiting on it read this failure."""
        with self._locked():
            entry = self.entry_of(seq)
            if entry is not None and entry.state == "loading":
                self._append({"op": "failed", "seq": seq, "status": status, "type": kind, "message": message})

    def unload(self, name: str) -> Entry:
        """Remove a loaded model; ``NotLoaded`` if it is not (a load still running is not unloaded)."""
        with self._locked():
            entry = self._entries.get(name)
            if entry is None or entry.state != "loaded":
                raise NotLoaded(name)
            self._append({"op": "unload", "seq": entry.seq})
            return entry

    def settle(self, entry: Entry) -> bool:
        """Fail ``entry``'s load if its loader is gone or it is older than the load timeout; whether it was."""
        if entry.state != "loading" or not self._abandoned(entry):
            return False
        with self._locked():
            current = self.entry_of(entry.seq)
            if current is None or current.state != "loading" or not self._abandoned(current):
                return False
            self._append(
                {
                    "op": "failed",
                    "seq": entry.seq,
                    "status": 500,
                    "type": "ModelLoadException",
                    "message": f"the worker loading {entry.name!r} stopped before it finished",
                }
            )
            return True

    def _abandoned(self, entry: Entry) -> bool:
        if entry.pid == self.pid:
            return False  # this worker's own load: it knows whether it is still running
        return not self._alive(entry.pid) or self._clock() - entry.started > self.stale_after_seconds

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            self.sync()
            yield
            if self._records > COMPACT_FACTOR * len(self._entries) + COMPACT_MARGIN:
                self._compact()
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _append(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, separators=(",", ":")).encode() + b"\n"
        written = 0
        while written < len(line):
            written += os.write(self._fd, line[written:])
        self.sync()

    def _compact(self) -> None:
        """Replace the journal with the current state (lock held, state synced)."""
        temporary = self.directory / f"{JOURNAL}.{self.pid}.tmp"
        lines = [json.dumps({"op": "base", "next_seq": self._next_seq}, separators=(",", ":"))]
        for entry in self._entries.values():
            record = {
                "op": "entry",
                "seq": entry.seq,
                "name": entry.name,
                "url": entry.url,
                "state": entry.state,
                "pid": entry.pid,
                "bytes": entry.charged,
                "at": entry.started,
            }
            lines.append(json.dumps(record, separators=(",", ":")))
        temporary.write_text("\n".join(lines) + "\n")
        os.replace(temporary, self._path)
        line = json.dumps({"op": "moved"}).encode() + b"\n"
        os.write(self._fd, line)
        self.sync()

    def _reopen(self) -> None:
        os.close(self._fd)
        self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        self._reset()
        self._changed = None

    # Applying records -------------------------------------------------------------------------------

    def _apply(self, record: dict[str, Any]) -> bool:
        """Apply one record; True for ``moved`` (the caller reopens the journal)."""
        op = record["op"]
        if op == "moved":
            return True
        self._records += 1
        if op in ("claim", "entry"):
            entry = Entry(
                name=record["name"],
                url=record["url"],
                seq=record["seq"],
                state=record.get("state", "loading"),
                pid=record["pid"],
                charged=record["bytes"],
                started=record["at"],
            )
            self._put(entry)
            self._next_seq = max(self._next_seq, entry.seq + 1)
        elif op == "base":
            self._next_seq = max(self._next_seq, record["next_seq"])
        elif op == "loaded":
            claimed = self.entry_of(record["seq"])
            if claimed is not None:
                self._put(replace(claimed, state="loaded", charged=record["bytes"]))
        elif op == "failed":
            self._failures[record["seq"]] = Failure(record["status"], record["type"], record["message"])
            if len(self._failures) > RECENT_FAILURES:
                del self._failures[next(iter(self._failures))]
            self._remove(record["seq"])
        elif op == "unload":
            self._remove(record["seq"])
        return False

    def _put(self, entry: Entry) -> None:
        previous = self._entries.get(entry.name)
        if previous is None:
            self._sorted = None
        else:
            self._charged -= previous.charged
            self._by_seq.pop(previous.seq, None)
        self._entries[entry.name] = entry
        self._by_seq[entry.seq] = entry.name
        self._charged += entry.charged
        if self._changed is not None and previous is not None and previous.seq != entry.seq:
            self._changed.add(entry.name)

    def _remove(self, seq: int) -> None:
        name = self._by_seq.pop(seq, None)
        if name is None:
            return
        entry = self._entries.pop(name)
        self._charged -= entry.charged
        self._sorted = None
        if self._changed is not None:
            self._changed.add(name)


def _encode_token(name: str) -> str:
    return base64.urlsafe_b64encode(name.encode()).decode().rstrip("=")


def _decode_token(token: str) -> str:
    try:
        if not _TOKEN.fullmatch(token):
            raise ValueError(token)
        return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        shown = token if len(token) <= 100 else token[:97] + "..."
        raise BadPageToken(f"next_page_token {shown!r} is not one this container gave") from None
