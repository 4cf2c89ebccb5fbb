"""The model registry: which version of each city is live, and every version's record.

One DynamoDB table, keyed by ``city`` (partition) and ``record`` (sort):

* ``record = "live"``: the city's live version, its TargetModel and when it was promoted. Only
  these items carry ``live_partition``, so the sparse ``live-models`` index lists live cities with
  one Query instead of a Scan over every version of every city;
* ``record = "v#{version}"``: metrics, artifact key, source key, sha256 and status
  (``live`` | ``standby`` | ``rejected``).

Promotion is one DynamoDB transaction whose condition makes it monotonic: a version only goes live
if it is newer than the live one, so duplicate and out-of-order S3 events can never move a city
back. Operators roll back with ``promote(..., expected_live=...)``, which replaces the ordering
condition with an optimistic check on the current live version.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from decimal import Clamped, Context, Decimal, Inexact, Overflow, Rounded, Underflow
from typing import Any, Literal

from botocore.exceptions import BotoCoreError, ClientError

from house_prices.errors import DependencyFailure, PromotionRefused, UnknownCity, UnknownVersion
from house_prices.naming import target_model

Status = Literal["live", "standby", "rejected"]
LIVE_RECORD = "live"
LIVE_INDEX = "live-models"
LIVE_PARTITION_ATTRIBUTE = "live_partition"
VERSION_RECORD_PREFIX = "v#"
# The reason of a version recorded before its gate decision: model-sync resumes such a version on redelivery,
# and readers (``training.verdicts``) know the decision is still to come.
PENDING_REASON = "pending: quality gate not applied yet"

# DynamoDB's number type (38 digits, exponent -130..125); a value it would round or clamp is refused,
# as boto3's TypeSerializer refuses it.
_DYNAMODB_NUMBER = Context(Emin=-128, Emax=126, prec=38, traps=[Clamped, Overflow, Inexact, Rounded, Underflow])


@dataclass(frozen=True)
class LiveModel:
    city: str
    version: str
    target_model: str
    promoted_at: str


@dataclass(frozen=True)
class ModelVersion:
    city: str
    version: str
    status: Status
    artifact_key: str
    source_key: str
    sha256: str
    created_at: str
    metrics: dict[str, Any] = field(default_factory=dict)
    reason: str = ""

    @property
    def target_model(self) -> str:
        return target_model(self.city, self.version)

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "status": self.status,
            "target_model": self.target_model,
            "artifact_key": self.artifact_key,
            "source_key": self.source_key,
            "sha256": self.sha256,
            "created_at": self.created_at,
            "metrics": self.metrics,
            **({"reason": self.reason} if self.reason else {}),
        }


def _attribute(value: Any) -> dict[str, Any]:
    """A Python value as a DynamoDB AttributeValue; floats go through their shortest repr.

    Written here rather than taken from ``boto3.dynamodb.types`` because importing any part of boto3
    imports all of it (and s3transfer), ~40 ms of the router's cold start for a few lines of mapping.
    tests/unit/test_common_registry_codec.py checks it against boto3's TypeSerializer.
    """
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, float):
        value = Decimal(repr(value))
    if isinstance(value, (int, Decimal)):
        number = _DYNAMODB_NUMBER.create_decimal(value)
        if not number.is_finite():
            raise TypeError("Infinity and NaN not supported")
        return {"N": str(number)}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, (bytes, bytearray)):
        return {"B": bytes(value)}
    if isinstance(value, Mapping):
        return {"M": {str(key): _attribute(item) for key, item in value.items()}}
    if isinstance(value, (list, tuple)):
        return {"L": [_attribute(item) for item in value]}
    raise TypeError(f"cannot store {type(value).__name__} in the registry")


def _value(attribute: Mapping[str, Any]) -> Any:
    """The inverse of ``_attribute``; whole numbers come back as int, others as float."""
    [(kind, raw)] = attribute.items()
    if kind == "N":
        number = _DYNAMODB_NUMBER.create_decimal(raw)
        return int(number) if number == number.to_integral_value() else float(number)
    if kind == "M":
        return {key: _value(item) for key, item in raw.items()}
    if kind == "L":
        return [_value(item) for item in raw]
    if kind == "NULL":
        return None
    if kind in {"S", "BOOL", "B"}:
        return raw
    raise TypeError(f"unexpected DynamoDB attribute type {kind!r}")


def _serialize(item: Mapping[str, Any]) -> dict[str, Any]:
    return {key: _attribute(value) for key, value in item.items()}


def _deserialize(item: Mapping[str, Any]) -> dict[str, Any]:
    return {key: _value(attribute) for key, attribute in item.items()}


def _version_record(version: str) -> str:
    return f"{VERSION_RECORD_PREFIX}{version}"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class ModelRegistry:
    """Adapter over a DynamoDB client; raises domain errors only."""

    def __init__(self, dynamodb_client: Any, table_name: str) -> None:
        self._db = dynamodb_client
        self._table = table_name

    # reads
    def live_model(self, city: str) -> LiveModel:
        live = self.find_live(city)
        if live is None:
            raise UnknownCity(city)
        return live

    def find_live(self, city: str) -> LiveModel | None:
        """The city's live model, or None when none is live (no error: callers branch on it)."""
        item = self._get(city, LIVE_RECORD)
        return _live_model(item) if item else None

    def version(self, city: str, version: str) -> ModelVersion:
        item = self._get(city, _version_record(version))
        if item is None:
            raise UnknownVersion(city, version)
        return _model_version(item)

    def versions(self, city: str) -> list[ModelVersion]:
        """All versions of ``city``, newest first."""
        items = self._paginate(
            "query",
            KeyConditionExpression="city = :c AND begins_with(#r, :p)",
            ExpressionAttributeNames={"#r": "record"},
            ExpressionAttributeValues=_serialize({":c": city, ":p": VERSION_RECORD_PREFIX}),
            ScanIndexForward=False,
        )
        return [_model_version(item) for item in items]

    def live_models(self) -> list[LiveModel]:
        items = self._paginate(
            "query",
            IndexName=LIVE_INDEX,
            KeyConditionExpression=f"{LIVE_PARTITION_ATTRIBUTE} = :live",
            ExpressionAttributeValues=_serialize({":live": LIVE_RECORD}),
        )
        return sorted(map(_live_model, items), key=lambda model: model.city)

    # writes
    def record_version(self, version: ModelVersion) -> tuple[ModelVersion, bool]:
        """Store a version once. Returns (stored record, created?); a duplicate keeps the first."""
        item = {**asdict(version), "record": _version_record(version.version)}
        try:
            self._db.put_item(
                TableName=self._table,
                Item=_serialize(item),
                ConditionExpression="attribute_not_exists(#r)",
                ExpressionAttributeNames={"#r": "record"},
            )
            return version, True
        except ClientError as error:
            if _code(error) == "ConditionalCheckFailedException":
                return self.version(version.city, version.version), False
            raise DependencyFailure(f"DynamoDB PutItem failed: {error}") from error
        except BotoCoreError as error:
            raise DependencyFailure(f"DynamoDB PutItem failed: {error}") from error

    def set_status(self, city: str, version: str, status: Status, reason: str = "") -> None:
        self.version(city, version)  # UnknownVersion rather than a silent upsert
        self._call("update_item", **self._status_update(city, version, status, reason))

    def promote(
        self,
        city: str,
        version: str,
        expected_live: str | None = None,
        force: bool = False,
        reason: str | None = None,
    ) -> LiveModel:
        """Make ``version`` live.

        Default: only if no version is live or the live one is older (monotonic, for events).
        ``force=True``: only if the live version is still ``expected_live`` (operator rollback).
        ``reason``, when given, is stored on the promoted version in the same transaction.

        Either way the write is conditioned on the live version read here, so the version it
        demotes to ``standby`` is exactly the one it replaces (two concurrent promotions can never
        leave two versions with status ``live``).
        """
        candidate = self.version(city, version)
        if candidate.status == "rejected":
            raise PromotionRefused(f"{city} {version} was rejected: {candidate.reason}")
        current = self.find_live(city)
        if current and current.version == version:
            return current
        current_version = current.version if current else None
        if force:
            if current_version != expected_live:
                raise PromotionRefused(
                    f"{city}: {version} not promoted; live version is {current_version!r}, expected {expected_live!r}"
                )
        elif current_version is not None and current_version > version:
            raise PromotionRefused(f"{city}: {version} not promoted; newer version {current_version} is live")
        promoted_at = _now()
        live_item = {
            "city": city,
            "record": LIVE_RECORD,
            LIVE_PARTITION_ATTRIBUTE: LIVE_RECORD,
            "live_version": version,
            "target_model": candidate.target_model,
            "promoted_at": promoted_at,
            "previous_version": current_version or "",
        }
        if current_version is None:
            condition, values = "attribute_not_exists(live_version)", {}
        else:
            condition, values = "live_version = :current", {":current": current_version}
        updates = [self._status_update(city, version, "live", reason)]
        if current_version is not None:
            updates.append(self._status_update(city, current_version, "standby"))
        actions: list[dict[str, Any]] = [
            {
                "Put": {
                    "TableName": self._table,
                    "Item": _serialize(live_item),
                    "ConditionExpression": condition,
                    **({"ExpressionAttributeValues": _serialize(values)} if values else {}),
                }
            },
            *({"Update": {"TableName": self._table, **update}} for update in updates),
        ]
        try:
            self._db.transact_write_items(TransactItems=actions)
        except ClientError as error:
            if _code(error) in {"TransactionCanceledException", "ConditionalCheckFailedException"}:
                raise PromotionRefused(f"{city}: {version} not promoted; live version changed or is newer") from error
            raise DependencyFailure(f"DynamoDB TransactWriteItems failed: {error}") from error
        except BotoCoreError as error:
            raise DependencyFailure(f"DynamoDB TransactWriteItems failed: {error}") from error
        return LiveModel(city, version, candidate.target_model, promoted_at)

    # plumbing
    @staticmethod
    def _status_update(city: str, version: str, status: Status, reason: str | None = None) -> dict[str, Any]:
        """Status-change arguments shared by set_status and promote's transaction (each adds TableName its way).

        ``reason=None`` leaves the stored reason untouched (a demoted version keeps why it was live).
        """
        values: dict[str, Any] = {":s": status}
        if reason is not None:
            values[":why"] = reason
        return {
            "Key": _serialize({"city": city, "record": _version_record(version)}),
            "UpdateExpression": "SET #s = :s" + (", reason = :why" if reason is not None else ""),
            "ConditionExpression": "attribute_exists(#r)",
            "ExpressionAttributeNames": {"#s": "status", "#r": "record"},
            "ExpressionAttributeValues": _serialize(values),
        }

    def _get(self, city: str, record: str) -> dict[str, Any] | None:
        response = self._call("get_item", Key=_serialize({"city": city, "record": record}), ConsistentRead=True)
        item = response.get("Item")
        return _deserialize(item) if item else None

    def _paginate(self, operation: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
        paginator = self._db.get_paginator(operation)
        try:
            for page in paginator.paginate(TableName=self._table, **kwargs):
                for item in page.get("Items", []):
                    yield _deserialize(item)
        except (ClientError, BotoCoreError) as error:
            raise DependencyFailure(f"DynamoDB {operation} failed: {error}") from error

    def _call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        try:
            return getattr(self._db, operation)(TableName=self._table, **kwargs)
        except (ClientError, BotoCoreError) as error:
            raise DependencyFailure(f"DynamoDB {operation} failed: {error}") from error


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _live_model(item: Mapping[str, Any]) -> LiveModel:
    return LiveModel(item["city"], item["live_version"], item["target_model"], item["promoted_at"])


def _model_version(item: Mapping[str, Any]) -> ModelVersion:
    return ModelVersion(
        city=item["city"],
        version=item["version"],
        status=item["status"],
        artifact_key=item.get("artifact_key", ""),
        source_key=item.get("source_key", ""),
        sha256=item.get("sha256", ""),
        created_at=item.get("created_at", ""),
        metrics=dict(item.get("metrics", {})),
        reason=item.get("reason", ""),
    )
