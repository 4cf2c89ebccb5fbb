"""DynamoDB adapter: a city's live quality and input drift per version (QualityTable), one Query."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from house_prices import drift
from house_prices.errors import DependencyFailure
from house_prices.live_quality import CITY, EVIDENCE_PREFIX, VERSION, QualitySummary, summary_from_item


@dataclass(frozen=True)
class VersionQualityView(QualitySummary):
    """A version's live quality plus its last drift report (None until the quality function saved one)."""

    drift: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {**super().as_dict(), "drift": self.drift}


class DynamoQualityReader:
    def __init__(self, dynamodb_client: Any, table: str) -> None:
        self._db = dynamodb_client
        self._table = table

    def summaries(self, city: str) -> list[QualitySummary]:
        """Every version of ``city`` with labels or captured predictions, newest first (versions sort by time)."""
        try:
            items = [
                item
                for page in self._db.get_paginator("query").paginate(
                    TableName=self._table,
                    KeyConditionExpression="#c = :c",
                    ExpressionAttributeNames={"#c": CITY},
                    ExpressionAttributeValues={":c": {"S": city}},
                    ScanIndexForward=False,
                )
                for item in page.get("Items", [])
            ]
        except (BotoCoreError, ClientError) as error:
            raise DependencyFailure(f"DynamoDB Query of the quality table failed: {error}") from error
        # A rollout's evidence item (``rollout#{candidate}``) shares the city's partition and is not a version.
        return [_view(item) for item in items if not item.get(VERSION, {}).get("S", "").startswith(EVIDENCE_PREFIX)]


def _view(item: dict[str, Any]) -> VersionQualityView:
    summary = summary_from_item(item)
    return VersionQualityView(**vars(summary), drift=drift.report_from_item(item))
