"""Latency of the local multi-model endpoint through a real boto3 sagemaker-runtime client.

Measures warm single-row InvokeEndpoint latency (p50/p95/p99 over N requests) and cold-start time
(first request for a model not yet loaded: download + model_fn + predict), reading the server's own
ModelDownloadingTime/ModelLoadingTime from /metrics.

    # against a running endpoint (e.g. `make up`), one TargetModel that exists under its prefix
    python bench/endpoint_latency.py --endpoint-url http://127.0.0.1:8080 --endpoint-name NAME --target-model M.tar.gz
    python bench/endpoint_latency.py --stack .local/stack.json --target-model M.tar.gz
    # self-contained: moto S3 + endpoint in-process, notebook-sized forests, the project's inference.py
    python bench/endpoint_latency.py --requests 1000 --cold-models 5
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from house_prices.naming import KeyLayout

ROW = "1995,3000,4,2.5,1.0,2"  # one house in schema feature order (a plausible notebook-generator row)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def server_metrics(url: str) -> dict[str, float] | None:
    """One /metrics snapshot: each sample name's value summed over its labels; None if unreachable.

    One fetch per snapshot, so the figures read from it describe the same instant.
    """
    from prometheus_client.parser import text_string_to_metric_families

    try:
        text = httpx.get(f"{url}/metrics", timeout=5).text
    except httpx.HTTPError:
        return None
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
    return totals


def _delta(before: dict[str, float], after: dict[str, float], name: str) -> float:
    # A series the server has not created yet counts as 0, as it did when summing no samples.
    return after.get(name, 0.0) - before.get(name, 0.0)


def invoke(client: Any, endpoint_name: str, target: str) -> float:
    started = time.perf_counter()
    response = client.invoke_endpoint(EndpointName=endpoint_name, TargetModel=target, ContentType="text/csv", Body=ROW)
    response["Body"].read()
    return time.perf_counter() - started


@contextlib.contextmanager
def self_contained(cold_models: int) -> Iterator[tuple[str, str, list[str]]]:
    """moto S3 + the endpoint in this process, with notebook-sized forests (100 trees, min_samples_leaf=3, 600 rows)."""
    import os

    from endpoint.app import create_app
    from endpoint.config import EndpointConfig, ModelDataUrl
    from testkit.aws import moto_s3, s3_client
    from testkit.models import fit_forest, model_tar_gz
    from testkit.servers import serve_in_thread

    bucket, prefix = "bench-endpoint", KeyLayout().mme_prefix
    for name, value in {
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        os.environ.setdefault(name, value)
    targets = [f"Bench{index}_XX.20261125T040000Z-0000000{index}.tar.gz" for index in range(cold_models + 1)]
    with moto_s3(bucket) as s3_url:
        s3 = s3_client(s3_url)
        for index, target in enumerate(targets):
            model = fit_forest(seed=index, n_rows=600, n_estimators=100, min_samples_leaf=3)
            s3.put_object(Bucket=bucket, Key=prefix + target, Body=model_tar_gz(model))
        os.environ["AWS_ENDPOINT_URL_S3"] = s3_url
        config = EndpointConfig(model_data_url=ModelDataUrl.parse(f"s3://{bucket}/{prefix}"), endpoint_name="bench")
        with serve_in_thread(create_app(config)) as url:
            yield url, "bench", targets


def run(url: str, endpoint_name: str, warm_target: str, cold_targets: list[str], requests: int) -> dict[str, Any]:
    from testkit.aws import sagemaker_runtime

    client = sagemaker_runtime(url, tcp_keepalive=True)
    before = server_metrics(url)
    first = invoke(client, endpoint_name, warm_target)
    cold = [invoke(client, endpoint_name, target) for target in cold_targets]
    for _ in range(min(20, requests)):  # warm-up: connection pool, branch caches
        invoke(client, endpoint_name, warm_target)
    warm = [invoke(client, endpoint_name, warm_target) for _ in range(requests)]
    result: dict[str, Any] = {
        "requests": requests,
        "warm_ms": {
            "p50": percentile(warm, 0.50) * 1000,
            "p95": percentile(warm, 0.95) * 1000,
            "p99": percentile(warm, 0.99) * 1000,
            "mean": statistics.fmean(warm) * 1000,
            "max": max(warm) * 1000,
        },
        "first_request_ms": first * 1000,
    }
    if cold:
        result["cold_ms"] = {"models": len(cold), "mean": statistics.fmean(cold) * 1000, "max": max(cold) * 1000}
    after = server_metrics(url)
    if before is not None and after is not None and after.get("ModelLoadingTime_count"):
        result["server_s"] = {
            "download_total": _delta(before, after, "ModelDownloadingTime_sum"),
            "load_total": _delta(before, after, "ModelLoadingTime_sum"),
            "loads": after["ModelLoadingTime_count"],
            "loaded_bytes": after.get("LoadedModelBytes", 0.0),
        }
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--endpoint-url")
    parser.add_argument("--endpoint-name")
    parser.add_argument("--stack", type=Path, help="read endpoint_url/endpoint_name from a stack.json")
    parser.add_argument("--target-model", help="a TargetModel under the endpoint's prefix (warm target)")
    parser.add_argument("--cold-target", action="append", default=[], help="TargetModels not loaded yet (repeatable)")
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--cold-models", type=int, default=5, help="self-contained mode: distinct cold models")
    parser.add_argument("--json", action="store_true", help="print JSON only")
    args = parser.parse_args(argv)

    if args.stack:
        stack = json.loads(args.stack.read_text())
        args.endpoint_url = args.endpoint_url or stack["endpoint_url"]
        args.endpoint_name = args.endpoint_name or stack["endpoint_name"]
    if args.endpoint_url:
        if not (args.endpoint_name and args.target_model):
            parser.error("--endpoint-name and --target-model are needed with --endpoint-url/--stack")
        result = run(args.endpoint_url, args.endpoint_name, args.target_model, args.cold_target, args.requests)
        mode = f"running endpoint {args.endpoint_url}"
    else:
        with self_contained(args.cold_models) as (url, name, targets):
            result = run(url, name, targets[0], targets[1:], args.requests)
        mode = "self-contained (moto S3 + in-process endpoint, 100-tree forests, training/inference.py)"
    result["mode"] = mode
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    warm = result["warm_ms"]
    print(f"endpoint latency — {mode}")
    print(
        f"  warm single-row invoke over {result['requests']} requests: p50 {warm['p50']:.2f} ms, "
        f"p95 {warm['p95']:.2f} ms, p99 {warm['p99']:.2f} ms, mean {warm['mean']:.2f} ms, max {warm['max']:.2f} ms"
    )
    print(f"  first request (cold unless already loaded): {result['first_request_ms']:.1f} ms")
    if "cold_ms" in result:
        cold = result["cold_ms"]
        print(f"  cold invoke over {cold['models']} models: mean {cold['mean']:.1f} ms, max {cold['max']:.1f} ms")
    if "server_s" in result:
        server = result["server_s"]
        print(
            f"  server: download {server['download_total'] * 1000:.1f} ms + model_fn/measure "
            f"{server['load_total'] * 1000:.1f} ms in total for this run; {server['loaded_bytes']:.0f} bytes loaded"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
