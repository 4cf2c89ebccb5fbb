"""CPU per warm invocation of the router's real handler: what Lambda bills, without the local bridge.

Starts a fresh local stack, trains and promotes one notebook city through the real path, then imports
``RouterFunction``'s handler in this process the way ``sam local invoke`` does (the template's
environment, the stack's endpoint URLs) and invokes it with the same API Gateway events the tests
use (``events/api-predictions-single.json`` and ``-batch.json``, whose city it trains). Each event
runs ``--warmup`` times, then ``--invocations`` times measured: process CPU time and wall time per
invocation (the wall time includes the endpoint's answer, the CPU time is the handler alone). Logs
go to /dev/null while measuring, as they would go to Lambda's log pipe. ``--profile`` prints the
handler's heaviest functions.

Capture on vs off (target, docs/quality.md: capture adds <= 0.1 ms to the p99 CPU of an invocation): the same warm
handler runs each event with its ``PredictionCapture`` (the template's ``CAPTURE_SAMPLE_RATE=1.0``) and
without one, alternating call by call so that machine drift hits both alike; each invocation's CPU time
is taken on its own, and the p50/p99/mean of each mode and their differences are printed. The direct
cost of ``PredictionCapture.record`` alone (no handler around it) is printed too.

Routing on vs off (target, docs/rollouts.md: routing adds <= 50 µs to the p99 of an invocation): the same warm handler
runs each event with the city's live item as the registry returns it (no rollout) and with a canary at
``--canary-weight-bp`` (default 1,000: 10 %) on the same live item, alternating call by call as above.
Both modes read the live item from the same in-process stand-in for the cached registry, so neither
pays a lookup the other does not. The candidate's TargetModel is the live version's artifact (no second
model is trained): the candidate's houses cost a real InvokeEndpoint on the same model. A single house
makes one call either way, so its difference is the routing alone; a batch split between both sides
makes two calls, and that second call (the canary's inherent cost, not routing) shows in its row. The
routing decision alone (``router.routing.plan``, no handler around it) is timed too.

Shadow on vs off (target, docs/rollouts.md: shadow adds <= 0.1 ms to the live p99 and never turns a live 200 into an
error): the same again with a shadow rollout at ``--shadow-weight-bp`` (default 5,000: every house is
bucketed and about half are tagged ``sampled``, so a batch is captured as two lines) in place of the
canary, CPU and wall time per invocation. The shadow candidate's TargetModel names an artifact that
does not exist: any call to it on the response path would fail the request, so every measured 200 also
shows that the live path never touches the candidate (it is scored later, off the response path).

The local HTTP API's throughput (``bench/http_api_throughput.py``, ``make bench``) also pays the
HTTP server, the event translation and the sandbox process hop, which API Gateway and Lambda do
elsewhere; this is the router's own share.

    .venv/bin/python bench/router_invocation.py [--invocations 500] [--capture-invocations N]
        [--routing-invocations N] [--canary-weight-bp 1000] [--shadow-weight-bp 5000] [--profile]
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import dataclasses
import json
import os
import pstats
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from rich.console import Console

from house_prices.registry import ModelRegistry
from local.demo import train_and_publish, wait_for_live
from local.lambda_runtime import LambdaContext, load_handler, stack_client_environment, stack_resources
from local.stack import LocalStack, StackConfig

ROOT = Path(__file__).resolve().parents[1]
EVENTS = {
    "1 house": ROOT / "events" / "api-predictions-single.json",
    "batch": ROOT / "events" / "api-predictions-batch.json",
}
FUNCTION = "RouterFunction"


@contextlib.contextmanager
def stdout_discarded() -> Iterator[None]:
    """Point fd 1 at /dev/null: Powertools' logger holds the stream object, not the name."""
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def per_invocation(call: Callable[[], Any], invocations: int) -> tuple[float, float]:
    """(CPU ms, wall ms) per call, averaged over ``invocations`` calls."""
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(invocations):
        call()
    return (time.process_time() - cpu) * 1000 / invocations, (time.perf_counter() - wall) * 1000 / invocations


def percentile(samples: list[float], share: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def capture_on_vs_off(service: Any, invoke: Callable[[], None], invocations: int) -> dict[str, list[float]]:
    """CPU samples of ``invoke`` with the service's capture and without it, alternating call by call
    (the order of each pair alternates too), so machine drift and other load hit both modes alike."""
    capture = service.capture
    samples: dict[str, list[float]] = {"on": [], "off": []}
    try:
        for pair in range(invocations):
            for mode in ("on", "off") if pair % 2 == 0 else ("off", "on"):
                service.capture = capture if mode == "on" else None
                started = time.process_time()
                invoke()
                samples[mode].append((time.process_time() - started) * 1000)
    finally:
        service.capture = capture
    return samples


class FixedLive:
    """The cached registry with ``live_model`` answering one prepared LiveModel (with or without a rollout)."""

    def __init__(self, registry: Any, live: Any) -> None:
        self._registry = registry
        self.live = live

    def live_model(self, city: str) -> Any:
        return self.live

    def __getattr__(self, name: str) -> Any:
        return getattr(self._registry, name)


def canary_of(live: Any, weight_bp: int) -> Any:
    """``live`` with a canary whose candidate is served by the live version's own artifact."""
    return rollout_of(live, weight_bp, "canary", live.target_model)


def shadow_of(live: Any, weight_bp: int) -> Any:
    """``live`` with a shadow rollout whose candidate's artifact does not exist (a call to it would fail)."""
    return rollout_of(live, weight_bp, "shadow", f"{live.city}.29991231T000000Z-0000dead.tar.gz")


def rollout_of(live: Any, weight_bp: int, mode: str, candidate_target_model: str) -> Any:
    from house_prices.registry import Rollout

    rollout = Rollout(
        candidate_version="29991231T000000Z-0000bead",
        candidate_target_model=candidate_target_model,
        mode=mode,  # type: ignore[arg-type]
        weight_bp=weight_bp,
        salt="bench",
        started_at="2026-12-01T00:00:00+00:00",
        deadline="2026-12-15T00:00:00+00:00",
        revision=1,
        policy={},
    )
    return dataclasses.replace(live, rollout=rollout)


def routing_on_vs_off(
    service: Any,
    city: str,
    invoke: Callable[[], None],
    invocations: int,
    weight_bp: int,
    with_rollout: Callable[[Any, int], Any] = canary_of,
    wall: dict[str, list[float]] | None = None,
) -> dict[str, list[float]]:
    """CPU µs of ``invoke`` without a rollout and with ``with_rollout``'s (a canary by default), alternating
    call by call (and the order of each pair), both through the same stand-in registry; the wall µs of the
    same calls go to ``wall`` when given."""
    registry = service.registry
    off = registry.live_model(city)
    modes = {"off": FixedLive(registry, off), "on": FixedLive(registry, with_rollout(off, weight_bp))}
    samples: dict[str, list[float]] = {"on": [], "off": []}
    try:
        for pair in range(invocations):
            for mode in ("on", "off") if pair % 2 == 0 else ("off", "on"):
                service.registry = modes[mode]
                started, started_wall = time.process_time(), time.perf_counter()
                invoke()
                samples[mode].append((time.process_time() - started) * 1e6)
                if wall is not None:
                    wall.setdefault(mode, []).append((time.perf_counter() - started_wall) * 1e6)
    finally:
        service.registry = registry
    return samples


def candidate_houses(event: dict[str, Any], live: Any, weight_bp: int) -> str:
    """How many of an event's houses the canary sends to the candidate, e.g. ``1 of 3``."""
    from house_prices import schema
    from router import routing

    batch = schema.parse_batch(json.loads(event["body"]))
    route = routing.plan(live.city, canary_of(live, weight_bp).rollout, batch.rows, batch.house_ids)
    return f"{len(route.candidate)} of {len(batch.rows)}"


class StandInEndpoint:
    """An endpoint answering at once (one price per CSV row): the router's own CPU, without botocore."""

    def invoke(self, target_model: str, csv_body: str, inference_id: str | None = None) -> list[float]:
        return [1.0] * csv_body.count("\n")


class StandInRegistry:
    def __init__(self, live: Any) -> None:
        self.live = live

    def live_model(self, city: str) -> Any:
        return self.live


def service_on_vs_off(
    houses: int, pairs: int, weight_bp: int, with_rollout: Callable[[Any, int], Any] = canary_of
) -> dict[str, list[float]]:
    """CPU µs of ``RouterService.predict`` (capture to /dev/null) without a rollout and with
    ``with_rollout``'s (a canary by default), alternating, each request with houses never seen before
    (so every side and split occurs)."""
    from house_prices import schema
    from house_prices.registry import LiveModel
    from router.capture import PredictionCapture
    from router.logic import RouterService

    off = LiveModel("Chicago_IL", "20261125T040000Z-1a2b3c4d", "Chicago_IL.20261125T040000Z-1a2b3c4d.tar.gz", "-")
    registry = StandInRegistry(off)
    modes = {"off": off, "on": with_rollout(off, weight_bp)}
    with open(os.devnull, "w") as devnull:
        service = RouterService(
            registry,  # type: ignore[arg-type]
            StandInEndpoint(),
            capture=PredictionCapture(1.0, stream=devnull),
        )
        samples: dict[str, list[float]] = {"on": [], "off": []}
        for pair in range(pairs):
            keys = range(pair * houses, (pair + 1) * houses)
            body = json.dumps(
                {
                    "houses": [
                        {**schema.EXAMPLE_HOUSE, "SQUARE_FEET": 100 + key % 49_000, "LOT_ACRES": key // 49_000 / 100}
                        for key in keys
                    ]
                }
            )
            for mode in ("on", "off") if pair % 2 == 0 else ("off", "on"):
                registry.live = modes[mode]
                started = time.process_time()
                service.predict("Chicago_IL", body)
                samples[mode].append((time.process_time() - started) * 1e6)
            metrics_clear()
    return samples


def metrics_clear() -> None:
    """Powertools keeps every metric of an invocation until it is flushed: drop them between requests."""
    from house_prices.observability import metrics

    metrics.clear_metrics()


def plan_cost_us(city: str, live: Any, weight_bp: int, houses: int, calls: int | None = None) -> tuple[float, float]:
    """(p50, p99) wall µs of one ``router.routing.plan`` of ``houses`` distinct houses at a canary weight."""
    from house_prices import schema
    from router import routing

    rollout = canary_of(live, weight_bp).rollout
    row = [schema.EXAMPLE_HOUSE[name] for name in schema.FEATURE_NAMES]
    rows = [(row[0], row[1] + i, *row[2:]) for i in range(houses)]
    house_ids: list[str | None] = [None] * houses
    samples = []
    for _ in range(calls or max(200, 20_000 // houses)):
        started = time.perf_counter_ns()
        routing.plan(city, rollout, rows, house_ids)
        samples.append((time.perf_counter_ns() - started) / 1000)
    return percentile(samples, 0.5), percentile(samples, 0.99)


def print_on_off(name: str, samples: dict[str, list[float]], unit_format: str, width: int = 10) -> None:
    """p50/p99/mean of each mode and their differences (on - off)."""
    for mode in ("on", "off"):
        values = samples[mode]
        print(
            f"{name:<{width}}{mode:<5}{percentile(values, 0.5):>8{unit_format}}"
            f"{percentile(values, 0.99):>8{unit_format}}{sum(values) / len(values):>8{unit_format}}"
        )
    on, off = samples["on"], samples["off"]
    mean_difference = sum(on) / len(on) - sum(off) / len(off)
    print(
        f"{name:<{width}}{'diff':<5}{percentile(on, 0.5) - percentile(off, 0.5):>+8{unit_format}}"
        f"{percentile(on, 0.99) - percentile(off, 0.99):>+8{unit_format}}{mean_difference:>+8{unit_format}}"
    )


def record_cost_us(capture: Any, houses: int, calls: int | None = None) -> float:
    """CPU µs of one ``PredictionCapture.record`` of ``houses`` houses (writing to /dev/null)."""
    from house_prices import ids, schema

    prediction_ids = ids.new_prediction_ids("Chicago_IL", houses)
    row = tuple(schema.EXAMPLE_HOUSE[name] for name in schema.FEATURE_NAMES)
    arguments = {
        "city": "Chicago_IL",
        "version": "20261125T040000Z-1a2b3c4d",
        "request_id": "Ab1CdEfGhIjKlM=",
        "prediction_ids": prediction_ids,
        "rows": [row] * houses,
        "prices": [552316.4] * houses,
        "house_ids": [None] * houses,
    }
    calls = calls or max(100, 20_000 // houses)
    started = time.process_time()
    for _ in range(calls):
        capture.record(**arguments)
    return (time.process_time() - started) * 1e6 / calls


def print_service_on_vs_off(
    on: str, pairs: int, weight_bp: int, with_rollout: Callable[[Any, int], Any] = canary_of
) -> None:
    """``service_on_vs_off``'s table for 1, 3 and 100 houses per request; ``on`` describes the rollout side."""
    print(
        f"\nRouterService alone, {on} vs off, CPU µs per request "
        f"(in-process endpoint stand-in, distinct houses per request, {pairs} of each, alternating)"
    )
    print(f"{'houses':<10}{'mode':<5}{'p50':>8}{'p99':>8}{'mean':>8}")
    for houses in (1, 3, 100):
        with stdout_discarded():
            samples = service_on_vs_off(houses, pairs, weight_bp, with_rollout)
        print_on_off(f"{houses}", samples, ".1f")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--invocations", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--profile", action="store_true", help="print the heaviest functions of the single-house run")
    parser.add_argument(
        "--capture-invocations", type=int, default=None, help="on/off pairs per event (default: --invocations)"
    )
    parser.add_argument(
        "--routing-invocations", type=int, default=None, help="on/off pairs per event (default: --invocations)"
    )
    parser.add_argument("--canary-weight-bp", type=int, default=1000, help="the canary's weight (basis points)")
    parser.add_argument(
        "--shadow-weight-bp", type=int, default=5000, help="the shadow rollout's sampled share (basis points)"
    )
    args = parser.parse_args(argv)

    quiet = Console(quiet=True)
    with (
        tempfile.TemporaryDirectory(prefix="router-bench-") as state,
        LocalStack(StackConfig(state_dir=Path(state), write_stack_file=False)) as stack,
    ):
        info = stack.info
        events = {name: json.loads(path.read_text()) for name, path in EVENTS.items()}
        cities = sorted({event["pathParameters"]["city"] for event in events.values()})
        train_and_publish(stack, cities, quiet, Path(state) / "training", progress=False)
        wait_for_live(ModelRegistry(stack.client("dynamodb"), info.registry_table), cities, quiet, timeout=60)
        described = info.as_dict()
        resources = stack_resources(described)
        function = stack.template.function(FUNCTION, resources)
        handler = load_handler(function, info.region, stack_client_environment(described))

        print(f"{'event':<10}{'CPU ms':>9}{'wall ms':>9}   (per warm invocation, {args.invocations} invocations)")
        runs: dict[str, Callable[[], None]] = {}
        for name, event in events.items():

            def invoke(event: dict[str, Any] = event, name: str = name) -> None:
                response = handler(event, LambdaContext.for_function(function, info.region, resources.account_id))
                if response["statusCode"] != 200:
                    raise SystemExit(f"{name}: the router answered {response['statusCode']}: {response['body']}")

            with stdout_discarded():
                per_invocation(invoke, args.warmup)
                cpu_ms, wall_ms = per_invocation(invoke, args.invocations)
            print(f"{name:<10}{cpu_ms:>9.2f}{wall_ms:>9.2f}")
            if args.profile and name == "1 house":
                profiler = cProfile.Profile()
                with stdout_discarded():
                    profiler.runcall(per_invocation, invoke, args.invocations)
                pstats.Stats(profiler, stream=sys.stdout).sort_stats("cumulative").print_stats(30)
            runs[name] = invoke

        # The handler module the Lambda runtime loaded: its warm service, with the template's capture.
        service = sys.modules["router.handler"].service()
        pairs = args.capture_invocations or args.invocations
        print(
            f"\ncapture on vs off, CPU ms per invocation ({pairs} of each, alternating call by call; "
            f"CAPTURE_SAMPLE_RATE={service.capture.sample_rate:g})"
        )
        print(f"{'event':<10}{'mode':<5}{'p50':>8}{'p99':>8}{'mean':>8}")
        for name, run in runs.items():
            with stdout_discarded():
                samples = capture_on_vs_off(service, run, pairs)
            print_on_off(name, samples, ".3f")
        with stdout_discarded():
            direct = {houses: record_cost_us(service.capture, houses) for houses in (1, 3, 1000)}
        print("PredictionCapture.record alone: " + ", ".join(f"{h} house(s) {us:.1f} µs" for h, us in direct.items()))

        # Routing: no rollout vs a canary on the same live item, same handler, interleaved.
        pairs = args.routing_invocations or args.invocations
        weight = args.canary_weight_bp
        print(
            f"\nrouting on (canary, {weight / 100:g} %) vs off, CPU µs per invocation "
            f"({pairs} of each, alternating call by call)"
        )
        print(f"{'event':<10}{'mode':<5}{'p50':>8}{'p99':>8}{'mean':>8}")
        sides = []
        for name, run in runs.items():
            city = events[name]["pathParameters"]["city"]
            live = service.registry.live_model(city)
            sides.append(f"{name} {candidate_houses(events[name], live, weight)}")
            with stdout_discarded():
                samples = routing_on_vs_off(service, city, run, pairs, weight)
            print_on_off(name, samples, ".0f")
        print(f"(the events' houses on the candidate's side: {', '.join(sides)}; the same houses every call)")
        print_service_on_vs_off(f"routing on (canary, {weight / 100:g} %)", pairs, weight)
        direct_plan = {houses: plan_cost_us(city, live, weight, houses) for houses in (1, 3, 100)}
        print(
            "router.routing.plan alone (p50/p99 wall µs): "
            + ", ".join(f"{h} house(s) {p50:.1f}/{p99:.1f}" for h, (p50, p99) in direct_plan.items())
        )

        # Shadow: no rollout vs a shadow rollout whose candidate cannot be invoked, same handler.
        weight = args.shadow_weight_bp
        print(
            f"\nshadow on ({weight / 100:g} % sampled, the candidate's artifact missing) vs off, µs per invocation "
            f"({pairs} of each, alternating call by call; every call answered 200)"
        )
        print(f"{'event':<14}{'mode':<5}{'p50':>8}{'p99':>8}{'mean':>8}")
        for name, run in runs.items():
            city = events[name]["pathParameters"]["city"]
            wall: dict[str, list[float]] = {}
            with stdout_discarded():
                samples = routing_on_vs_off(service, city, run, pairs, weight, shadow_of, wall)
            print_on_off(f"{name} CPU", samples, ".0f", 14)
            print_on_off(f"{name} wall", wall, ".0f", 14)
        print_service_on_vs_off(f"shadow on ({weight / 100:g} % sampled)", pairs, weight, shadow_of)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
