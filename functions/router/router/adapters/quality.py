"""DynamoDB adapter: a city's live quality per version (QualityTable), one Query."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from house_prices.errors import DependencyFailure
from house_prices.live_quality import CITY, QualitySummary, summary_from_item


class DynamoQualityReader:
    def __init__(self, dynamodb_client: Any, table: str) -> None:
        self._db = dynamodb_client
        self._table = table

    def summaries(self, city: str) -> list[QualitySummary]:
        """Every version of ``city`` with labels, newest version first (versions sort by time)."""
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
        return [summary_from_item(item) for item in items]
