"""DynamoDB adapter: one label's claim and its aggregate increment in one transaction.

``TransactWriteItems`` puts the label's ledger item (``attribute_not_exists``: a label is claimed
once) and ADDs its errors to the (city, version) item together, so a label is counted exactly once
whatever the queue redelivers and whenever the function stops. A cancelled claim is read back to tell
a redelivery of the same source from a duplicate. Failures become ``DependencyFailure``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from house_prices.captures import CapturedPrediction
from house_prices.errors import DependencyFailure, DomainError
from house_prices.labels import Label
from house_prices.live_quality import CITY, OFFLINE, UPDATED_AT, VERSION, Aggregate
from house_prices.registry import ModelRegistry
from quality.logic import Recorded, recorded_ae_p50

LEDGER_KEY = "label"


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


class RegistryOfflineFigures:
    """The gate's ``validation.ae_p50`` of a version, from the registry (None when unknown)."""

    def __init__(self, registry: ModelRegistry) -> None:
        self._registry = registry

    def ae_p50(self, city: str, version: str) -> float | None:
        try:
            return recorded_ae_p50(self._registry.version(city, version).metrics)
        except DomainError:  # an unknown version or a registry hiccup: the live figures still count
            return None
