"""End-to-end latency of the local stack: client → HTTP API → router → endpoint → model, and back.

Starts a fresh stack (temporary state dir, free ports), trains ``--cities`` notebook cities through the
real path (train.py → S3 → model-sync → registry), then measures from the client side:

* cold: the first prediction per city (router resolves the live version; endpoint downloads,
  unpacks and loads the model), one sample per city;
* warm: ``--requests`` single-house predictions round-robin over the cities;
* batch: ``--batch`` houses in one request (warm);
* endpoint only: the same single-house body through boto3 ``invoke_endpoint`` (warm), so the
  difference to "warm" is what the HTTP API bridge + router add.

    .venv/bin/python bench/stack_latency.py [--cities 5] [--requests 300] [--batch 100] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from rich.console import Console

from house_prices import schema
from house_prices.registry import ModelRegistry
from local.demo import train_and_publish, wait_for_live
from local.stack import LocalStack, StackConfig


def houses(city: str, n: int, seed: int) -> list[dict[str, float]]:
    from training.data import generate_houses

    return [schema.house_from_row(row) for row in generate_houses(city, n, seed)[:, 1:]]


def timed(call: Callable[[], Any]) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


def summary(samples: Sequence[float]) -> dict[str, float]:
    values = np.asarray(samples)
    return {
        "n": len(samples),
        "p50_ms": float(np.percentile(values, 50)),
        "p90_ms": float(np.percentile(values, 90)),
        "p99_ms": float(np.percentile(values, 99)),
        "mean_ms": float(statistics.fmean(samples)),
        "max_ms": float(values.max()),
    }


def checked(response: httpx.Response) -> httpx.Response:
    if response.status_code != 200:
        raise RuntimeError(f"HTTP {response.status_code}: {response.text}")
    return response


def run(cities: Sequence[str], requests: int, batch: int, state_dir: Path) -> dict[str, Any]:
    results: dict[str, Any] = {"cities": list(cities)}
    # Only the latency table is the bench's output: the demo's training table and progress bars stay silent.
    quiet = Console(quiet=True)
    with LocalStack(StackConfig(state_dir=state_dir, write_stack_file=False)) as stack:
        info = stack.info
        train_and_publish(stack, cities, quiet, state_dir / "training", progress=False)
        registry = ModelRegistry(stack.client("dynamodb"), info.registry_table)
        live = wait_for_live(registry, cities, quiet, timeout=60)

        samples = {city: houses(city, max(batch, 1), seed=99) for city in cities}
        with httpx.Client(base_url=info.api_url, timeout=30) as http:

            def post(city: str, payload: Any) -> Callable[[], Any]:
                return lambda: checked(http.post(f"/locations/{city}/predictions", json=payload))

            results["cold"] = summary([timed(post(city, samples[city][0])) for city in cities])
            warm = [timed(post(cities[i % len(cities)], samples[cities[i % len(cities)]][0])) for i in range(requests)]
            results["warm"] = summary(warm)
            if batch > 1:
                payload = {"houses": samples[cities[0]][:batch]}
                results[f"warm_batch_{batch}"] = summary([timed(post(cities[0], payload)) for _ in range(50)])

        runtime = stack.client("sagemaker-runtime")
        body = schema.rows_to_csv([[samples[cities[0]][0][name] for name in schema.FEATURE_NAMES]])

        def invoke() -> None:
            runtime.invoke_endpoint(
                EndpointName=info.endpoint_name,
                TargetModel=live[cities[0]].target_model,
                ContentType="text/csv",
                Body=body,
            )["Body"].read()

        results["endpoint_only_warm"] = summary([timed(invoke) for _ in range(requests)])
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cities", type=int, default=5, help="how many notebook cities to train (1-10)")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--cold-p50-budget-ms", type=float, default=100.0, help="fail above this cold p50")
    parser.add_argument("--warm-p50-budget-ms", type=float, default=10.0, help="fail above this warm p50")
    args = parser.parse_args(argv)
    cities = schema.NOTEBOOK_CITIES[: max(1, min(args.cities, len(schema.NOTEBOOK_CITIES)))]
    with tempfile.TemporaryDirectory(prefix="stack-bench-") as state_dir:
        results = run(cities, args.requests, args.batch, Path(state_dir))
    print(f"{'measure':<22}{'n':>6}{'p50 ms':>10}{'p90 ms':>10}{'p99 ms':>10}{'max ms':>10}")
    for name, figures in results.items():
        if isinstance(figures, dict):
            print(
                f"{name:<22}{figures['n']:>6}{figures['p50_ms']:>10.1f}{figures['p90_ms']:>10.1f}"
                f"{figures['p99_ms']:>10.1f}{figures['max_ms']:>10.1f}"
            )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    over = [
        f"{name} p50 {results[name]['p50_ms']:.1f} ms > {budget:g} ms"
        for name, budget in (("cold", args.cold_p50_budget_ms), ("warm", args.warm_p50_budget_ms))
        if results[name]["p50_ms"] > budget
    ]
    print(
        "targets: "
        + (
            "; ".join(over)
            if over
            else f"cold p50 <= {args.cold_p50_budget_ms:g} ms, warm p50 <= {args.warm_p50_budget_ms:g} ms: met"
        )
    )
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
