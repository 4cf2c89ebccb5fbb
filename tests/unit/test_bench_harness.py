"""The bench's own arithmetic: histogram quantiles, metric parsing, wrk request files, Zipf draws, targets."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest

from bench.histograms import histogram_quantile, load_phases, phase_of, prometheus_histograms, subtract_histograms
from bench.report import evaluate_targets
from bench.wrk_runs import HttpRequest, write_lua_requests
from bench.zipf import zipf_sequence

EXPOSITION = """\
# HELP ModelDownloadingTime Seconds to download a model from S3.
# TYPE ModelDownloadingTime histogram
ModelDownloadingTime_bucket{le="0.01"} 3.0
ModelDownloadingTime_bucket{le="0.1"} 4.0
ModelDownloadingTime_bucket{le="+Inf"} 4.0
ModelDownloadingTime_count 4.0
ModelDownloadingTime_sum 0.1
# HELP ModelLoadingWaitTime Seconds waited.
# TYPE ModelLoadingWaitTime histogram
ModelLoadingWaitTime_bucket{le="0.01"} 1.0
ModelLoadingWaitTime_bucket{le="+Inf"} 2.0
ModelLoadingWaitTime_count 2.0
ModelLoadingWaitTime_sum 1.0
# HELP LoadedModelCount Models loaded in memory.
# TYPE LoadedModelCount gauge
LoadedModelCount 2.0
"""


def test_histogram_quantile_interpolates_within_the_bucket_that_holds_the_rank() -> None:
    # Given 50 observations up to 10 ms and 50 more up to 100 ms
    buckets = {0.01: 50.0, 0.1: 100.0, float("inf"): 100.0}
    # Then the median is the first bucket's bound and the 75th percentile lies halfway into the second
    assert histogram_quantile(buckets, 0.5) == pytest.approx(0.01)
    assert histogram_quantile(buckets, 0.75) == pytest.approx(0.055)


def test_histogram_quantile_of_an_empty_histogram_is_nan() -> None:
    assert np.isnan(histogram_quantile({0.01: 0.0, float("inf"): 0.0}, 0.5))


def test_prometheus_histograms_keep_histograms_only_and_subtract_a_baseline() -> None:
    # Given a scrape and an earlier one with one download fewer
    after = prometheus_histograms(EXPOSITION)
    before = prometheus_histograms(
        EXPOSITION.replace('le="0.01"} 3.0', 'le="0.01"} 2.0').replace("_count 4.0", "_count 3.0")
    )
    # When subtracted
    delta = subtract_histograms(after, before)
    # Then only histograms are there, and the delta counts the one new download in the first bucket
    assert set(after) == {"ModelDownloadingTime", "ModelLoadingWaitTime"}
    assert delta["ModelDownloadingTime"]["count"] == 1.0
    assert delta["ModelDownloadingTime"]["buckets"][0.01] == 1.0


def test_load_phases_name_the_load_steps_and_skip_waits() -> None:
    phases = load_phases(prometheus_histograms(EXPOSITION))
    assert list(phases) == ["download (ModelDownloadingTime)"]
    assert phases["download (ModelDownloadingTime)"]["mean_ms"] == pytest.approx(25.0)
    assert phase_of("ModelLoadingTime") == "model_fn"
    assert phase_of("endpoint_model_extract_seconds") == "extract"
    assert phase_of("ModelUnloadingTime") is None


def _lua_unescape(literal: str) -> str:
    assert literal.startswith('"')
    assert literal.endswith('"')
    return re.sub(r"\\(\d{3})", lambda m: chr(int(m[1])), literal[1:-1])


def test_lua_request_file_escapes_every_byte_so_digits_after_a_newline_survive(tmp_path: Any) -> None:
    # Given a body where a newline is followed by digits (a decimal escape must not swallow them)
    body = '1995,3000,4,2.5,1.0,2\n2001,"x"\\y\n'
    path = write_lua_requests(tmp_path / "r.lua", [HttpRequest("POST", "/p", {"Content-Type": "text/csv"}, body)])
    # When the body literal is read back with Lua's escape rules
    literal = re.search(r'body = ("[^"]*")', path.read_text())
    # Then it is the same bytes, and no quote or backslash appears unescaped
    assert literal is not None
    assert _lua_unescape(literal[1]) == body


def test_zipf_sequence_is_reproducible_in_range_and_skewed() -> None:
    first = zipf_sequence(1000, 1.1, 20_000)
    assert np.array_equal(first, zipf_sequence(1000, 1.1, 20_000))
    assert first.min() >= 0
    assert first.max() < 1000
    counts = np.bincount(first, minlength=1000)
    weights = 1.0 / np.arange(1, 1001) ** 1.1
    # The most requested model gets about rank 1's share; half the models get almost nothing.
    assert counts.max() / len(first) == pytest.approx(weights[0] / weights.sum(), rel=0.1)
    assert np.sort(counts)[:500].sum() < 0.1 * len(first)


def _row(name: str, rps: float, ratio: float, p99: float = 5.0) -> dict[str, Any]:
    return {"name": name, "rps": rps, "ratio_to_ceiling": ratio, "p50_ms": 1.0, "p99_ms": p99}


def test_targets_are_judged_from_the_same_run_and_a_miss_is_reported_not_raised() -> None:
    # Given a run where the endpoint reaches 0.6 x the ceiling but MLServer's best is only 20 x slower
    results = {
        "throughput": {
            "rows": [
                _row("ceiling: Starlette", 10_000, 1.0),
                _row("this endpoint", 6_000, 0.6, p99=30.0),
                _row("MLServer 1.7.1, inline", 300, 0.03),
                _row("HTTP API → router", 900, 0.09),
            ]
        }
    }
    # When judged
    verdicts = {target["name"]: target["met"] for target in evaluate_targets(results)}
    # Then each target has its own verdict
    assert verdicts["1. warm single-row InvokeEndpoint >= 0.5 x the ceiling"] is True
    assert verdicts["1. p99 <= 25 ms at 50 connections"] is False
    assert verdicts["1. >= 25 x MLServer's best"] is False
    assert verdicts["4. single-house HTTP API throughput >= 0.08 x the ceiling"] is True


IMPORTTIME_THROUGH_RUNTIME = """\
import time: self [us] | cumulative | imported package
import time:       900 |        900 | site
import time:       300 |       8000 |   logging
import time:       400 |      24000 | awslambdaric.bootstrap
import time:      2000 |       2000 |       botocore.compat
import time:       500 |      80000 |     botocore.session
import time:       700 |      90000 |   router.wiring
import time:       800 |     150000 | router.handler
"""


def test_import_report_counts_only_what_comes_after_the_runtime_bootstrap() -> None:
    # Given -X importtime output of the Lambda runtime's bootstrap followed by the handler import
    from bench.router_import_time import RUNTIME_BOOTSTRAP, parse_report

    # When it is read as Lambda's init sees it, and as a bare `python -c` would count it
    through_runtime = parse_report(IMPORTTIME_THROUGH_RUNTIME, after=RUNTIME_BOOTSTRAP)
    bare = parse_report(IMPORTTIME_THROUGH_RUNTIME)

    # Then the runtime's own imports are not charged to the handler, and the breakdown names its children
    assert through_runtime.total_us == 150_000
    assert through_runtime.children_us == {"router.wiring": 90_000}
    assert bare.total_us == 24_000 + 150_000
