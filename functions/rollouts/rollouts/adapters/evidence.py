"""DynamoDB adapter: the evidence items of many rollouts, read with BatchGetItem (100 keys per call).

Eventually consistent reads (half the price of strongly consistent ones): the decider runs every minute,
and a label ADDed a second ago is simply counted on the next tick. Keys DynamoDB leaves unprocessed
(throttling, the 16 MB response limit) are asked for again, a bounded number of times; failures become
``DependencyFailure``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from house_prices.errors import DependencyFailure
from house_prices.live_quality import CITY, VERSION
from house_prices.rollout_evidence import EVIDENCE_PREFIX, RolloutEvidence, evidence_version

MAX_KEYS_PER_CALL = 100
# Rounds of UnprocessedKeys before giving up (the decider tries the rollout again on the next tick).
MAX_ROUNDS = 5


class DynamoEvidence:
    def __init__(self, dynamodb_client: Any, quality_table: str) -> None:
        self._db = dynamodb_client
        self._table = quality_table

    def evidence(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], RolloutEvidence]:
        """(city, candidate version) → its evidence; a rollout without an item yet is absent."""
        found: dict[tuple[str, str], RolloutEvidence] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), MAX_KEYS_PER_CALL):
            for item in self._batch(unique[start : start + MAX_KEYS_PER_CALL]):
                city, version = item[CITY]["S"], item[VERSION]["S"]
                found[(city, version.removeprefix(EVIDENCE_PREFIX))] = RolloutEvidence.from_item(_numbers(item))
        return found

    def _batch(self, keys: Sequence[tuple[str, str]]) -> list[Mapping[str, Any]]:
        request: dict[str, Any] = {
            self._table: {
                "Keys": [{CITY: {"S": city}, VERSION: {"S": evidence_version(candidate)}} for city, candidate in keys]
            }
        }
        items: list[Mapping[str, Any]] = []
        for _ in range(MAX_ROUNDS):
            try:
                response = self._db.batch_get_item(RequestItems=request)
            except (ClientError, BotoCoreError) as error:
                raise DependencyFailure(f"DynamoDB BatchGetItem failed: {error}") from error
            items.extend(response.get("Responses", {}).get(self._table, []))
            request = response.get("UnprocessedKeys") or {}
            if not request:
                return items
        raise DependencyFailure(f"DynamoDB BatchGetItem left keys unprocessed after {MAX_ROUNDS} rounds")


def _numbers(item: Mapping[str, Mapping[str, Any]]) -> dict[str, int | float]:
    """The item's number attributes as plain Python numbers (the evidence has no other kind that matters)."""
    plain: dict[str, int | float] = {}
    for name, attribute in item.items():
        if "N" in attribute:
            number = Decimal(attribute["N"])
            plain[name] = int(number) if number == number.to_integral_value() else float(number)
    return plain
