"""Rich rendering of training results (shared by the ``training.jobs`` CLI and the stack demo)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from training.results import CityFailure, CityResult


def make_console(*, stderr: bool = False) -> Console:
    """A console that keeps the table on one line per city when output goes to a file or CI log."""
    console = Console(stderr=stderr)
    return console if console.is_terminal else Console(stderr=stderr, width=160)


def _money(value: float | None) -> str:
    return "–" if value is None else f"${value:,.0f}"


def _display_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def results_table(
    results: Sequence[CityResult], failures: Sequence[CityFailure] = (), title: str = "Trained models"
) -> Table:
    """One row per city: rows per split, validation AE p10/p50/p90, R², test AE p50 share, artifact."""
    table = Table(
        title=title,
        title_justify="left",
        caption="AE = absolute error on the validation split; test % = test AE p50 / test median price",
        caption_justify="left",
    )
    table.add_column("city", no_wrap=True)
    table.add_column("rows", justify="right", no_wrap=True)
    for name in ("AE p10", "AE p50", "AE p90"):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("R²", justify="right", no_wrap=True)
    table.add_column("test %", justify="right", no_wrap=True)
    table.add_column("secs", justify="right", no_wrap=True)
    table.add_column("artifact", overflow="fold")
    for result in sorted(results, key=lambda r: r.city):
        rows = result.metrics["rows"]
        validation = result.metrics["validation"]
        test = result.metrics.get("test")
        share = f"{100 * test['ae_p50'] / test['median_price']:.2f}" if test else "–"
        r2 = validation.get("r2")
        table.add_row(
            result.city,
            f"{rows['train']}/{rows['validation']}/{rows['test']}",
            _money(validation["ae_p10"]),
            _money(validation["ae_p50"]),
            _money(validation["ae_p90"]),
            "–" if r2 is None else f"{r2:.4f}",
            share,
            f"{result.wall_seconds:.1f}",
            _display_path(result.artifact),
        )
    for failure in sorted(failures, key=lambda f: f.city):
        table.add_row(f"[red]{failure.city}[/red]", *["–"] * 6, f"{failure.wall_seconds:.1f}", "[red]FAILED[/red]")
    return table


def print_results(
    results: Sequence[CityResult],
    failures: Sequence[CityFailure] = (),
    *,
    console: Console | None = None,
    title: str = "Trained models",
    wall_seconds: float | None = None,
) -> None:
    console = console or make_console()
    console.print(results_table(results, failures, title))
    if wall_seconds is not None:
        console.print(f"{len(results)} trained, {len(failures)} failed in {wall_seconds:.1f} s wall")
    for failure in failures:
        console.print(f"[red]{failure.city} failed (exit {failure.returncode}):[/red]\n{failure.stderr_tail()}")
