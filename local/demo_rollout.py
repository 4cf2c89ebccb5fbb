"""``make demo-rollout``: progressive delivery on the local stack; one candidate promoted, one rolled back.

docs/rollouts.md ("Demo") walks through it. Two cities, each with a live model and then a retrained
candidate, both through the real path (training → S3 → model-sync, with ``ROLLOUT_POLICY=shadow``):

1. start the local stack: model-sync's ``RolloutPolicy`` is ``shadow``; the scheduler is paused, so the
   decider runs only on the demo's simulated clock (``POST {scheduler}/ticks`` with a chosen ``time``);
   captures are buffered 1 s instead of the template's 300 s;
2. train and publish version 1 of both cities: ``GOOD_CITY``'s on stale prices (every sale recorded at
   ``STALE_PRICE_FACTOR`` of today's price: it prices too low), ``WORSE_CITY``'s on the right prices;
   both go live (a city's first version has nothing to be rolled out against);
3. ``python -m ops rollout policy WORSE_CITY canary:50`` (the city's override of the deployment's shadow);
   train and publish version 2: ``GOOD_CITY`` on the right prices (the better model), ``WORSE_CITY`` on
   corrupted ones (``CORRUPT_PRICE_FACTOR``; it passes the offline gate, which measures both on the
   candidate's own, corrupted, validation rows) → model-sync starts a shadow and a canary rollout;
4. replay traffic through the HTTP API: every prediction says which version priced it (canary: about
   half of ``WORSE_CITY``'s houses by the candidate; shadow: live answers everything); the captures reach
   S3 through the Firehose stand-in and the quality function scores the shadow's sampled rows with the
   candidate (off the response path);
5. the houses sell: labels arrive late through ``POST /feedback`` in two waves, and the decider ticks at
   simulated times after each (day 2: too few labels, both wait; day 5: decided);
6. print what ``python -m ops rollout status CITY --json`` keeps: the history with the evidence (labels,
   the statistic, the always-valid p-values, the decision), and a prediction by each city's live version.

The sale dates cannot follow the simulated clock past tomorrow (``POST /feedback`` refuses a sale in the
future); the decision time is the tick's, which is what the deadline and the audit trail use.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

from house_prices import schema
from house_prices.registry import LiveModel, ModelRegistry
from local.demo import _stack_running, wait_for_live
from local.demo_quality import Priced, finish, label_of, quality_table, traffic, train_and_publish
from local.scheduler import parse_time, request_tick
from local.stack import DEFAULT_STATE_DIR, LocalStack, StackConfig, print_banner
from ops import rollouts as ops_rollouts
from ops import tables
from training.report import make_console

# Names outside the notebook cities and the other demos', so the demo's core can share a stack with other suites.
GOOD_CITY = "Portland_OR"
WORSE_CITY = "Atlanta_GA"
DEMO_CITIES = (GOOD_CITY, WORSE_CITY)
DEPLOYMENT_POLICY = "shadow"
WORSE_CITY_POLICY = "canary:50"
STALE_PRICE_FACTOR = 0.85  # GOOD_CITY's live model: trained when prices were 15 % lower
CORRUPT_PRICE_FACTOR = 0.6  # WORSE_CITY's candidate: trained on prices recorded at 60 %
ROLLOUT_FUNCTION = "RolloutFunction"
TRAFFIC_SEED = 1818  # disjoint from training's (42): the replayed houses are new to the models
PREDICTIONS_PER_CITY = 200
HOUSES_PER_REQUEST = 10
# Labels per city in the first wave: under the guards' default minimum (50 per sample), so day 2 waits.
FIRST_WAVE = 30
N_ESTIMATORS = 20
# Decision times, in simulated days after the rollouts started.
TICK_DAYS = (2, 5)


@dataclass
class RolloutDemoResult:
    live: dict[str, str]  # city -> version 1
    candidates: dict[str, str]  # city -> version 2
    served: dict[str, dict[str, int]]  # city -> version -> predictions it priced
    ticks: list[dict[str, Any]] = field(default_factory=list)  # the decider's reports
    status: dict[str, dict[str, Any]] = field(default_factory=dict)  # city -> ops rollout status CITY --json
    final: dict[str, str] = field(default_factory=dict)  # city -> the version that answers afterwards
    timings: dict[str, float] = field(default_factory=dict)

    def outcome(self, city: str) -> str | None:
        """The last decision recorded for the city's candidate (``promoted``, ``rolled_back``...)."""
        event = decision_event(self.status.get(city, {}), self.candidates[city])
        return None if event is None else str(event["action"])

    def as_dict(self) -> dict[str, Any]:
        return {
            "live": self.live,
            "candidates": self.candidates,
            "served": self.served,
            "ticks": self.ticks,
            "decisions": {city: decision_event(self.status.get(city, {}), self.candidates[city]) for city in self.live},
            "final": self.final,
            "seconds": self.timings,
        }


# --- the operator's CLI and the simulated clock, as a person would use them ---------------------------------


class OpsFailed(RuntimeError):
    """``python -m ops`` exited non-zero; ``error`` is its JSON error body (``{"error", "message"}``) if any."""

    def __init__(self, argv: Sequence[str], code: int, error: Mapping[str, Any] | None, stderr: str) -> None:
        super().__init__(f"ops {' '.join(argv)}: exit {code}: {error or stderr[-500:]}")
        self.code = code
        self.error = error or {}


def write_stack_file(stack: LocalStack, path: Path) -> Path:
    """The stack's description where ``python -m ops --stack-file`` reads it (``make up`` writes the same)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(stack.info.as_dict(), indent=2, default=str) + "\n")
    return path


def ops_cli(stack_file: Path, *argv: str, timeout: float = 60.0) -> Any:
    """``python -m ops --stack-file F --json ARGV...`` in its own process; its JSON answer, or OpsFailed."""
    done = subprocess.run(
        [sys.executable, "-m", "ops", "--stack-file", str(stack_file), "--json", *argv],
        env=stack_only_environment(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        try:
            error = json.loads(done.stderr.strip().splitlines()[-1])
        except (ValueError, IndexError):
            error = None
        raise OpsFailed(argv, done.returncode, error if isinstance(error, dict) else None, done.stderr)
    return json.loads(done.stdout)


def stack_only_environment() -> dict[str, str]:
    """This process's environment without what would outrank the stack file in ``ops`` (resource names,
    endpoints, credentials): the CLI then talks to the stack the file describes, whatever this shell exports."""
    return {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("AWS_ENDPOINT_URL") and name not in _OUTRANKING_STACK_FILE
    }


_OUTRANKING_STACK_FILE = frozenset(
    {
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "ARTIFACT_BUCKET",
        "MODEL_PREFIX",
        "REGISTRY_TABLE",
        "QUALITY_TABLE",
        "MODEL_SYNC_FAILURE_QUEUE_URL",
        "ALARM_NAME_PREFIX",
    }
)


def tick(stack: LocalStack, at: datetime) -> dict[str, Any]:
    """One decider run at the simulated time ``at`` (the scheduler's on-demand tick); the decider's report."""
    answer = request_tick(stack.info.schedulers[ROLLOUT_FUNCTION], at.isoformat())
    report: dict[str, Any] = answer["result"]
    return report


def started_at(live: LiveModel) -> datetime:
    assert live.rollout is not None
    return parse_time(live.rollout.started_at)


def decision_event(status: Mapping[str, Any], candidate: str) -> dict[str, Any] | None:
    """The newest history event that ended ``candidate``'s rollout (promoted, rolled back, aborted...)."""
    for event in status.get("history", []):  # newest first
        if event["candidate_version"] == candidate and event["action"] not in ("started", "weight"):
            return dict(event)
    return None


# --- waiting for the asynchronous parts ---------------------------------------------------------------------


def poll(what: str, ready: Callable[[], Any], timeout: float, interval: float = 0.5) -> Any:
    """``ready()``'s first truthy answer, or TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        found = ready()
        if found:
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        time.sleep(interval)


def wait_for_rollouts(registry: ModelRegistry, live: Mapping[str, str], timeout: float) -> dict[str, LiveModel]:
    """Each city's live item once it carries a rollout of a version newer than ``live[city]``."""

    def running() -> dict[str, LiveModel] | None:
        found = {city: registry.find_live(city) for city in live}
        done = {
            city: model
            for city, model in found.items()
            if model is not None and model.rollout is not None and model.rollout.candidate_version > live[city]
        }
        return done if len(done) == len(live) else None

    found: dict[str, LiveModel] = poll("model-sync starting the rollouts", running, timeout)
    return found


def evidence_of(stack: LocalStack, city: str, candidate: str) -> dict[str, Any]:
    """The rollout's evidence summary (``RolloutEvidence.summary``) as ``ops rollout status`` reads it; {} if none."""
    summary, _ = ops_rollouts.evidence(stack.client("dynamodb"), lambda: quality_table(stack), city, candidate)
    return summary or {}


def wait_for_calls(stack: LocalStack, city: str, candidate: str, requests: int, timeout: float) -> dict[str, Any]:
    """Wait until the rollout's operational evidence counts ``requests`` live calls: every capture object of
    them was read by the quality function, and in shadow mode its sampled rows were scored by the candidate
    (the same transaction counts both), so their labels find the candidate's prices."""
    found: dict[str, Any] = poll(
        f"{city}: {requests} live calls in the rollout's evidence",
        lambda: (e := evidence_of(stack, city, candidate)) and e.get("live_requests", 0) >= requests and e,
        timeout,
    )
    return found


def labels_counted(stack: LocalStack, city: str, candidate: str, mode: str) -> int:
    """Labels the rollout's evidence holds: paired (shadow), or both arms' (canary)."""
    found = evidence_of(stack, city, candidate)
    if mode == "shadow":
        return int(found.get("paired_labels", 0))
    return int(found.get("live_labels", 0)) + int(found.get("candidate_labels", 0))


def wait_for_labels(
    stack: LocalStack, rollouts: Mapping[str, LiveModel], expected: Mapping[str, int], timeout: float
) -> None:
    def counted() -> bool:
        return all(
            labels_counted(stack, city, model.rollout.candidate_version, model.rollout.mode) >= expected[city]
            for city, model in rollouts.items()
            if model.rollout is not None
        )

    poll("the rollouts' evidence counting the labels", counted, timeout)


# --- traffic and labels --------------------------------------------------------------------------------------


def price_houses(http: httpx.Client, api_url: str, city: str, houses: Sequence[Mapping[str, float]]) -> list[Priced]:
    """Price ``houses`` through the HTTP API, ``HOUSES_PER_REQUEST`` per request; each with the version that
    priced it (a canary splits a request between the versions)."""
    priced: list[Priced] = []
    for start in range(0, len(houses), HOUSES_PER_REQUEST):
        batch = list(houses[start : start + HOUSES_PER_REQUEST])
        response = http.post(f"{api_url}/locations/{city}/predictions", json={"houses": batch})
        if response.status_code != 200:
            raise RuntimeError(f"{city}: HTTP {response.status_code}: {response.text[:500]}")
        for house, prediction in zip(batch, response.json()["predictions"], strict=True):
            priced.append(Priced(city, prediction["version"], house, prediction["prediction_id"], prediction["price"]))
    return priced


def post_labels(http: httpx.Client, api_url: str, labels: Sequence[Mapping[str, Any]]) -> None:
    for start in range(0, len(labels), 500):
        response = http.post(f"{api_url}/feedback", json={"labels": list(labels[start : start + 500])})
        if response.status_code != 202:
            raise RuntimeError(f"POST /feedback: HTTP {response.status_code}: {response.text[:500]}")


# --- training ------------------------------------------------------------------------------------------------


# --- the demo ------------------------------------------------------------------------------------------------


DECISION_COLUMNS = (
    "city",
    "mode",
    "action",
    "labels",
    "live_mape",
    "difference",
    "relative",
    "p_rollback",
    "p_promote",
    "decided_at",
)


def decision_row(city: str, event: Mapping[str, Any]) -> dict[str, Any]:
    """One decision from the history: the sample, the statistic (mean APE candidate − live, in percentage
    points ± its standard error), both always-valid p-values, and when it was decided (simulated time)."""
    numbers = event.get("evidence") or {}
    accuracy = (numbers.get("guards") or {}).get("accuracy") or {}
    labels = accuracy.get("labels")
    if accuracy.get("mode") == "canary":
        labels = f"{accuracy.get('labels')} + {accuracy.get('live_labels')} live"
    difference, std_error = accuracy.get("difference"), accuracy.get("std_error")
    relative, live_mape = accuracy.get("relative_difference"), accuracy.get("live_mean_ape")
    return {
        "city": city,
        "mode": numbers.get("mode", ""),
        "action": event["action"],
        "labels": labels,
        "live_mape": "" if live_mape is None else f"{live_mape:.1%}",
        "difference": ""
        if difference is None or std_error is None
        else f"{difference * 100:+.1f} pts ± {std_error * 100:.1f}",
        "relative": "" if relative is None else f"{relative:+.0%}",
        "p_rollback": p_value(accuracy.get("p_rollback")),
        "p_promote": p_value(accuracy.get("p_promote")),
        "decided_at": numbers.get("decided_at", event.get("at")),
    }


def p_value(value: float | None) -> str:
    """An always-valid p-value as people read it (the history keeps 6 digits and 0 below 1e-100)."""
    if value is None:
        return ""
    return "< 1e-100" if value == 0 else f"{value:.2g}"


def run_rollout_demo(
    stack: LocalStack,
    work_dir: Path,
    console: Console,
    *,
    predictions_per_city: int = PREDICTIONS_PER_CITY,
    first_wave: int = FIRST_WAVE,
    n_estimators: int = N_ESTIMATORS,
    timeout: float = 90.0,
) -> RolloutDemoResult:
    """The demo's core on a running stack (RolloutPolicy shadow, schedules paused, captures buffered briefly)."""
    timings: dict[str, float] = {}
    started = time.perf_counter()
    registry = ModelRegistry(stack.client("dynamodb"), stack.info.registry_table)
    stack_file = write_stack_file(stack, work_dir / "stack.json")
    api = stack.info.api_url

    console.rule(
        f"2. version 1: {GOOD_CITY} trained on prices at {STALE_PRICE_FACTOR:.0%}, {WORSE_CITY} on the right ones"
    )
    train_and_publish(stack, {GOOD_CITY: STALE_PRICE_FACTOR, WORSE_CITY: 1.0}, work_dir / "v1", console, n_estimators)
    first = wait_for_live(registry, DEMO_CITIES, console, timeout=timeout)
    live = {city: first[city].version for city in DEMO_CITIES}
    timings["live"] = time.perf_counter() - started

    console.rule(
        f"3. version 2 through model-sync (RolloutPolicy {DEPLOYMENT_POLICY}; {WORSE_CITY}: {WORSE_CITY_POLICY})"
    )
    override = ops_cli(stack_file, "rollout", "policy", WORSE_CITY, WORSE_CITY_POLICY)
    console.print(f"python -m ops rollout policy {WORSE_CITY} {WORSE_CITY_POLICY} → {override}", highlight=False)
    train_and_publish(stack, {GOOD_CITY: 1.0, WORSE_CITY: CORRUPT_PRICE_FACTOR}, work_dir / "v2", console, n_estimators)
    rollouts = wait_for_rollouts(registry, live, timeout)
    candidates = {city: model.rollout.candidate_version for city, model in rollouts.items() if model.rollout}
    modes = {city: model.rollout.mode for city, model in rollouts.items() if model.rollout}
    timings["rollouts_started"] = time.perf_counter() - started
    running = ops_cli(stack_file, "rollout", "status")
    tables.print_rows(console, running, ops_rollouts.ROLLOUT_COLUMNS, "python -m ops rollout status")

    console.rule(f"4. replay {predictions_per_city} houses per city through the HTTP API")
    served: dict[str, dict[str, int]] = {}
    priced: dict[str, list[Priced]] = {}
    with httpx.Client(timeout=60) as http:
        for index, city in enumerate(DEMO_CITIES):
            priced[city] = price_houses(http, api, city, traffic(city, predictions_per_city, TRAFFIC_SEED + index))
            served[city] = dict(Counter(p.version for p in priced[city]))
            shares = ", ".join(
                f"{'candidate' if v == candidates[city] else 'live'} {v}: {n}" for v, n in sorted(served[city].items())
            )
            console.print(f"{city} ({modes[city]}): priced by {shares}", highlight=False)
        timings["priced"] = time.perf_counter() - started
        console.rule("4. captures → S3 → QualityFunction: each version's calls counted, the shadow's rows scored")
        for city in DEMO_CITIES:
            # Shadow: one live call per request. Canary: the requests with a house on the live side.
            live_calls = sum(
                any(p.version == live[city] for p in priced[city][i : i + HOUSES_PER_REQUEST])
                for i in range(0, len(priced[city]), HOUSES_PER_REQUEST)
            )
            found = wait_for_calls(stack, city, candidates[city], live_calls, timeout)
            console.print(f"{city} evidence: {json.dumps(found)}", highlight=False)
        timings["scored"] = time.perf_counter() - started

        day0 = max(started_at(model) for model in rollouts.values())
        waves = [
            {city: [label_of(p) for p in priced[city][:first_wave]] for city in DEMO_CITIES},
            {city: [label_of(p) for p in priced[city][first_wave:]] for city in DEMO_CITIES},
        ]
        expected = dict.fromkeys(DEMO_CITIES, 0)
        ticks = []
        for number, (wave, days) in enumerate(zip(waves, TICK_DAYS, strict=True), start=1):
            console.rule(
                f"5.{number} {sum(len(w) for w in wave.values())} houses sell (POST /feedback); "
                f"the decider ticks at day {days}"
            )
            post_labels(http, api, [label for city in DEMO_CITIES for label in wave[city]])
            expected = {city: expected[city] + len(wave[city]) for city in DEMO_CITIES}
            wait_for_labels(stack, rollouts, expected, timeout)
            timings[f"wave_{number}_counted"] = time.perf_counter() - started
            for city in DEMO_CITIES:
                found = evidence_of(stack, city, candidates[city])
                console.print(f"{city} evidence: {json.dumps(found)}", highlight=False)
            at = day0 + timedelta(days=days)
            report = tick(stack, at)
            ticks.append(report)
            console.print(f"decider at {at.isoformat()}: {json.dumps(report)}", highlight=False)

        console.rule("6. python -m ops rollout status CITY --json: the decisions and their evidence")
        status = {city: ops_cli(stack_file, "rollout", "status", city) for city in DEMO_CITIES}
        rows = [
            decision_row(city, event)
            for city in DEMO_CITIES
            if (event := decision_event(status[city], candidates[city])) is not None
        ]
        tables.print_rows(console, rows, DECISION_COLUMNS, "Decisions (accuracy: mean APE, always-valid p-values)")
        for city in DEMO_CITIES:
            event = decision_event(status[city], candidates[city])
            if event is not None:
                console.print(f"{city}: {event['action']} — {event['reason']}", highlight=False)

        console.rule("6. who answers now (the router's cache: ≤ 5 s)")
        # The promoted candidate, and the rolled-back candidate's live version.
        answering = {GOOD_CITY: candidates[GOOD_CITY], WORSE_CITY: live[WORSE_CITY]}
        final = {city: answering_version(http, api, city, answering[city]) for city in DEMO_CITIES}
        for city, version in final.items():
            console.print(f"{city}: priced by {version}", highlight=False)
    timings["done"] = time.perf_counter() - started
    return RolloutDemoResult(live, candidates, served, ticks, status, final, timings)


def answering_version(http: httpx.Client, api_url: str, city: str, expected: str, timeout: float = 6.0) -> str:
    """The version that prices a new house, polled until it is ``expected`` (the router's cache: ≤ 5 s) or
    ``timeout`` passes; the last one seen."""
    deadline = time.monotonic() + timeout
    while True:
        response = http.post(f"{api_url}/locations/{city}/predictions", json=schema.EXAMPLE_HOUSE)
        response.raise_for_status()
        version = str(response.json()["predictions"][0]["version"])
        if version == expected or time.monotonic() > deadline:
            return version
        time.sleep(0.25)


def verdict(result: RolloutDemoResult) -> list[str]:
    """What the demo should show; an empty list when it showed it."""
    problems = []
    if result.outcome(GOOD_CITY) != "promoted":
        problems.append(f"{GOOD_CITY}'s candidate was not promoted: {result.outcome(GOOD_CITY)}")
    if result.outcome(WORSE_CITY) != "rolled_back":
        problems.append(f"{WORSE_CITY}'s candidate was not rolled back: {result.outcome(WORSE_CITY)}")
    if result.final.get(GOOD_CITY) != result.candidates[GOOD_CITY]:
        problems.append(f"{GOOD_CITY} is answered by {result.final.get(GOOD_CITY)}, not the promoted candidate")
    if result.final.get(WORSE_CITY) != result.live[WORSE_CITY]:
        problems.append(f"{WORSE_CITY} is answered by {result.final.get(WORSE_CITY)}, not its live version")
    return problems


def stack_config(state_dir: Path, write_stack_file: bool, persist: bool = False) -> StackConfig:
    """The demo's stack: model-sync rolls candidates out; the decider runs on the demo's clock only."""
    return StackConfig(
        state_dir=state_dir,
        write_stack_file=write_stack_file,
        persist=persist,
        parameters={"RolloutPolicy": DEPLOYMENT_POLICY},
        capture_buffer_seconds=1.0,
        schedules_paused=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make demo-rollout", description=__doc__.splitlines()[0])
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    parser.add_argument("--predictions", type=int, default=PREDICTIONS_PER_CITY, help="per city")
    parser.add_argument("--n-estimators", type=int, default=N_ESTIMATORS)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    console = make_console()
    started = time.perf_counter()
    with LocalStack(stack_config(args.state_dir, write_stack_file=not _stack_running(args.state_dir))) as stack:
        print_banner(stack.info, time.perf_counter() - started)
        result = run_rollout_demo(
            stack,
            args.state_dir / "training-rollout",
            console,
            predictions_per_city=args.predictions,
            n_estimators=args.n_estimators,
        )
    success = f"{GOOD_CITY}: the better candidate was promoted; {WORSE_CITY}: the worse one was rolled back"
    return finish(console, verdict(result), lambda: success, started, args.json, result.as_dict())


if __name__ == "__main__":
    sys.exit(main())
