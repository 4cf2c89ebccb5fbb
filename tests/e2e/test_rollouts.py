"""Rollouts on the local stack: promote, roll back, abort and time out, over HTTP and the ops CLI.

One stack for the module, as an operator would run it: model-sync's ``RolloutPolicy`` is ``shadow,days:30``
(so a retrained city enters a rollout, not live), the router keeps the template's 4 s live-item cache
(the ≤ 5 s visibility is measured through it), captures are buffered 1 s, and the decider runs on the
tests' simulated clock only (the scheduler is paused; ``POST {scheduler}/ticks`` with a chosen time).

Three cities, each with a live version 1 and a retrained version 2 that model-sync put into a rollout:

* ``SPLIT_CITY`` (both versions on the right prices): canary split and stickiness, visibility, abort,
  time-out and a failing candidate, each test starting its own rollout with ``ops rollout start``;
* ``GOOD_CITY`` (version 1 trained on stale prices, version 2 on the right ones): promoted from shadow;
* ``WORSE_CITY`` (version 2 trained on corrupted prices, ``ops rollout policy ... canary:50``): rolled back.

A tick decides every running rollout; the tests that tick far ahead (time-out) tick before the other
rollouts' 30-day deadlines, and the others have no evidence until their own test sends labels. The last
test runs ``make demo-rollout``'s core on the same stack, with its own two cities.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from house_prices.naming import KeyLayout, make_version
from house_prices.registry import LiveModel, ModelRegistry, ModelVersion, Rollout
from house_prices.rollout_stats import GuardPolicy
from local.demo_quality import label_of, traffic
from local.demo_rollout import GOOD_CITY as DEMO_GOOD_CITY
from local.demo_rollout import (
    HOUSES_PER_REQUEST,
    OpsFailed,
    Priced,
    evidence_of,
    ops_cli,
    poll,
    post_labels,
    price_houses,
    run_rollout_demo,
    tick,
    train_and_publish,
    verdict,
    wait_for_calls,
    wait_for_rollouts,
    write_stack_file,
)
from local.demo_rollout import WORSE_CITY as DEMO_WORSE_CITY
from local.scheduler import parse_time
from local.stack import LocalStack, StackConfig
from tests.e2e.stack_harness import QUIET

pytestmark = pytest.mark.slow

SPLIT_CITY = "Tulsa_OK"
GOOD_CITY = "Omaha_NE"
WORSE_CITY = "Fresno_CA"
CITIES = (SPLIT_CITY, GOOD_CITY, WORSE_CITY)
STALE_PRICE_FACTOR = 0.85
CORRUPT_PRICE_FACTOR = 0.6
N_ESTIMATORS = 10
# The router's live-item cache is 4 s; a change must reach every router within 5 s (docs/rollouts.md).
VISIBLE_WITHIN_SECONDS = 5.0
# The HTTP API's router sandboxes (each its own live-item cache), and the concurrent requests per burst: twice
# as many, so every router instance answers some of each burst.
ROUTERS = 4
BURST = 2 * ROUTERS


@dataclass(frozen=True)
class Setup:
    stack: LocalStack
    registry: ModelRegistry
    stack_file: Path
    live: dict[str, str]  # version 1, live
    candidates: dict[str, str]  # version 2, rolled out by model-sync

    def ops(self, *argv: str) -> Any:
        return ops_cli(self.stack_file, *argv)

    @property
    def api(self) -> str:
        return self.stack.info.api_url


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    state = tmp_path_factory.mktemp("rollouts")
    config = StackConfig(
        state_dir=state,
        write_stack_file=False,
        parameters={"RolloutPolicy": "shadow,days:30"},
        capture_buffer_seconds=1.0,
        schedules_paused=True,
        api_max_concurrency=ROUTERS,
    )
    with LocalStack(config) as stack:
        registry = ModelRegistry(stack.client("dynamodb"), stack.info.registry_table)
        stack_file = write_stack_file(stack, state / "stack.json")
        train_and_publish(
            stack, {SPLIT_CITY: 1.0, GOOD_CITY: STALE_PRICE_FACTOR, WORSE_CITY: 1.0}, state / "v1", QUIET, N_ESTIMATORS
        )
        live = {city: model.version for city, model in wait_live(registry, CITIES).items()}
        ops_cli(stack_file, "rollout", "policy", WORSE_CITY, "canary:50,days:30")
        train_and_publish(
            stack,
            {SPLIT_CITY: 1.0, GOOD_CITY: 1.0, WORSE_CITY: CORRUPT_PRICE_FACTOR},
            state / "v2",
            QUIET,
            N_ESTIMATORS,
        )
        rollouts = wait_for_rollouts(registry, live, timeout=90)
        candidates = {city: model.rollout.candidate_version for city, model in rollouts.items() if model.rollout}
        yield Setup(stack, registry, stack_file, live, candidates)


def wait_live(registry: ModelRegistry, cities: Sequence[str]) -> dict[str, LiveModel]:
    from local.demo import wait_for_live

    return wait_for_live(registry, cities, QUIET, timeout=90)


@pytest.fixture
def split_city(setup: Setup) -> Iterator[str]:
    """SPLIT_CITY with no rollout running (model-sync's, or one a failed test left, is aborted first), and none
    left running after the test."""
    abort_if_running(setup, SPLIT_CITY)
    yield SPLIT_CITY
    abort_if_running(setup, SPLIT_CITY)


def abort_if_running(setup: Setup, city: str) -> None:
    live = setup.registry.find_live(city)
    if live is not None and live.rollout is not None:
        setup.ops("rollout", "abort", city, "--reason", "test isolation")


# --- HTTP helpers ------------------------------------------------------------------------------------------


def versions_of(http: httpx.Client, api: str, city: str, houses: Sequence[Mapping[str, Any]]) -> list[str]:
    """The version that priced each house, one request for all of them."""
    response = http.post(f"{api}/locations/{city}/predictions", json={"houses": list(houses)})
    assert response.status_code == 200, response.text
    return [prediction["version"] for prediction in response.json()["predictions"]]


def burst(api: str, city: str, houses: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    """``BURST`` concurrent requests for the same houses (every router instance answers some); each one's versions."""

    def one(_: int) -> list[str]:
        with httpx.Client(timeout=30) as http:
            return versions_of(http, api, city, houses)

    with ThreadPoolExecutor(BURST) as pool:
        return list(pool.map(one, range(BURST)))


def seconds_until_every_router(
    api: str, city: str, houses: Sequence[Mapping[str, Any]], shows: Callable[[list[str]], bool], written: float
) -> float:
    """Seconds from ``written`` (monotonic) until a whole burst answers as ``shows`` says (bursts back to back)."""
    while True:
        answers = burst(api, city, houses)
        if all(shows(versions) for versions in answers):
            return time.monotonic() - written
        assert time.monotonic() - written < 3 * VISIBLE_WITHIN_SECONDS, f"not visible: {answers}"


def location(api: str, city: str) -> dict[str, Any]:
    response = httpx.get(f"{api}/locations/{city}", timeout=30)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def seconds_until_every_router_shows(
    api: str, city: str, shows: Callable[[dict[str, Any] | None], bool], written: float
) -> float:
    """Seconds from ``written`` until a whole burst of GET /locations/{city} shows a ``rollout`` as ``shows`` says
    (each router answers from the live item it caches for 4 s, the one its predictions are routed by)."""

    def one(_: int) -> dict[str, Any] | None:
        shown: dict[str, Any] | None = location(api, city)["rollout"]
        return shown

    while True:
        with ThreadPoolExecutor(BURST) as pool:
            answers = list(pool.map(one, range(BURST)))
        if all(shows(rollout) for rollout in answers):
            return time.monotonic() - written
        assert time.monotonic() - written < 3 * VISIBLE_WITHIN_SECONDS, f"not shown: {answers}"


def running(candidate: str, mode: str) -> Callable[[dict[str, Any] | None], bool]:
    return lambda shown: shown is not None and (shown["candidate"], shown["mode"]) == (candidate, mode)


def distinct_houses(city: str, n: int, seed: int) -> list[dict[str, float]]:
    return traffic(city, n, seed)


def start(setup: Setup, city: str, *options: str) -> dict[str, Any]:
    started: dict[str, Any] = setup.ops("rollout", "start", city, "--version", setup.candidates[city], *options)
    return started


def newest_event(setup: Setup, city: str) -> dict[str, Any]:
    """The newest event of the city's rollout history (what ``ops rollout status CITY`` lists first)."""
    history = setup.registry.rollout_history(city, limit=1)
    assert history, f"{city} has no rollout history"
    return history[0].as_dict()


# --- model-sync's policy, GET /locations/{city} ------------------------------------------------------------


def test_model_sync_rolls_retrained_cities_out_and_locations_shows_the_rollouts(setup: Setup) -> None:
    # Given three live cities retrained under RolloutPolicy shadow (WORSE_CITY overridden to canary:50,days:30)
    # When GET /locations/{city} is asked for the two that model-sync put into rollouts (untouched by other tests)
    good, worse = location(setup.api, GOOD_CITY), location(setup.api, WORSE_CITY)
    # Then each shows its running rollout, with its policy and the newest events of its history
    assert good["rollout"]["mode"] == "shadow"
    assert good["rollout"]["candidate"] == setup.candidates[GOOD_CITY]
    assert good["rollout"]["weight_bp"] == 10_000
    assert good["rollout"]["started_by"] == "model-sync"
    assert good["rollout"]["policy"] == GuardPolicy().as_dict()  # model-sync writes every guard, defaulted
    assert "salt" not in good["rollout"]
    assert good["rollout"]["history"][0]["action"] == "started"
    assert worse["rollout"]["mode"] == "canary"
    assert worse["rollout"]["weight_bp"] == 5_000
    assert parse_time(worse["rollout"]["deadline"]) - parse_time(worse["rollout"]["started_at"]) == timedelta(days=30)
    # And the ops CLI lists both, with the city's override
    running = {row["city"]: row for row in setup.ops("rollout", "status")}
    assert {GOOD_CITY, WORSE_CITY} <= set(running)
    assert setup.ops("rollout", "status", WORSE_CITY)["override"] == "canary:50,days:30"
    # And in shadow the live version answers every house, as without a rollout
    with httpx.Client(timeout=30) as http:
        assert set(versions_of(http, setup.api, GOOD_CITY, distinct_houses(GOOD_CITY, 20, 7))) == {
            setup.live[GOOD_CITY]
        }


# --- canary routing ----------------------------------------------------------------------------------------


def test_canary_splits_houses_near_its_weight_and_each_house_keeps_its_version(setup: Setup, split_city: str) -> None:
    # Given a canary of SPLIT_CITY's candidate at 30 %, visible to every router
    live, candidate = setup.live[split_city], setup.candidates[split_city]
    start(setup, split_city, "--mode", "canary", "--weight", "30", "--days", "30")
    seconds_until_every_router_shows(setup.api, split_city, running(candidate, "canary"), time.monotonic())
    houses = distinct_houses(split_city, 600, seed=601)
    with httpx.Client(timeout=30) as http:
        # When 600 distinct houses are priced, 20 per request
        first = [v for i in range(0, 600, 20) for v in versions_of(http, setup.api, split_city, houses[i : i + 20])]
        # Then each is priced by one of the two versions, about 30 % by the candidate (±6 points: 3.2 σ)
        shares = Counter(first)
        assert set(shares) == {live, candidate}
        assert 0.24 <= shares[candidate] / 600 <= 0.36, shares
        # And the same houses, priced again in another order and other batches, keep their version
        order = list(range(600))
        random.Random(5).shuffle(order)
        again: dict[int, str] = {}
        for i in range(0, 600, 7):
            chunk = order[i : i + 7]
            priced = versions_of(http, setup.api, split_city, [houses[j] for j in chunk])
            again.update(zip(chunk, priced, strict=True))
        assert [again[i] for i in range(600)] == first
        # And a caller's house_id decides alone: the same id with other features keeps its version
        ids: list[dict[str, Any]] = [
            {**house, "house_id": f"listing-{n}"} for n, house in enumerate(distinct_houses(split_city, 100, 602))
        ]
        moved = [{**house, "SQUARE_FEET": house["SQUARE_FEET"] + 100} for house in ids]
        by_id = versions_of(http, setup.api, split_city, ids)
        assert versions_of(http, setup.api, split_city, moved) == by_id
        assert set(by_id) == {live, candidate}


# --- visibility of a change ≤ 5 s, abort --------------------------------------------------------------------


def test_a_weight_change_and_an_abort_reach_every_router_within_5_seconds(setup: Setup, split_city: str) -> None:
    # Given a canary at 0 %, every router answering with live alone (a cache may still hold an earlier
    # rollout for up to 4 s) and so holding a state read before the change below
    live, candidate = setup.live[split_city], setup.candidates[split_city]
    start(setup, split_city, "--mode", "canary", "--weight", "0", "--days", "30")
    houses = distinct_houses(split_city, 10, seed=603)
    seconds_until_every_router(setup.api, split_city, houses, lambda v: set(v) == {live}, time.monotonic())
    # When the operator moves the weight to 100 %
    setup.ops("rollout", "weight", split_city, "100")
    written = time.monotonic()
    # Then within 5 s every router sends every house to the candidate
    raised = seconds_until_every_router(setup.api, split_city, houses, lambda v: set(v) == {candidate}, written)
    # When the operator aborts the rollout
    setup.ops("rollout", "abort", split_city, "--reason", "e2e abort")
    written = time.monotonic()
    # Then within 5 s every router answers with live again
    aborted = seconds_until_every_router(setup.api, split_city, houses, lambda v: set(v) == {live}, written)
    print(f"weight 0 → 100 % visible to every router in {raised:.2f} s; abort in {aborted:.2f} s")
    assert raised <= VISIBLE_WITHIN_SECONDS, raised
    assert aborted <= VISIBLE_WITHIN_SECONDS, aborted
    # And the abort is recorded: the candidate is back to standby, the history says who and why
    assert setup.registry.version(split_city, candidate).status == "standby"
    event = newest_event(setup, split_city)
    assert (event["action"], event["actor"], event["reason"]) == ("aborted", "operator", "e2e abort")
    assert location(setup.api, split_city)["rollout"] is None
    # And a second abort finds nothing to abort (exit 1, the error named)
    with pytest.raises(OpsFailed) as refused:
        setup.ops("rollout", "abort", split_city)
    assert refused.value.error.get("error") == "NoRollout"


# --- time-out ---------------------------------------------------------------------------------------------


def test_a_rollout_without_evidence_times_out_at_its_deadline(setup: Setup, split_city: str) -> None:
    # Given a one-day shadow rollout, its guards set by the operator, that gathers no evidence
    candidate = setup.candidates[split_city]
    guards = ("--guard", "min_labels=5", "--guard", "alpha=0.01")
    rollout = start(setup, split_city, "--mode", "shadow", "--days", "1", *guards)
    begun, deadline = parse_time(rollout["started_at"]), parse_time(rollout["deadline"])
    assert deadline - begun == timedelta(days=1)
    assert (rollout["policy"]["min_labels"], rollout["policy"]["alpha"]) == (5, 0.01)
    # When the decider ticks half-way through (simulated clock)
    report = tick(setup.stack, begun + timedelta(hours=12))
    # Then it waits: the rollout runs on, nothing is written
    assert report["timed_out"] == 0, report
    assert report["in_progress"] >= 1, report
    running = setup.registry.find_live(split_city)
    assert running is not None
    assert running.rollout is not None
    assert running.rollout.candidate_version == candidate
    # When it ticks a minute after the deadline
    at = deadline + timedelta(minutes=1)
    report = tick(setup.stack, at)
    written = time.monotonic()
    # Then the rollout ends as timed out, the candidate back to standby, the decision stamped with the tick's time
    assert report["timed_out"] >= 1, report
    assert setup.registry.find_live(split_city).rollout is None  # type: ignore[union-attr]
    assert setup.registry.version(split_city, candidate).status == "standby"
    event = newest_event(setup, split_city)
    assert (event["action"], event["actor"]) == ("timed_out", "rollouts")
    assert "no decision by the deadline" in event["reason"]
    assert parse_time(event["evidence"]["decided_at"]) == at.replace(microsecond=0)
    assert event["evidence"]["verdict"] == "wait"
    # And GET /locations/{city} stops showing it within 5 s
    gone = seconds_until_every_router_shows(setup.api, split_city, lambda shown: shown is None, written)
    assert gone <= VISIBLE_WITHIN_SECONDS, gone


# --- a failing candidate ------------------------------------------------------------------------------------


def broken_candidate(setup: Setup, city: str) -> str:
    """A standby version newer than the others whose artifact at its MME key is not a model (loading it fails)."""
    body = b"not a model.tar.gz " + str(time.time_ns()).encode()
    sha = hashlib.sha256(body).hexdigest()
    now = datetime.now(UTC)
    version = make_version(now + timedelta(days=1), sha)  # newer than any version trained by this module
    key = KeyLayout(setup.stack.info.prefix).mme_key(city, version)
    setup.stack.client("s3").put_object(Bucket=setup.stack.info.bucket, Key=key, Body=body)
    record = ModelVersion(city, version, "standby", key, key, sha, now.isoformat(timespec="seconds"))
    setup.registry.record_version(record)
    return version


def test_a_failing_candidate_never_turns_a_live_200_into_an_error(setup: Setup, split_city: str) -> None:
    # Given a candidate whose artifact cannot be loaded, in a canary that sends it every house
    live = setup.live[split_city]
    broken = broken_candidate(setup, split_city)
    setup.ops("rollout", "start", split_city, "--version", broken, "--mode", "canary", "--weight", "100")
    seconds_until_every_router_shows(setup.api, split_city, running(broken, "canary"), time.monotonic())
    houses = distinct_houses(split_city, 5, seed=604)
    # When houses are priced, alone and in batches, concurrently
    answers = burst(setup.api, split_city, houses) + burst(setup.api, split_city, houses[:1])
    # Then every request is a 200 (versions_of asserts it) priced by live, which stood in for the candidate
    assert all(set(versions) == {live} for versions in answers), answers
    # And each failed candidate call reaches the rollout's operational evidence (the decider's error-rate guard)
    calls = len(answers)
    poll(f"{calls} failed candidate calls", lambda: failed_calls(setup, split_city, broken) >= calls, 60)
    assert failed_calls(setup, split_city, broken) == calls
    # When the same candidate is shadowed instead (every house sampled for scoring off the response path)
    setup.ops("rollout", "abort", split_city, "--reason", "switch to shadow")
    setup.ops("rollout", "start", split_city, "--version", broken, "--mode", "shadow", "--weight", "100")
    seconds_until_every_router_shows(setup.api, split_city, running(broken, "shadow"), time.monotonic())
    answers = burst(setup.api, split_city, houses)
    # Then live answers every request as before
    assert all(set(versions) == {live} for versions in answers), answers
    # And the shadow scoring's failed call is counted too, off the response path
    poll("the shadow scoring's failure", lambda: failed_calls(setup, split_city, broken) > calls, 60)


def failed_calls(setup: Setup, city: str, candidate: str) -> int:
    return int(evidence_of(setup.stack, city, candidate).get("candidate_errors", 0))


# --- promote and roll back on live evidence ----------------------------------------------------------------


def priced(setup: Setup, city: str, n: int, seed: int) -> list[Priced]:
    """Price ``n`` new houses through the HTTP API, 10 per request."""
    with httpx.Client(timeout=60) as http:
        return price_houses(http, setup.api, city, traffic(city, n, seed))


def sold(setup: Setup, houses: Sequence[Priced]) -> None:
    """Each priced house sells (the generator's price) and its label arrives through POST /feedback."""
    with httpx.Client(timeout=60) as http:
        post_labels(http, setup.api, [label_of(p) for p in houses])


def rollout_in(setup: Setup, city: str, mode: str) -> Rollout:
    """The city's rollout in progress, which must be a ``mode`` one."""
    rollout = setup.registry.find_live(city).rollout  # type: ignore[union-attr]
    assert rollout is not None
    assert rollout.mode == mode
    return rollout


def test_a_better_candidate_is_promoted_from_shadow_on_paired_labels(setup: Setup) -> None:
    # Given GOOD_CITY's shadow rollout (live trained on prices 15 % low, the candidate on the right ones)
    city, live, candidate = GOOD_CITY, setup.live[GOOD_CITY], setup.candidates[GOOD_CITY]
    rollout = rollout_in(setup, city, "shadow")
    # When 80 houses are priced (by live), scored by the candidate off the response path, and sell
    houses = priced(setup, city, 80, seed=605)
    assert {p.version for p in houses} == {live}
    scored = wait_for_calls(setup.stack, city, candidate, 80 // HOUSES_PER_REQUEST, timeout=60)
    assert scored["candidate_errors"] == 0, scored
    sold(setup, houses)
    poll("80 paired labels", lambda: evidence_of(setup.stack, city, candidate).get("paired_labels", 0) >= 80, 60)
    # And the decider ticks three simulated days after the start
    report = tick(setup.stack, parse_time(rollout.started_at) + timedelta(days=3))
    # Then the candidate is live, promoted through the registry's monotonic write, with its evidence recorded
    assert report["promoted"] >= 1, report
    now_live = setup.registry.find_live(city)
    assert now_live is not None
    assert (now_live.version, now_live.rollout) == (candidate, None)
    assert setup.registry.version(city, live).status == "standby"
    event = newest_event(setup, city)
    assert (event["action"], event["actor"], event["candidate_version"]) == ("promoted", "rollouts", candidate)
    accuracy = event["evidence"]["guards"]["accuracy"]
    assert accuracy["labels"] == 80, accuracy
    assert accuracy["difference"] < 0, accuracy
    assert accuracy["p_promote"] < accuracy["alpha"] < accuracy["p_rollback"], accuracy
    # And within 5 s every router prices with it
    written = time.monotonic()
    new = distinct_houses(city, 3, seed=606)
    seconds = seconds_until_every_router(setup.api, city, new, lambda v: set(v) == {candidate}, written)
    assert seconds <= VISIBLE_WITHIN_SECONDS
    assert location(setup.api, city)["rollout"] is None


def test_a_worse_candidate_is_rolled_back_from_canary_on_each_versions_labels(setup: Setup) -> None:
    # Given WORSE_CITY's canary at 50 % (the candidate trained on prices recorded at 60 %)
    city, live, candidate = WORSE_CITY, setup.live[WORSE_CITY], setup.candidates[WORSE_CITY]
    rollout = rollout_in(setup, city, "canary")
    # When 160 houses are priced, each by its arm, and sell
    houses = priced(setup, city, 160, seed=607)
    sold(setup, houses)
    arms = Counter(p.version for p in houses)
    assert set(arms) == {live, candidate}, arms
    assert min(arms.values()) >= 50, arms

    def counted() -> bool:
        found = evidence_of(setup.stack, city, candidate)
        return found.get("live_labels", 0) + found.get("candidate_labels", 0) >= 160

    poll("160 labels in the two arms", counted, 60)
    # And the decider ticks a day after the start
    report = tick(setup.stack, parse_time(rollout.started_at) + timedelta(days=1))
    # Then the candidate is rolled back and rejected with the evidence in words; live stays
    assert report["rolled_back"] >= 1, report
    assert setup.registry.find_live(city).version == live  # type: ignore[union-attr]
    rejected = setup.registry.version(city, candidate)
    assert rejected.status == "rejected", rejected
    assert rejected.reason, rejected
    event = newest_event(setup, city)
    assert (event["action"], event["actor"]) == ("rolled_back", "rollouts")
    accuracy = event["evidence"]["guards"]["accuracy"]
    assert (accuracy["labels"], accuracy["live_labels"]) == (arms[candidate], arms[live]), accuracy
    assert accuracy["difference"] > 0, accuracy
    assert accuracy["p_rollback"] < accuracy["alpha"], accuracy
    # And within 5 s the candidate's houses are priced by live again
    theirs = [p.house for p in houses if p.version == candidate][:10]
    seconds = seconds_until_every_router(setup.api, city, theirs, lambda v: set(v) == {live}, time.monotonic())
    assert seconds <= VISIBLE_WITHIN_SECONDS


# --- make demo-rollout's core -------------------------------------------------------------------------------


def test_the_rollout_demo_promotes_the_better_candidate_and_rolls_back_the_worse(setup: Setup, tmp_path: Path) -> None:
    # Given this module's stack (RolloutPolicy shadow, the scheduler paused), whose own rollouts have ended or wait
    # When make demo-rollout's steps run on it, with its own two cities
    result = run_rollout_demo(setup.stack, tmp_path, QUIET, n_estimators=N_ESTIMATORS, timeout=60)
    # Then the shadow candidate is promoted and the canary's rolled back, each on labels, and the answers follow
    assert verdict(result) == []
    assert set(result.served[DEMO_WORSE_CITY]) == {result.live[DEMO_WORSE_CITY], result.candidates[DEMO_WORSE_CITY]}
    assert set(result.served[DEMO_GOOD_CITY]) == {result.live[DEMO_GOOD_CITY]}
    # And the first tick (30 labels per city, under min_labels) decided nothing, the second both
    first, second = result.ticks
    assert (first["promoted"], first["rolled_back"], first["waiting"]) == (0, 0, first["rollouts"]), first
    assert (second["promoted"], second["rolled_back"]) == (1, 1), second
