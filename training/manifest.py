"""What each segment was last trained on, so a re-run retrains only segments whose data changed.

An entry's fingerprint is the segment's data hash plus the hyperparameters: new rows, changed rows or
new hyperparameters retrain it; the same file run again trains nothing (``--force`` retrains all).
A local run keeps the manifest in its work directory; a run that publishes keeps it beside the
published inputs (``KeyLayout.training_manifest_key``), since that is what the bucket's models were
trained on. Only segments that trained (and, when publishing, were published) are recorded, so a
failed segment is retried by the next run.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from training.inputs import Hyperparameters
from training.shards import SegmentInput

MANIFEST_VERSION = 1
LOCAL_MANIFEST = "manifest.json"


def fingerprint(data_hash: str, hyperparameters: Hyperparameters) -> str:
    settings = json.dumps(asdict(hyperparameters), sort_keys=True)
    return hashlib.sha256(f"{data_hash}\n{settings}".encode()).hexdigest()


@dataclass(frozen=True)
class Entry:
    fingerprint: str
    data_hash: str
    job: str
    trained_at: str


@dataclass
class Manifest:
    entries: dict[str, Entry] = field(default_factory=dict)

    @classmethod
    def from_json(cls, text: str | bytes | None) -> Manifest:
        if not text:
            return cls()
        document = json.loads(text)
        if not isinstance(document, dict) or document.get("version") != MANIFEST_VERSION:
            # An unreadable or newer manifest means "nothing known": retraining is the safe side.
            return cls()
        entries = {}
        for city, entry in (document.get("segments") or {}).items():
            try:
                entries[city] = Entry(**{name: str(entry[name]) for name in Entry.__dataclass_fields__})
            except (KeyError, TypeError):
                continue
        return cls(entries)

    def to_json(self) -> str:
        segments = {city: asdict(entry) for city, entry in sorted(self.entries.items())}
        return json.dumps({"version": MANIFEST_VERSION, "segments": segments}, indent=1) + "\n"

    def partition(
        self, segments: Sequence[SegmentInput], hyperparameters: Hyperparameters, *, force: bool = False
    ) -> tuple[list[SegmentInput], list[SegmentInput]]:
        """(to train, unchanged): a segment is unchanged when its fingerprint is the recorded one."""
        to_train: list[SegmentInput] = []
        unchanged: list[SegmentInput] = []
        for segment in segments:
            entry = self.entries.get(segment.city)
            same = entry is not None and entry.fingerprint == fingerprint(segment.data_hash, hyperparameters)
            (unchanged if same and not force else to_train).append(segment)
        return to_train, unchanged

    def record(
        self,
        trained: Iterable[tuple[SegmentInput, str]],
        hyperparameters: Hyperparameters,
        now: datetime | None = None,
    ) -> None:
        """Record ``(segment, job)`` pairs that trained (and were published, if the run publishes)."""
        stamp = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
        for segment, job in trained:
            self.entries[segment.city] = Entry(
                fingerprint(segment.data_hash, hyperparameters), segment.data_hash, job, stamp
            )


class ManifestStore(Protocol):
    def read(self) -> Manifest: ...

    def write(self, manifest: Manifest) -> None: ...


@dataclass(frozen=True)
class LocalManifestStore:
    path: Path

    def read(self) -> Manifest:
        return Manifest.from_json(self.path.read_text() if self.path.is_file() else None)

    def write(self, manifest: Manifest) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(manifest.to_json())
        tmp.replace(self.path)


class S3Objects(Protocol):
    def read_text(self, key: str) -> str | None: ...

    def write_text(self, key: str, text: str) -> None: ...


@dataclass(frozen=True)
class S3ManifestStore:
    objects: S3Objects
    key: str

    def read(self) -> Manifest:
        return Manifest.from_json(self.objects.read_text(self.key))

    def write(self, manifest: Manifest) -> None:
        self.objects.write_text(self.key, manifest.to_json())
