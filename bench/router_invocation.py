"""CPU per warm invocation of the router's real handler: what Lambda bills, without the local bridge.

Starts a fresh local stack, trains and promotes one seed city through the real path, then imports
``RouterFunction``'s handler in this process the way ``sam local invoke`` does (the template's
environment, the stack's endpoint URLs) and invokes it with the same API Gateway events the tests
use (``events/api-predictions-single.json`` and ``-batch.json``, whose city it trains). Each event
runs ``--warmup`` times, then ``--invocations`` times measured: process CPU time and wall time per
invocation (the wall time includes the endpoint's answer, the CPU time is the handler alone). Logs
go to /dev/null while measuring, as they would go to Lambda's log pipe. ``--profile`` prints the
handler's heaviest functions.

Capture on vs off (issue 17: capture adds <= 0.1 ms to the p99 CPU of an invocation): the same warm
handler runs each event with its ``PredictionCapture`` (the template's ``CAPTURE_SAMPLE_RATE=1.0``) and
without one, alternating call by call so that machine drift hits both alike; each invocation's CPU time
is taken on its own, and the p50/p99/mean of each mode and their differences are printed. The direct
cost of ``PredictionCapture.record`` alone (no handler around it) is printed too.

The local HTTP API's throughput (``bench/http_api_throughput.py``, ``make bench``) also pays the
HTTP server, the event translation and the sandbox process hop, which API Gateway and Lambda do
elsewhere; this is the router's own share.

    .venv/bin/python bench/router_invocation.py [--invocations 500] [--capture-invocations N] [--profile]
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--invocations", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--profile", action="store_true", help="print the heaviest functions of the single-house run")
    parser.add_argument(
        "--capture-invocations", type=int, default=None, help="on/off pairs per event (default: --invocations)"
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
            for mode in ("on", "off"):
                values = samples[mode]
                print(
                    f"{name:<10}{mode:<5}{percentile(values, 0.5):>8.3f}{percentile(values, 0.99):>8.3f}"
                    f"{sum(values) / len(values):>8.3f}"
                )
            on, off = samples["on"], samples["off"]
            mean_difference = sum(on) / len(on) - sum(off) / len(off)
            print(
                f"{name:<10}{'diff':<5}{percentile(on, 0.5) - percentile(off, 0.5):>+8.3f}"
                f"{percentile(on, 0.99) - percentile(off, 0.99):>+8.3f}{mean_difference:>+8.3f}"
            )
        with stdout_discarded():
            direct = {houses: record_cost_us(service.capture, houses) for houses in (1, 3, 1000)}
        print("PredictionCapture.record alone: " + ", ".join(f"{h} house(s) {us:.1f} µs" for h, us in direct.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
