"""`make demo-quality`'s core on the shared local stack: the quality loop finds the worse model and the drifting city.

The demo's cities are not the other suites' (local.demo_quality.DEMO_CITIES), so their versions, captures and
labels are the demo's only.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from local.demo_quality import DEMO_CITIES, DRIFTED_CITY, WORSE_CITY, run_quality_demo, sale_price, verdict
from local.stack import LocalStack
from tests.e2e.stack_harness import QUIET

pytestmark = pytest.mark.slow

TIME_BUDGET_SECONDS = 60


def test_sale_price_is_the_generators_price() -> None:
    # Given the training rows of a synthetic city (PRICE first, then the features)
    from house_prices import schema
    from training import data

    rows = data.generate_houses(WORSE_CITY, 5, seed=7)
    # When each house's sale price is computed from its features
    prices = [sale_price(schema.house_from_row(row[1:])) for row in rows]
    # Then it is the price the generator recorded
    assert prices == [float(row[0]) for row in rows]


def test_the_quality_demo_finds_the_worse_model_and_the_drifting_city(stack: LocalStack, tmp_path: Path) -> None:
    # Given the local stack (capture buffered 1 s), the demo's cities trained, one on prices recorded at 60 %
    started = time.monotonic()
    # When traffic is replayed (one city's SQUARE_FEET shifted) and the houses sell a simulated day later
    result = run_quality_demo(stack, tmp_path, QUIET, timeout=45)
    elapsed = time.monotonic() - started
    # Then ops quality ranks the worse model first, far above its offline error, and the others near theirs
    assert verdict(result) == []
    by_city = {row["city"]: row for row in result.quality}
    assert set(by_city) == set(DEMO_CITIES)
    assert all(row["count"] == 200 for row in result.quality), result.quality
    assert by_city[WORSE_CITY]["live_vs_offline"] > 5, by_city[WORSE_CITY]
    assert by_city[WORSE_CITY]["bias"] < 0  # trained on prices too low: it prices too low
    assert all(by_city[city]["live_vs_offline"] < 1.5 for city in DEMO_CITIES if city != WORSE_CITY), by_city
    # And ops quality --drift lists the drifted city alone, on the shifted feature, with PSI above 0.2
    (drifting,) = result.drifting
    assert drifting["city"] == DRIFTED_CITY
    assert drifting["features"] == "SQUARE_FEET"
    assert drifting["max_psi"] > 0.2
    assert drifting["predictions"] == 500
    assert elapsed < TIME_BUDGET_SECONDS, f"took {elapsed:.1f} s"
