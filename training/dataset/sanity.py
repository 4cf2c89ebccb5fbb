"""Loud warnings for a price column that is probably not a price (a feature, thousands, or a constant).

They warn rather than refuse: prices in thousands are a legitimate choice, but a model trained on
YEAR_BUILT as the "price" reports a tiny error and is useless, so the report must say so first.
"""

from __future__ import annotations

import numpy as np

from house_prices import schema

SMALL_MEDIAN_PRICE = 1_000


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.4g}"


def price_warnings(prices: np.ndarray, price_column: str) -> list[str]:
    """Warnings about the usable prices of every selected segment together."""
    if len(prices) == 0:
        return []
    warnings = []
    low, high, median = float(prices.min()), float(prices.max()), float(np.median(prices))
    if low == high:
        warnings.append(
            f"the price column {price_column!r} is constant ({_fmt(low)}) in every usable row: "
            "a model would predict that value for every house; is it the right column?"
        )
    lookalikes = [f for f in schema.FEATURES if f.minimum <= low and high <= f.maximum]
    if lookalikes and low != high:
        ranges = ", ".join(f"{f.name} ({_fmt(f.minimum)}–{_fmt(f.maximum)})" for f in lookalikes)
        warnings.append(
            f"every price in {price_column!r} lies between {_fmt(low)} and {_fmt(high)}, inside the range of "
            f"{ranges}: is it really the price? Name the price with --price-column"
        )
    if median < SMALL_MEDIAN_PRICE:
        warnings.append(
            f"the median price in {price_column!r} is {_fmt(median)}, under {SMALL_MEDIAN_PRICE:,}: prices in "
            f"thousands (then use --price-column '{price_column}*1000'), or not prices at all?"
        )
    return warnings


def segment_price_warnings(prices: np.ndarray) -> list[str]:
    """Warnings about one segment's usable prices."""
    if len(prices) > 1 and prices.min() == prices.max():
        return [f"constant price ({_fmt(float(prices[0]))}) in every usable row"]
    return []
