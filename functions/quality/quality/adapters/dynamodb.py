"""DynamoDB adapter: one label's claim and its aggregate increment in one transaction.

``TransactWriteItems`` puts the label's ledger item (``attribute_not_exists``: a label is claimed
once) and ADDs its errors to the (city, version) item together, so a label is counted exactly once
whatever the queue redelivers and whenever the function stops. A cancelled claim is read back to tell
a redelivery of the same source from a duplicate. Failures become ``DependencyFailure``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import BotoCoreError, ClientError

from house_prices import drift
from house_prices.captures import CapturedPrediction
from house_prices.errors import DependencyFailure, DomainError
from house_prices.labels import Label
from house_prices.live_quality import CITY, OFFLINE, UPDATED_AT, VERSION, Aggregate
from house_prices.registry import ModelRegistry
from quality.logic import Recorded, recorded_ae_p50

LEDGER_KEY = "label"
# TransactWriteItems takes at most 100 actions: the ledger claim and 99 (city, version) updates.
MAX_UPDATES_PER_TRANSACTION = 99
_DESERIALIZER = TypeDeserializer()
_SERIALIZER = TypeSerializer()


def _number(value: float) -> dict[str, str]:
    return {"N": repr(float(value)) if isinstance(value, float) else str(value)}


class DynamoQualityStore:
    def __init__(self, dynamodb_client: Any, quality_table: str, ledger_table: str) -> None:
        self._db = dynamodb_client
        self._quality = quality_table
        self._ledger = ledger_table

    def record(
        self,
        *,
        label: Label,
        source: str,
        prediction: CapturedPrediction,
        aggregate: Aggregate,
        offline_ae_p50: float | None,
        expires_at: int,
    ) -> Recorded:
        now = datetime.now(UTC).isoformat(timespec="seconds")
        increments = aggregate.increments()
        names = {f"#a{i}": name for i, name in enumerate(increments)}
        values: dict[str, Any] = {f":a{i}": _number(value) for i, value in enumerate(increments.values())}
        values[":t"] = {"S": now}
        sets = ["#u = :t"]
        names["#u"] = UPDATED_AT
        if offline_ae_p50 is not None:
            names["#o"] = OFFLINE
            values[":o"] = _number(offline_ae_p50)
            sets.append("#o = :o")
        update = "ADD " + ", ".join(f"#a{i} :a{i}" for i in range(len(increments))) + " SET " + ", ".join(sets)
        ledger_item = {
            LEDGER_KEY: {"S": label.key},
            "source": {"S": source},
            "city": {"S": prediction.city},
            "version": {"S": prediction.version},
            "prediction_id": {"S": prediction.prediction_id},
            "predicted": _number(prediction.price),
            "sale_price": _number(label.sale_price),
            "sold_at": {"S": label.sold_at},
            "labelled_at": {"S": now},
            "expires_at": {"N": str(expires_at)},
        }
        try:
            self._db.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": self._ledger,
                            "Item": ledger_item,
                            "ConditionExpression": "attribute_not_exists(#k)",
                            "ExpressionAttributeNames": {"#k": LEDGER_KEY},
                        }
                    },
                    {
                        "Update": {
                            "TableName": self._quality,
                            "Key": {CITY: {"S": prediction.city}, VERSION: {"S": prediction.version}},
                            "UpdateExpression": update,
                            "ExpressionAttributeNames": names,
                            "ExpressionAttributeValues": values,
                        }
                    },
                ]
            )
        except ClientError as error:
            reasons = error.response.get("CancellationReasons") or []
            if (
                error.response.get("Error", {}).get("Code") == "TransactionCanceledException"
                and reasons
                and (reasons[0].get("Code") == "ConditionalCheckFailed")
            ):
                return self._claimed_by(label.key, source)
            raise DependencyFailure(f"DynamoDB TransactWriteItems failed: {error}") from error
        except BotoCoreError as error:
            raise DependencyFailure(f"DynamoDB TransactWriteItems failed: {error}") from error
        return Recorded.COUNTED

    def _claimed_by(self, key: str, source: str) -> Recorded:
        try:
            item = self._db.get_item(TableName=self._ledger, Key={LEDGER_KEY: {"S": key}}, ConsistentRead=True).get(
                "Item"
            )
        except (ClientError, BotoCoreError) as error:
            raise DependencyFailure(f"DynamoDB GetItem failed: {error}") from error
        same = item is not None and item.get("source", {}).get("S") == source
        return Recorded.REDELIVERED if same else Recorded.DUPLICATE


class DynamoDriftStore:
    """Live drift counts: ADDed per capture object in one transaction with the object's ledger claim."""

    def __init__(self, dynamodb_client: Any, quality_table: str, ledger_table: str) -> None:
        self._db = dynamodb_client
        self._quality = quality_table
        self._ledger = ledger_table

    def record_captures(
        self, *, ledger_key: str, source: str, increments: Mapping[tuple[str, str], Mapping[str, int]], expires_at: int
    ) -> Recorded:
        pairs = sorted(increments)
        chunks = [pairs[i : i + MAX_UPDATES_PER_TRANSACTION] for i in range(0, len(pairs), MAX_UPDATES_PER_TRANSACTION)]
        outcome = Recorded.COUNTED
        for index, chunk in enumerate(chunks):
            # More than 99 versions in one object is not expected (one city per object); each chunk is claimed alone.
            key = ledger_key if index == 0 else f"{ledger_key}#{index}"
            recorded = self._record_chunk(key, source, {pair: increments[pair] for pair in chunk}, expires_at)
            if recorded is not Recorded.COUNTED:
                outcome = recorded
        return outcome

    def _record_chunk(
        self, key: str, source: str, increments: Mapping[tuple[str, str], Mapping[str, int]], expires_at: int
    ) -> Recorded:
        now = datetime.now(UTC).isoformat(timespec="seconds")
        items: list[dict[str, Any]] = [
            {
                "Put": {
                    "TableName": self._ledger,
                    "Item": {
                        LEDGER_KEY: {"S": key},
                        "source": {"S": source},
                        "labelled_at": {"S": now},
                        "expires_at": {"N": str(expires_at)},
                    },
                    "ConditionExpression": "attribute_not_exists(#k)",
                    "ExpressionAttributeNames": {"#k": LEDGER_KEY},
                }
            }
        ]
        for (city, version), counts in increments.items():
            names = {f"#a{i}": name for i, name in enumerate(counts)}
            values: dict[str, Any] = {f":a{i}": {"N": str(int(value))} for i, value in enumerate(counts.values())}
            names["#u"] = UPDATED_AT
            values[":t"] = {"S": now}
            update = "ADD " + ", ".join(f"#a{i} :a{i}" for i in range(len(counts))) + " SET #u = :t"
            items.append(
                {
                    "Update": {
                        "TableName": self._quality,
                        "Key": {CITY: {"S": city}, VERSION: {"S": version}},
                        "UpdateExpression": update,
                        "ExpressionAttributeNames": names,
                        "ExpressionAttributeValues": values,
                    }
                }
            )
        try:
            self._db.transact_write_items(TransactItems=items)
        except ClientError as error:
            reasons = error.response.get("CancellationReasons") or []
            if (
                error.response.get("Error", {}).get("Code") == "TransactionCanceledException"
                and reasons
                and reasons[0].get("Code") == "ConditionalCheckFailed"
            ):
                return Recorded.REDELIVERED
            raise DependencyFailure(f"DynamoDB TransactWriteItems failed: {error}") from error
        except BotoCoreError as error:
            raise DependencyFailure(f"DynamoDB TransactWriteItems failed: {error}") from error
        return Recorded.COUNTED

    def live_item(self, city: str, version: str) -> Mapping[str, Any]:
        """The (city, version) item as plain Python values (numbers as int or float), read consistently."""
        try:
            item = self._db.get_item(
                TableName=self._quality, Key={CITY: {"S": city}, VERSION: {"S": version}}, ConsistentRead=True
            ).get("Item")
        except (ClientError, BotoCoreError) as error:
            raise DependencyFailure(f"DynamoDB GetItem failed: {error}") from error
        return {name: _plain(_DESERIALIZER.deserialize(value)) for name, value in (item or {}).items()}

    def save_report(
        self, city: str, version: str, report: Mapping[str, Any], seen_count: int, was_drifting: bool
    ) -> bool:
        """SET the drift report if the live count is still ``seen_count`` and the flag still ``was_drifting``
        (else a newer refresh, or a concurrent one that already saved this change, owns it)."""
        try:
            self._db.update_item(
                TableName=self._quality,
                Key={CITY: {"S": city}, VERSION: {"S": version}},
                UpdateExpression="SET #r = :r",
                ConditionExpression="#n = :n AND (attribute_not_exists(#r) OR #r.#d = :was)",
                ExpressionAttributeNames={"#r": drift.REPORT, "#n": drift.LIVE_COUNT, "#d": "drifting"},
                ExpressionAttributeValues={
                    ":r": _SERIALIZER.serialize(_dynamo(report)),
                    ":n": {"N": str(seen_count)},
                    ":was": {"BOOL": was_drifting},
                },
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise DependencyFailure(f"DynamoDB UpdateItem failed: {error}") from error
        except BotoCoreError as error:
            raise DependencyFailure(f"DynamoDB UpdateItem failed: {error}") from error
        return True


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, set)):
        return [_plain(v) for v in value]
    return value


def _dynamo(value: Any) -> Any:
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, Mapping):
        return {str(k): _dynamo(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_dynamo(v) for v in value]
    return value


class RegistryReferences:
    """A version's reference bins from the registry's recorded metrics ({} when unknown or trained without)."""

    def __init__(self, registry: ModelRegistry) -> None:
        self._registry = registry

    def references(self, city: str, version: str) -> Mapping[str, drift.Reference]:
        try:
            return drift.references_from_metrics(self._registry.version(city, version).metrics)
        except DomainError:
            return {}


class RegistryOfflineFigures:
    """The gate's ``validation.ae_p50`` of a version, from the registry (None when unknown)."""

    def __init__(self, registry: ModelRegistry) -> None:
        self._registry = registry

    def ae_p50(self, city: str, version: str) -> float | None:
        try:
            return recorded_ae_p50(self._registry.version(city, version).metrics)
        except DomainError:  # an unknown version or a registry hiccup: the live figures still count
            return None
