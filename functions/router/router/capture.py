"""Recording predictions off the response path: sampled capture lines on the function's log stream.

No network call happens here. Each request's sampled predictions become one capture line
(``house_prices.captures``) written to stdout in one ``write``: on Lambda that is the log stream, from
which a CloudWatch Logs subscription filter (matching only capture lines) feeds Firehose, which
partitions them into S3 (template.yaml; locally ``local/log_delivery.py``). docs/quality.md explains
the choice and its cost.

Sampling is per prediction (each house is kept with probability ``sample_rate``), so a 5 % rate keeps
5 % of houses whatever the batch sizes. Every price still gets its prediction id, sampled or not.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from house_prices.captures import capture_lines
from house_prices.observability import logger


class PredictionCapture:
    """Writes the capture line(s) of each request; a failure to write is logged, never raised."""

    def __init__(
        self,
        sample_rate: float,
        stream: TextIO | None = None,
        uniform: Callable[[], float] = random.random,
    ) -> None:
        if not 0.0 <= sample_rate <= 1.0:
            raise ValueError(f"sample_rate must be between 0 and 1, got {sample_rate}")
        self.sample_rate = sample_rate
        # None: sys.stdout at write time (Lambda's log pipe; tests and benches may swap it).
        self._stream = stream
        self._uniform = uniform

    def record(
        self,
        *,
        city: str,
        version: str,
        request_id: str,
        prediction_ids: Sequence[str],
        rows: Sequence[Sequence[float]],
        prices: Sequence[float],
        house_ids: Sequence[str | None],
        rollout: dict[str, Any] | None = None,
        latency_ms: float | None = None,
        candidate_error: str | None = None,
    ) -> int:
        """Record the sampled predictions of one request (or of one side of a rollout's request: one
        call per side, each with its own tags); returns how many were recorded."""
        keep = self.sample(len(prediction_ids))
        if not keep:
            return 0
        if len(keep) < len(prediction_ids):
            prediction_ids = [prediction_ids[i] for i in keep]
            rows = [rows[i] for i in keep]
            prices = [prices[i] for i in keep]
            house_ids = [house_ids[i] for i in keep]
        try:
            lines = capture_lines(
                city=city,
                version=version,
                request_id=request_id,
                prediction_ids=prediction_ids,
                rows=rows,
                prices=prices,
                house_ids=house_ids,
                rollout=rollout,
                latency_ms=latency_ms,
                candidate_error=candidate_error,
            )
            # One write: a line is never interleaved with another writer's (Powertools' logger shares stdout).
            (self._stream or sys.stdout).write("\n".join(lines) + "\n")
        except Exception:  # recording must never turn a price into a 500
            logger.warning("Could not record the predictions", exc_info=True)
            return 0
        return len(keep)

    def sample(self, count: int) -> range | list[int]:
        """The indexes of the predictions to keep."""
        if self.sample_rate >= 1.0:
            return range(count)
        if self.sample_rate <= 0.0:
            return []
        uniform, rate = self._uniform, self.sample_rate
        return [index for index in range(count) if uniform() < rate]
