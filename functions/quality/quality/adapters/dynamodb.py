"""DynamoDB adapter: one label's claim and its aggregate increment in one transaction; the house index.

``TransactWriteItems`` puts the label's ledger item (``attribute_not_exists``: a label is claimed
once) and ADDs its errors to the (city, version) item together, so a label is counted exactly once
whatever the queue redelivers and whenever the function stops. A label by (city, ``house_id``) also
claims its prediction (``id#…``, with ``via`` naming the house label), so a label by id for the same
prediction is a duplicate, and the reverse. A cancelled claim is read back to tell a redelivery of the
same source from a duplicate. Failures become ``DependencyFailure``.

The house index (``HousePredictionsTable``): key ``house`` = ``{city}#{house_id}`` (a city has no
``#``) and ``prediction_id`` (sorted by time, as ULIDs are), with the version and the price; one Query
finds the latest prediction of a house in a time window through the ULID's 10-character time prefix.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import BotoCoreError, ClientError

from house_prices import drift
from house_prices.errors import DependencyFailure, DomainError
from house_prices.ids import encode_ulid
from house_prices.labels import Label
from house_prices.live_quality import CITY, COUNT, DEGRADED, OFFLINE, UPDATED_AT, VERSION, Aggregate
from house_prices.registry import ModelRegistry
from house_prices.rollout_evidence import add_update, evidence_version
from quality.logic import HousePrediction, Priced, Recorded, VersionFacts, recorded_ae_p50
from quality.rollout_labels import EvidenceIncrement

LEDGER_KEY = "label"
# The ledger item of a prediction claimed by a label of another key (a house label): which one.
VIA = "via"
HOUSE_KEY = "house"
HOUSE_SORT = "prediction_id"
# The capture line's rollout tag of an indexed prediction (a map), so a house label finds its rollout too.
HOUSE_ROLLOUT = "rollout"
# BatchWriteItem takes at most 25 puts; unprocessed ones are retried with backoff this many times.
BATCH_WRITE_LIMIT = 25
BATCH_WRITE_ATTEMPTS = 8
# TransactWriteItems takes at most 100 actions: the ledger claim and 99 (city, version) updates.
MAX_UPDATES_PER_TRANSACTION = 99
_DESERIALIZER = TypeDeserializer()
_SERIALIZER = TypeSerializer()


def _number(value: float) -> dict[str, str]:
    return {"N": repr(float(value)) if isinstance(value, float) else str(value)}


class _LedgeredQualityTable:
    """The quality table's (city, version) items, ADDed to with a claim in the ledger table."""

    def __init__(self, dynamodb_client: Any, quality_table: str, ledger_table: str) -> None:
        self._db = dynamodb_client
        self._quality = quality_table
        self._ledger = ledger_table

    def live_item(self, city: str, version: str) -> Mapping[str, Any]:
        """The (city, version) item as plain Python values (numbers as int or float), read consistently."""
        try:
            item = self._db.get_item(
                TableName=self._quality, Key={CITY: {"S": city}, VERSION: {"S": version}}, ConsistentRead=True
            ).get("Item")
        except (ClientError, BotoCoreError) as error:
            raise DependencyFailure(f"DynamoDB GetItem failed: {error}") from error
        return {name: _plain(_DESERIALIZER.deserialize(value)) for name, value in (item or {}).items()}


class DynamoQualityStore(_LedgeredQualityTable):
    def record(
        self,
        *,
        label: Label,
        source: str,
        prediction: Priced,
        aggregate: Aggregate,
        offline_ae_p50: float | None,
        expires_at: int,
        evidence: EvidenceIncrement | None = None,
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
        claims = [ledger_item]
        prediction_key = f"id#{prediction.prediction_id}"
        if label.key != prediction_key:
            claims.append({**ledger_item, LEDGER_KEY: {"S": prediction_key}, VIA: {"S": label.key}})
        puts: list[dict[str, Any]] = [
            {
                "Put": {
                    "TableName": self._ledger,
                    "Item": claim,
                    "ConditionExpression": "attribute_not_exists(#k)",
                    "ExpressionAttributeNames": {"#k": LEDGER_KEY},
                }
            }
            for claim in claims
        ]
        try:
            self._db.transact_write_items(
                TransactItems=[
                    *puts,
                    {
                        "Update": {
                            "TableName": self._quality,
                            "Key": {CITY: {"S": prediction.city}, VERSION: {"S": prediction.version}},
                            "UpdateExpression": update,
                            "ExpressionAttributeNames": names,
                            "ExpressionAttributeValues": values,
                        }
                    },
                    *([self._evidence_update(evidence, now)] if evidence is not None and evidence.increments else []),
                ]
            )
        except ClientError as error:
            reasons = error.response.get("CancellationReasons") or []
            failed = [
                index
                for index, reason in enumerate(reasons[: len(puts)])
                if reason.get("Code") == "ConditionalCheckFailed"
            ]
            if error.response.get("Error", {}).get("Code") == "TransactionCanceledException" and failed:
                # The label's own claim decides redelivery; only its prediction claimed (by another label): duplicate.
                return self._claimed_by(label.key, source) if failed[0] == 0 else Recorded.DUPLICATE
            raise DependencyFailure(f"DynamoDB TransactWriteItems failed: {error}") from error
        except BotoCoreError as error:
            raise DependencyFailure(f"DynamoDB TransactWriteItems failed: {error}") from error
        return Recorded.COUNTED

    def _evidence_update(self, evidence: EvidenceIncrement, now: str) -> dict[str, Any]:
        """The ADD of a label's rollout evidence to (city, ``rollout#{candidate}``) (house_prices.rollout_evidence)."""
        update, names, plain = add_update(evidence.increments, now)
        values = {name: {"S": value} if isinstance(value, str) else _number(value) for name, value in plain.items()}
        return {
            "Update": {
                "TableName": self._quality,
                "Key": {CITY: {"S": evidence.city}, VERSION: {"S": evidence_version(evidence.candidate_version)}},
                "UpdateExpression": update,
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": values,
            }
        }

    def _claimed_by(self, key: str, source: str) -> Recorded:
        try:
            item = self._db.get_item(TableName=self._ledger, Key={LEDGER_KEY: {"S": key}}, ConsistentRead=True).get(
                "Item"
            )
        except (ClientError, BotoCoreError) as error:
            raise DependencyFailure(f"DynamoDB GetItem failed: {error}") from error
        # A prediction claimed through a house label is a duplicate of it, even from the same source.
        same = item is not None and item.get("source", {}).get("S") == source and VIA not in item
        return Recorded.REDELIVERED if same else Recorded.DUPLICATE

    def save_degraded(self, city: str, version: str, degraded: bool, seen_count: int, was_degraded: bool) -> bool:
        flag = "#d = :was" if was_degraded else "(attribute_not_exists(#d) OR #d = :was)"
        return _conditional_update(
            self._db,
            TableName=self._quality,
            Key={CITY: {"S": city}, VERSION: {"S": version}},
            UpdateExpression="SET #d = :d",
            ConditionExpression=f"#n = :n AND {flag}",
            ExpressionAttributeNames={"#d": DEGRADED, "#n": COUNT},
            ExpressionAttributeValues={
                ":d": {"BOOL": degraded},
                ":n": {"N": str(seen_count)},
                ":was": {"BOOL": was_degraded},
            },
        )


def _conditional_update(db: Any, **update: Any) -> bool:
    """One UpdateItem; False when its condition failed (a newer write owns the item), True when it was made."""
    try:
        db.update_item(**update)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
            return False
        raise DependencyFailure(f"DynamoDB UpdateItem failed: {error}") from error
    except BotoCoreError as error:
        raise DependencyFailure(f"DynamoDB UpdateItem failed: {error}") from error
    return True


def time_prefix(moment: datetime) -> str:
    """The 10 characters a ULID made at ``moment`` (to the millisecond) starts with."""
    return encode_ulid(int(moment.timestamp() * 1000) << 80)[:10]


def house_id_bounds(made_from: datetime, made_before: datetime) -> tuple[str, str]:
    """Sort-key bounds (``BETWEEN``, inclusive) of prediction ids made in [made_from, made_before).

    An id is its ULID (time prefix first, then the random part) then ``-city``: every id of a millisecond
    sorts after that millisecond's prefix and before the prefix followed by ``~`` (above every character
    an id holds), so the bounds are the first millisecond's prefix and the last one's + ``~``.
    """
    return time_prefix(made_from), time_prefix(made_before - timedelta(milliseconds=1)) + "~"


class DynamoHouseIndex:
    """Predictions by (city, ``house_id``): BatchWriteItem to add (idempotent), one Query to find the latest."""

    def __init__(self, dynamodb_client: Any, table: str, sleep: Any = time.sleep) -> None:
        self._db = dynamodb_client
        self._table = table
        self._sleep = sleep

    def add(self, entries: Sequence[tuple[HousePrediction, int]]) -> None:
        # BatchWriteItem refuses two puts of one key in a request: one entry per prediction id (house_entries).
        for start in range(0, len(entries), BATCH_WRITE_LIMIT):
            requests = [
                {
                    "PutRequest": {
                        "Item": {
                            HOUSE_KEY: {"S": f"{entry.city}#{entry.house_id}"},
                            HOUSE_SORT: {"S": entry.prediction_id},
                            VERSION: {"S": entry.version},
                            "price": _number(entry.price),
                            "expires_at": {"N": str(expires_at)},
                            **(
                                {HOUSE_ROLLOUT: _SERIALIZER.serialize(_dynamo(dict(entry.rollout)))}
                                if entry.rollout
                                else {}
                            ),
                        }
                    }
                }
                for entry, expires_at in entries[start : start + BATCH_WRITE_LIMIT]
            ]
            self._write(requests)

    def _write(self, requests: list[dict[str, Any]]) -> None:
        pending = {self._table: requests}
        for attempt in range(BATCH_WRITE_ATTEMPTS):
            try:
                response = self._db.batch_write_item(RequestItems=pending)
            except (ClientError, BotoCoreError) as error:
                raise DependencyFailure(f"DynamoDB BatchWriteItem failed: {error}") from error
            pending = {t: r for t, r in (response.get("UnprocessedItems") or {}).items() if r}
            if not pending:
                return
            self._sleep(min(0.05 * 2**attempt, 2.0))  # throttled: back off, as the SDK's guide asks
        raise DependencyFailure(f"DynamoDB BatchWriteItem left {sum(map(len, pending.values()))} items unprocessed")

    def latest(self, city: str, house_id: str, made_from: datetime, made_before: datetime) -> HousePrediction | None:
        if made_before <= made_from:
            return None
        low, high = house_id_bounds(made_from, made_before)
        try:
            items = self._db.query(
                TableName=self._table,
                KeyConditionExpression="#h = :h AND #p BETWEEN :low AND :high",
                ExpressionAttributeNames={"#h": HOUSE_KEY, "#p": HOUSE_SORT},
                ExpressionAttributeValues={
                    ":h": {"S": f"{city}#{house_id}"},
                    ":low": {"S": low},
                    ":high": {"S": high},
                },
                ScanIndexForward=False,
                Limit=1,
            ).get("Items", [])
        except (ClientError, BotoCoreError) as error:
            raise DependencyFailure(f"DynamoDB Query failed: {error}") from error
        if not items:
            return None
        item = items[0]
        tag = _plain(_DESERIALIZER.deserialize(item[HOUSE_ROLLOUT])) if HOUSE_ROLLOUT in item else None
        return HousePrediction(
            city, house_id, item[HOUSE_SORT]["S"], item[VERSION]["S"], float(item["price"]["N"]), tag
        )


class DynamoDriftStore(_LedgeredQualityTable):
    """Live drift counts: ADDed per capture object in one transaction with the object's ledger claim."""

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

    def claimed(self, ledger_key: str) -> bool:
        """True when the ledger holds ``ledger_key`` (shadow scoring skips an object counted before)."""
        try:
            response = self._db.get_item(
                TableName=self._ledger,
                Key={LEDGER_KEY: {"S": ledger_key}},
                ConsistentRead=True,
                ProjectionExpression="#k",
                ExpressionAttributeNames={"#k": LEDGER_KEY},
            )
        except (ClientError, BotoCoreError) as error:
            raise DependencyFailure(f"DynamoDB GetItem failed: {error}") from error
        return "Item" in response

    def save_report(
        self, city: str, version: str, report: Mapping[str, Any], seen_count: int, was_drifting: bool
    ) -> bool:
        """SET the drift report if the live count is still ``seen_count`` and the flag still ``was_drifting``
        (else a newer refresh, or a concurrent one that already saved this change, owns it)."""
        return _conditional_update(
            self._db,
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
    """The gate's ``validation.ae_p50`` of a version and whether it is live, from the registry (one GetItem)."""

    def __init__(self, registry: ModelRegistry) -> None:
        self._registry = registry

    def facts(self, city: str, version: str) -> VersionFacts:
        try:
            recorded = self._registry.version(city, version)
        except DomainError:  # an unknown version or a registry hiccup: the live figures still count
            return VersionFacts(None, False)
        return VersionFacts(recorded_ae_p50(recorded.metrics), recorded.status == "live")
