"""One line per segment of a training run: trained, unchanged, skipped or failed, with the reason.

The CLI prints it as a rich table on stderr and, with ``--json``, as one JSON document on stdout.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from rich.console import Console
from rich.table import Table

Outcome = Literal["trained", "submitted", "unchanged", "skipped", "failed"]
_STYLE = {"trained": "green", "submitted": "cyan", "unchanged": "dim", "skipped": "yellow", "failed": "red"}


@dataclass(frozen=True)
class SegmentOutcome:
    city: str
    outcome: Outcome
    reason: str = ""
    job: str = ""
    ae_p50: float | None = None
    artifact: str = ""
    # model-sync's decision (--wait-live): live, standby (held back by the gate), rejected or pending.
    verdict: str = ""
    version: str = ""


@dataclass
class RunSummary:
    segments: list[SegmentOutcome]
    wall_seconds: float = 0.0
    # Wall seconds per stage ("validate", "train", "publish", "submit"), for the scale benchmark and users.
    stages: dict[str, float] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        counted: Counter[str] = Counter(segment.outcome for segment in self.segments)
        return {name: counted[name] for name in _STYLE}

    @property
    def ok(self) -> bool:
        """No segment failed, and none that was waited for was rejected or left without a verdict."""
        return not any(
            segment.outcome == "failed" or segment.verdict in ("rejected", "pending") for segment in self.segments
        )

    def to_json(self, validation: Mapping[str, Any] | None = None) -> dict[str, Any]:
        document: dict[str, Any] = {
            "counts": self.counts(),
            "wall_seconds": round(self.wall_seconds, 3),
            "stages": {name: round(seconds, 3) for name, seconds in self.stages.items()},
            "segments": [asdict(segment) for segment in sorted(self.segments, key=lambda s: s.city)],
        }
        if validation is not None:
            document["validation"] = dict(validation)
        return document


def summarise(
    trained: Iterable[SegmentOutcome],
    unchanged: Iterable[str],
    skipped: Mapping[str, str],
    failed: Mapping[str, str],
    wall_seconds: float,
) -> RunSummary:
    segments = [
        *trained,
        *(SegmentOutcome(city, "unchanged", "data and hyperparameters as last trained") for city in unchanged),
        *(SegmentOutcome(city, "skipped", reason) for city, reason in skipped.items()),
        *(SegmentOutcome(city, "failed", reason) for city, reason in failed.items()),
    ]
    return RunSummary(sorted(segments, key=lambda s: s.city), wall_seconds)


def print_run(summary: RunSummary, console: Console, *, limit: int = 200) -> None:
    """The per-segment table (failures and skips first, then the rest up to ``limit`` rows) and the counts."""
    if not summary.segments:
        console.print("segments: none")
        return
    table = Table(title="Segments", title_justify="left")
    table.add_column("segment", no_wrap=True)
    table.add_column("outcome", no_wrap=True)
    table.add_column("AE p50", justify="right", no_wrap=True)
    table.add_column("job", no_wrap=True)
    if any(segment.verdict for segment in summary.segments):
        table.add_column("model-sync", no_wrap=True)
    table.add_column("reason", overflow="fold")
    rank = {"failed": 0, "skipped": 1, "trained": 2, "submitted": 2, "unchanged": 3}
    ordered = sorted(summary.segments, key=lambda s: (rank[s.outcome], s.city))
    for segment in ordered[:limit]:
        style = _STYLE[segment.outcome]
        verdict = [f"{segment.verdict} {segment.version}".strip() or "–"] if len(table.columns) == 6 else []
        table.add_row(
            segment.city,
            f"[{style}]{segment.outcome}[/{style}]",
            "–" if segment.ae_p50 is None else f"${segment.ae_p50:,.0f}",
            segment.job or "–",
            *verdict,
            segment.reason or "",
        )
    console.print(table)
    if len(ordered) > limit:
        console.print(f"… {len(ordered) - limit} more segments (--json lists every one)")
    counts = ", ".join(f"{count} {name}" for name, count in summary.counts().items() if count)
    console.print(f"{counts} in {summary.wall_seconds:.1f} s wall")
