"""The workers' shared registry: one load per name, the budget, pages, unloads seen by all, crashes, compaction.

Two ``Registry`` objects on one directory are two worker processes (each has its own file handles and
``flock``); nothing here needs sockets.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from container import registry as registry_module
from container.registry import BadPageToken, NotLoaded, OverBudget, Present, Registry

OpenRegistry = Callable[..., Registry]


@pytest.fixture
def open_registry(tmp_path: Path) -> Iterator[OpenRegistry]:
    """``open_registry(pid=N)``: one worker's view of a shared registry directory (closed after the test)."""
    opened: list[Registry] = []

    def make(pid: int, budget: int = 10_000, **options: Any) -> Registry:
        registry = Registry(tmp_path, budget_bytes=budget, stale_after_seconds=60, pid=pid, **options)
        opened.append(registry)
        return registry

    yield make
    for registry in opened:
        registry.close()


def loaded(registry: Registry, name: str, charge: int = 100) -> int:
    entry = registry.claim(name, f"/opt/ml/models/{name}/model", charge)
    registry.commit(entry.seq, charge)
    return entry.seq


def test_a_load_claimed_in_one_worker_is_present_in_the_other(open_registry: OpenRegistry) -> None:
    first, second = open_registry(pid=1), open_registry(pid=2)

    entry = first.claim("city", "/opt/ml/models/city/model", 100)

    # While loading: the other worker cannot claim it, and does not list or serve it yet
    with pytest.raises(Present) as present:
        second.claim("city", "/opt/ml/models/city/model", 100)
    assert present.value.entry.state == "loading"
    second.sync()
    assert second.loaded("city") is None
    assert second.page(None, 10) == ([], None)

    # Once committed it is loaded everywhere, with its measured charge
    first.commit(entry.seq, 250)
    second.sync()
    assert second.loaded("city") is not None
    assert second.charged_bytes == 250
    with pytest.raises(Present):
        second.claim("city", "/elsewhere", 1)


def test_claims_reserve_budget_so_concurrent_loads_cannot_overshoot_it(open_registry: OpenRegistry) -> None:
    first, second = open_registry(pid=1, budget=1000), open_registry(pid=2, budget=1000)

    first.claim("a", "/a", 600)

    with pytest.raises(OverBudget) as refused:
        second.claim("b", "/b", 600)
    assert (refused.value.needed, refused.value.used, refused.value.budget) == (600, 600, 1000)


def test_a_commit_over_budget_drops_the_claim_and_records_why(open_registry: OpenRegistry) -> None:
    registry, other = open_registry(pid=1, budget=1000), open_registry(pid=2, budget=1000)
    loaded(registry, "a", 500)
    entry = registry.claim("b", "/b", 100)

    with pytest.raises(OverBudget):
        registry.commit(entry.seq, 600)

    other.sync()
    assert other.get("b") is None
    assert other.charged_bytes == 500
    failure = other.failure(entry.seq)
    assert failure is not None
    assert failure.status == 507


def test_a_failed_load_frees_the_name_and_tells_waiters_why(open_registry: OpenRegistry) -> None:
    loader, waiter = open_registry(pid=1), open_registry(pid=2)
    entry = loader.claim("city", "/c", 100)

    loader.fail(entry.seq, 500, "ModelLoadException", "model_fn failed")

    waiter.sync()
    failure = waiter.failure(entry.seq)
    assert failure is not None
    assert (failure.status, failure.message) == (500, "model_fn failed")
    assert waiter.get("city") is None
    assert waiter.charged_bytes == 0
    waiter.claim("city", "/c", 100)


def test_an_unload_reaches_the_other_worker_as_a_change(open_registry: OpenRegistry) -> None:
    first, second = open_registry(pid=1), open_registry(pid=2)
    loaded(first, "keep")
    loaded(first, "drop")
    second.sync()
    second.changes()

    first.unload("drop")

    assert second.sync() is True
    assert second.changes() == {"drop"}
    assert second.loaded("drop") is None
    assert second.loaded("keep") is not None
    with pytest.raises(NotLoaded):
        second.unload("drop")


def test_a_reload_of_the_same_name_is_a_new_load(open_registry: OpenRegistry) -> None:
    first, second = open_registry(pid=1), open_registry(pid=2)
    old = loaded(first, "city")
    second.sync()
    second.changes()

    first.unload("city")
    new = loaded(first, "city")

    second.sync()
    entry = second.loaded("city")
    assert entry is not None
    assert entry.seq == new != old
    assert second.changes() == {"city"}


def test_a_load_still_running_cannot_be_unloaded(open_registry: OpenRegistry) -> None:
    registry = open_registry(pid=1)
    registry.claim("city", "/c", 100)

    with pytest.raises(NotLoaded):
        registry.unload("city")


def test_a_claim_whose_loader_died_is_failed_by_the_next_claimant(open_registry: OpenRegistry) -> None:
    # Given a claim by a worker that then died
    crashed = open_registry(pid=111)
    orphan = crashed.claim("city", "/c", 100)
    survivor = open_registry(pid=2, alive=lambda pid: pid != 111)

    # When another worker claims the name
    entry = survivor.claim("city", "/c", 100)

    # Then the orphan is failed (with a reason for its waiters) and the new claim stands
    assert entry.seq != orphan.seq
    failure = survivor.failure(orphan.seq)
    assert failure is not None
    assert "stopped before it finished" in failure.message


def test_settle_fails_a_claim_older_than_the_timeout_but_not_a_live_recent_one(open_registry: OpenRegistry) -> None:
    now = [1000.0]
    loader = open_registry(pid=1, clock=lambda: now[0])
    watcher = open_registry(pid=2, clock=lambda: now[0], alive=lambda pid: True)
    entry = loader.claim("slow", "/s", 100)
    watcher.sync()

    assert watcher.settle(entry) is False
    now[0] += 61
    assert watcher.settle(entry) is True
    assert watcher.get("slow") is None


def test_pages_follow_names_after_the_token_and_end_without_one(open_registry: OpenRegistry) -> None:
    registry = open_registry(pid=1)
    for name in ("d", "b", "a", "e", "c"):
        loaded(registry, name, 1)
    registry.claim("bb", "/bb", 1)  # loading: never listed

    first, token = registry.page(None, 2)
    assert [entry.name for entry in first] == ["a", "b"]
    assert token is not None
    second, token = registry.page(token, 2)
    assert [entry.name for entry in second] == ["c", "d"]
    third, token = registry.page(token, 2)
    assert [entry.name for entry in third] == ["e"]
    assert token is None


@pytest.mark.parametrize("token", ["!!", "a" * 2000, "_w"])
def test_a_page_token_this_registry_never_gave_is_refused(open_registry: OpenRegistry, token: str) -> None:
    with pytest.raises(BadPageToken):
        open_registry(pid=1).page(token, 10)


def test_compaction_keeps_the_state_and_moves_every_reader_to_the_new_journal(
    open_registry: OpenRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a journal that compacts after a few records, and a second worker reading it
    monkeypatch.setattr(registry_module, "COMPACT_MARGIN", 5)
    writer, reader = open_registry(pid=1), open_registry(pid=2)
    pending = writer.claim("pending", "/p", 10)
    for index in range(30):
        loaded(writer, f"m{index}", 1)
        if index % 3:
            writer.unload(f"m{index}")
    journal = writer.directory / registry_module.JOURNAL
    assert len(journal.read_text().splitlines()) < 30

    # When the reader catches up
    reader.sync()

    # Then it sees exactly the live state, and loads keep their identities and charges
    expected = sorted(["pending"] + [f"m{index}" for index in range(30) if index % 3 == 0])
    assert sorted(entry.name for entry in (reader.get(name) for name in expected) if entry) == expected
    assert len(reader) == len(expected)
    assert reader.charged_bytes == writer.charged_bytes == 10 + 10
    entry = reader.get("pending")
    assert entry is not None
    assert entry.seq == pending.seq
    assert entry.state == "loading"
    # And new sequence numbers do not reuse old ones
    assert loaded(reader, "fresh") > max(e.seq for e in (reader.get(name) for name in expected) if e is not None)


def test_a_reader_rebuilding_from_a_new_journal_reports_that_anything_may_have_changed(
    open_registry: OpenRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(registry_module, "COMPACT_MARGIN", 2)
    writer, reader = open_registry(pid=1), open_registry(pid=2)
    reader.sync()
    reader.changes()

    for index in range(10):
        loaded(writer, f"m{index}", 1)
        writer.unload(f"m{index}")

    reader.sync()
    assert reader.changes() is None
