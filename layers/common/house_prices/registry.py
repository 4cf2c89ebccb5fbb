"""The model registry: which version of each city is live, and every version's record.

One DynamoDB table, keyed by ``city`` (partition) and ``record`` (sort):

* ``record = "live"``: the city's live version, its TargetModel and when it was promoted. Only
  these items carry ``live_partition``, so the sparse ``live-models`` index lists live cities with
  one Query instead of a Scan over every version of every city;
* ``record = "v#{version}"``: metrics, artifact key, source key, sha256 and status
  (``live`` | ``standby`` | ``rejected`` | ``candidate``: in a rollout now);
* ``record = "h#{at}#{candidate}#{action}#{revision}"``: the rollout audit trail (``RolloutEvent``);
* ``record = "rollout-policy"``: the city's override of model-sync's ``ROLLOUT_POLICY`` (a spec string).

Promotion is one DynamoDB transaction whose condition makes it monotonic: a version only goes live
if it is newer than the live one, so duplicate and out-of-order S3 events can never move a city
back. Operators roll back with ``promote(..., expected_live=...)``, which replaces the ordering
condition with an optimistic check on the current live version.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from botocore.exceptions import BotoCoreError, ClientError

from house_prices.dynamodb_values import deserialize, serialize
from house_prices.errors import (
    DependencyFailure,
    DomainError,
    FieldProblem,
    InvalidInput,
    NoRollout,
    PromotionRefused,
    RolloutConflict,
    UnknownCity,
    UnknownVersion,
)
from house_prices.naming import target_model

Status = Literal["live", "standby", "rejected", "candidate"]
RolloutMode = Literal["shadow", "canary"]
RolloutOutcome = Literal["promoted", "rolled_back", "aborted", "timed_out", "superseded"]
ROLLOUT_MODES: tuple[RolloutMode, ...] = ("shadow", "canary")
# What end_rollout may record, and the status the candidate is left in.
_ENDED_STATUS: dict[str, Status] = {
    "rolled_back": "rejected",
    "aborted": "standby",
    "timed_out": "standby",
    "superseded": "standby",
}
LIVE_RECORD = "live"
LIVE_INDEX = "live-models"
LIVE_PARTITION_ATTRIBUTE = "live_partition"
VERSION_RECORD_PREFIX = "v#"
ROLLOUT_INDEX = "rollouts"
ROLLOUT_PARTITION_ATTRIBUTE = "rollout_partition"
ROLLOUT_PARTITION = "rollout"
ROLLOUT_ATTRIBUTE = "rollout"
REVISION_ATTRIBUTE = "rollout_revision"
HISTORY_RECORD_PREFIX = "h#"
OVERRIDE_RECORD = "rollout-policy"
MAX_WEIGHT_BP = 10_000
# Attempts of a rollout write that is re-read and retried when another write changed the live item meanwhile.
_ATTEMPTS = 3
# What promoting and ending a rollout name besides #ro and #rv: they remove the rollout of that candidate.
_ENDING_NAMES = {"#rp": ROLLOUT_PARTITION_ATTRIBUTE, "#cv": "candidate_version"}
# The reason of a version recorded before its gate decision: model-sync resumes such a version on redelivery,
# and readers (``training.verdicts``) know the decision is still to come.
PENDING_REASON = "pending: quality gate not applied yet"


@dataclass(frozen=True)
class Rollout:
    """A running rollout of ``candidate_version`` against the city's live version (the live item's ``rollout``)."""

    candidate_version: str
    candidate_target_model: str
    mode: RolloutMode
    # canary: share of houses (basis points, 0..10000) the candidate answers;
    # shadow: share of live predictions also scored by the candidate (sampling).
    weight_bp: int
    salt: str  # random per rollout: a new rollout re-shuffles houses
    started_at: str  # ISO-8601 UTC seconds, like _now()
    deadline: str  # the decider ends the rollout (timed_out) at this time if no decision was reached
    revision: int  # the live item's write counter when this state was written (conditional writes use it)
    policy: dict[str, Any]  # guard settings (house_prices.rollout_stats.GuardPolicy's fields), stored as given
    started_by: str = ""  # "model-sync" | "operator" | ...

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LiveModel:
    city: str
    version: str
    target_model: str
    promoted_at: str
    rollout: Rollout | None = None


@dataclass(frozen=True)
class RolloutEvent:
    """One line of a city's rollout audit trail: what happened to which candidate, who did it, on what numbers."""

    city: str
    candidate_version: str
    live_version: str
    action: str  # "started" | "weight" | RolloutOutcome
    at: str
    actor: str
    reason: str
    evidence: dict[str, Any]
    revision: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


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


def _version_record(version: str) -> str:
    return f"{VERSION_RECORD_PREFIX}{version}"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _timestamp(now: datetime | None) -> str:
    """``now`` (a naive one is taken as UTC) as _now() writes it; None: the current time."""
    if now is None:
        return _now()
    return (now if now.tzinfo else now.replace(tzinfo=UTC)).astimezone(UTC).isoformat(timespec="seconds")


def _history_record(at: str, candidate_version: str, action: str, revision: int) -> str:
    # The revision makes the key unique (two writes in one second) and orders events of one second.
    return f"{HISTORY_RECORD_PREFIX}{at}#{candidate_version}#{action}#{revision:012d}"


def _check_weight(weight_bp: int) -> None:
    if isinstance(weight_bp, bool) or not isinstance(weight_bp, int) or not 0 <= weight_bp <= MAX_WEIGHT_BP:
        raise InvalidInput(
            [FieldProblem("weight_bp", f"must be a whole number of basis points, 0..{MAX_WEIGHT_BP}")],
            message=f"Invalid rollout weight: {weight_bp!r}",
        )


class ModelRegistry:
    """Adapter over a DynamoDB client; raises domain errors only."""

    def __init__(self, dynamodb_client: Any, table_name: str) -> None:
        self._db = dynamodb_client
        self._table = table_name

    @property
    def table_name(self) -> str:
        return self._table

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
            ExpressionAttributeValues=serialize({":c": city, ":p": VERSION_RECORD_PREFIX}),
            ScanIndexForward=False,
        )
        return [_model_version(item) for item in items]

    def live_models(self) -> list[LiveModel]:
        items = self._paginate(
            "query",
            IndexName=LIVE_INDEX,
            KeyConditionExpression=f"{LIVE_PARTITION_ATTRIBUTE} = :live",
            ExpressionAttributeValues=serialize({":live": LIVE_RECORD}),
        )
        return sorted(map(_live_model, items), key=lambda model: model.city)

    # writes
    def record_version(self, version: ModelVersion) -> tuple[ModelVersion, bool]:
        """Store a version once. Returns (stored record, created?); a duplicate keeps the first."""
        item = {**asdict(version), "record": _version_record(version.version)}
        try:
            self._db.put_item(
                TableName=self._table,
                Item=serialize(item),
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
        actor: str | None = None,
    ) -> LiveModel:
        """Make ``version`` live.

        Default: only if no version is live or the live one is older (monotonic, for events).
        ``force=True``: only if the live version is still ``expected_live`` (operator rollback).
        ``reason``, when given, is stored on the promoted version in the same transaction.

        Either way the write is conditioned on the live version read here, so the version it
        demotes to ``standby`` is exactly the one it replaces (two concurrent promotions can never
        leave two versions with status ``live``).

        A running rollout ends in the same transaction: promoting its candidate records it as
        ``promoted``; any other version sends the candidate back to ``standby`` and records the rollout as
        ``aborted`` (``force``, an operator) or ``superseded`` (a newer version). Without ``force`` a version
        older than a running rollout's candidate is refused (the monotonic rule counts the candidate).
        ``actor`` names who did it in that history item (default: ``operator`` with force, else ``model-sync``).
        """
        candidate = self.version(city, version)
        if candidate.status == "rejected":
            raise PromotionRefused(f"{city} {version} was rejected: {candidate.reason}")
        current = self.find_live(city)
        if current and current.version == version:
            return current
        current_version = current.version if current else None
        running = current.rollout if current else None
        if force:
            if current_version != expected_live:
                raise PromotionRefused(
                    f"{city}: {version} not promoted; live version is {current_version!r}, expected {expected_live!r}"
                )
        elif current_version is not None and current_version > version:
            raise PromotionRefused(f"{city}: {version} not promoted; newer version {current_version} is live")
        elif running is not None and running.candidate_version > version:
            newer = f"newer version {running.candidate_version} is in a {running.mode} rollout"
            raise PromotionRefused(f"{city}: {version} not promoted; {newer}")
        promoted_at = _now()
        names = {"#ro": ROLLOUT_ATTRIBUTE, "#rp": ROLLOUT_PARTITION_ATTRIBUTE, "#rv": REVISION_ATTRIBUTE}
        values: dict[str, Any] = {
            ":lp": LIVE_RECORD,
            ":v": version,
            ":t": candidate.target_model,
            ":at": promoted_at,
            ":prev": current_version or "",
            ":one": 1,
        }
        if current_version is None:
            condition = "attribute_not_exists(live_version)"
        else:
            condition, values[":current"] = "live_version = :current", current_version
        if running is None:
            # A rollout started since our read would otherwise vanish with its candidate left "candidate".
            condition += " AND attribute_not_exists(#ro)"
        else:
            condition += " AND #rv = :revision"
            values[":revision"] = running.revision
        live_update = {
            "TableName": self._table,
            "Key": serialize({"city": city, "record": LIVE_RECORD}),
            "UpdateExpression": (
                f"SET {LIVE_PARTITION_ATTRIBUTE} = :lp, live_version = :v, target_model = :t, promoted_at = :at, "
                "previous_version = :prev REMOVE #ro, #rp ADD #rv :one"
            ),
            "ConditionExpression": condition,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": serialize(values),
        }
        updates = [self._status_update(city, version, "live", reason, forbid="rejected")]
        if current_version is not None:
            updates.append(self._status_update(city, current_version, "standby"))
        history: list[dict[str, Any]] = []
        if running is not None and current_version is not None:
            who = actor or ("operator" if force else "model-sync")
            if running.candidate_version == version:
                action, why = "promoted", f"promoted by {who} outside the rollout"
            else:
                action = "aborted" if force else "superseded"
                why = f"{version} promoted by {who}; the rollout of {running.candidate_version} ends"
                updates.append(
                    self._status_update(city, running.candidate_version, "standby", f"rollout {action}: {why}")
                )
            history.append(
                self._history_put(
                    city,
                    running.candidate_version,
                    current_version,
                    action,
                    promoted_at,
                    who,
                    why,
                    {},
                    running.revision + 1,
                )
            )
        actions: list[dict[str, Any]] = [
            {"Update": live_update},
            *({"Update": {"TableName": self._table, **update}} for update in updates),
            *history,
        ]
        self._transact(
            actions, lambda: PromotionRefused(f"{city}: {version} not promoted; live version changed or is newer")
        )
        return LiveModel(city, version, candidate.target_model, promoted_at)

    # rollouts
    def start_rollout(
        self,
        city: str,
        candidate_version: str,
        mode: RolloutMode,
        weight_bp: int,
        policy: Mapping[str, Any],
        duration_seconds: float,
        actor: str,
        reason: str = "",
        now: datetime | None = None,
        replace: bool = False,
    ) -> Rollout:
        """Start rolling ``candidate_version`` out against the live version; the candidate's status becomes
        ``candidate`` (and its reason ``reason``) in the same transaction.

        Refused (PromotionRefused) unless a version is live, the candidate is newer (the monotonic rule) and not
        rejected; refused (RolloutConflict) while a rollout runs, unless ``replace``: then that rollout ends as
        ``superseded`` (its candidate back to ``standby``) in the same transaction. A rollout of the same
        candidate is never restarted (RolloutConflict): a new salt would re-shuffle the houses mid-rollout.
        """
        if mode not in ROLLOUT_MODES:
            raise InvalidInput(
                [FieldProblem("mode", "must be 'shadow' or 'canary'")], f"Invalid rollout mode: {mode!r}"
            )
        _check_weight(weight_bp)
        if not duration_seconds > 0:
            raise InvalidInput(
                [FieldProblem("duration_seconds", "must be > 0")], f"Invalid rollout duration: {duration_seconds!r}"
            )
        candidate = self.version(city, candidate_version)
        if candidate.status == "rejected":
            raise PromotionRefused(f"{city} {candidate_version} was rejected: {candidate.reason}")
        item = self._get(city, LIVE_RECORD)
        if item is None:
            raise PromotionRefused(f"{city}: no live version to roll {candidate_version} out against")
        live = _live_model(item)
        if candidate_version <= live.version:
            raise PromotionRefused(f"{city}: {candidate_version} is not newer than the live version {live.version}")
        running = live.rollout
        if running is not None and (running.candidate_version == candidate_version or not replace):
            hint = "" if running.candidate_version == candidate_version else "; end it first, or replace it"
            raise RolloutConflict(f"{city}: a {running.mode} rollout of {running.candidate_version} is running{hint}")
        revision = _revision(item)
        started = _moment(now)
        at = started.isoformat(timespec="seconds")
        rollout = Rollout(
            candidate_version=candidate_version,
            candidate_target_model=candidate.target_model,
            mode=mode,
            weight_bp=weight_bp,
            salt=secrets.token_hex(8),
            started_at=at,
            deadline=(started + timedelta(seconds=duration_seconds)).isoformat(timespec="seconds"),
            revision=revision + 1,
            policy=dict(policy),
            started_by=actor,
        )
        stored = {key: value for key, value in rollout.as_dict().items() if key != "revision"}
        condition, values = _revision_condition(revision)
        values.update({":live": live.version, ":ro": stored, ":rp": ROLLOUT_PARTITION, ":one": 1})
        actions: list[dict[str, Any]] = [
            self._live_update(
                city,
                "SET #ro = :ro, #rp = :rp ADD #rv :one",
                f"live_version = :live AND {condition}",
                values,
                {"#rp": ROLLOUT_PARTITION_ATTRIBUTE},
            ),
            self._status_action(
                city, candidate_version, "candidate", reason or f"in a {mode} rollout", forbid="rejected"
            ),
        ]
        if running is not None:
            why = f"superseded by a rollout of {candidate_version}"
            actions.append(
                self._status_action(city, running.candidate_version, "standby", f"rollout superseded: {why}")
            )
            actions.append(
                self._history_put(
                    city, running.candidate_version, live.version, "superseded", at, actor, why, {}, rollout.revision
                )
            )
        started_evidence = {
            "mode": mode,
            "weight_bp": weight_bp,
            "deadline": rollout.deadline,
            "policy": rollout.policy,
        }
        actions.append(
            self._history_put(
                city, candidate_version, live.version, "started", at, actor, reason, started_evidence, rollout.revision
            )
        )
        self._transact(
            actions,
            lambda: RolloutConflict(
                f"{city}: rollout of {candidate_version} not started; the registry changed meanwhile"
            ),
        )
        return rollout

    def set_rollout_weight(
        self,
        city: str,
        candidate_version: str,
        weight_bp: int,
        actor: str,
        expected_revision: int | None = None,
        now: datetime | None = None,
        reason: str = "",
    ) -> Rollout:
        """Change the running rollout's weight (basis points). ``expected_revision``: refuse (RolloutConflict)
        unless the rollout is still at that revision; without it, a concurrent write is re-read and retried."""
        _check_weight(weight_bp)
        for attempt in range(_ATTEMPTS):
            live, rollout = self._running(city, candidate_version)
            if expected_revision is not None and rollout.revision != expected_revision:
                raise RolloutConflict(
                    f"{city}: the rollout is at revision {rollout.revision}, not {expected_revision}; read it again"
                )
            if rollout.weight_bp == weight_bp:
                return rollout
            at = _timestamp(now)
            condition, values = _revision_condition(rollout.revision)
            values.update({":c": candidate_version, ":w": weight_bp, ":one": 1})
            actions = [
                self._live_update(
                    city,
                    "SET #ro.#w = :w ADD #rv :one",
                    f"#ro.#cv = :c AND {condition}",
                    values,
                    {"#w": "weight_bp", "#cv": "candidate_version"},
                ),
                self._history_put(
                    city,
                    candidate_version,
                    live.version,
                    "weight",
                    at,
                    actor,
                    reason,
                    {"from_bp": rollout.weight_bp, "to_bp": weight_bp},
                    rollout.revision + 1,
                ),
            ]
            try:
                self._transact(
                    actions, lambda: RolloutConflict(f"{city}: the rollout changed while its weight was set")
                )
            except RolloutConflict:
                if expected_revision is not None or attempt == _ATTEMPTS - 1:
                    raise
                continue
            return replace(rollout, weight_bp=weight_bp, revision=rollout.revision + 1)
        raise AssertionError("unreachable")  # the loop returns or raises

    def promote_rollout(
        self,
        city: str,
        candidate_version: str,
        actor: str,
        reason: str,
        evidence: Mapping[str, Any],
        now: datetime | None = None,
    ) -> LiveModel:
        """The candidate becomes live, in one transaction: the live item (previous_version = the old live, rollout
        removed), candidate -> ``live`` (reason), old live -> ``standby``, and the ``promoted`` history item.

        Conditioned on the live version and the rollout (its candidate and revision) read here; a concurrent weight
        change is re-read and retried. A retried decision that finds the candidate live already returns it.
        """
        for attempt in range(_ATTEMPTS):
            current = self.find_live(city)
            if current is not None and current.version == candidate_version:
                return current
            live, rollout = self._running(city, candidate_version, current)
            if candidate_version <= live.version:  # start_rollout kept the monotonic rule; nothing undoes it
                raise PromotionRefused(f"{city}: {candidate_version} is not newer than the live version {live.version}")
            at = _timestamp(now)
            condition, values = _revision_condition(rollout.revision)
            values.update(
                {
                    ":lp": LIVE_RECORD,
                    ":old": live.version,
                    ":c": candidate_version,
                    ":t": rollout.candidate_target_model,
                    ":at": at,
                    ":one": 1,
                }
            )
            actions = [
                self._live_update(
                    city,
                    f"SET {LIVE_PARTITION_ATTRIBUTE} = :lp, live_version = :c, target_model = :t, "
                    "promoted_at = :at, previous_version = :old REMOVE #ro, #rp ADD #rv :one",
                    f"live_version = :old AND #ro.#cv = :c AND {condition}",
                    values,
                    _ENDING_NAMES,
                ),
                self._status_action(city, candidate_version, "live", reason, forbid="rejected"),
                self._status_action(city, live.version, "standby"),
                self._history_put(
                    city, candidate_version, live.version, "promoted", at, actor, reason, evidence, rollout.revision + 1
                ),
            ]
            try:
                self._transact(actions, lambda: RolloutConflict(f"{city}: the rollout changed while it was promoted"))
            except RolloutConflict:
                if attempt == _ATTEMPTS - 1:
                    raise
                continue
            return LiveModel(city, candidate_version, rollout.candidate_target_model, at)
        raise AssertionError("unreachable")  # the loop returns or raises

    def end_rollout(
        self,
        city: str,
        candidate_version: str,
        outcome: RolloutOutcome,
        actor: str,
        reason: str,
        evidence: Mapping[str, Any],
        now: datetime | None = None,
    ) -> None:
        """End the rollout without promoting: ``rolled_back`` marks the candidate ``rejected`` (``reason``: the
        evidence in words), ``aborted`` / ``timed_out`` / ``superseded`` send it back to ``standby``. One
        transaction with the history item; NoRollout when that rollout is not running (e.g. already ended)."""
        if outcome not in _ENDED_STATUS:
            raise InvalidInput(
                [FieldProblem("outcome", f"must be one of {', '.join(_ENDED_STATUS)} (promote_rollout promotes)")],
                f"Invalid rollout outcome: {outcome!r}",
            )
        status = _ENDED_STATUS[outcome]
        for attempt in range(_ATTEMPTS):
            live, rollout = self._running(city, candidate_version)
            at = _timestamp(now)
            condition, values = _revision_condition(rollout.revision)
            values.update({":c": candidate_version, ":one": 1})
            actions = [
                self._live_update(
                    city, "REMOVE #ro, #rp ADD #rv :one", f"#ro.#cv = :c AND {condition}", values, _ENDING_NAMES
                ),
                self._status_action(
                    city, candidate_version, status, f"{outcome.replace('_', ' ')} by {actor}: {reason}"
                ),
                self._history_put(
                    city, candidate_version, live.version, outcome, at, actor, reason, evidence, rollout.revision + 1
                ),
            ]
            try:
                self._transact(actions, lambda: RolloutConflict(f"{city}: the rollout changed while it was ended"))
            except RolloutConflict:
                if attempt == _ATTEMPTS - 1:
                    raise
                continue
            return
        raise AssertionError("unreachable")  # the loop returns or raises

    def rollouts(self) -> list[LiveModel]:
        """Every city with a rollout running (the sparse ``rollouts`` index: one Query), by city."""
        items = self._paginate(
            "query",
            IndexName=ROLLOUT_INDEX,
            KeyConditionExpression="#rp = :p",
            ExpressionAttributeNames={"#rp": ROLLOUT_PARTITION_ATTRIBUTE},
            ExpressionAttributeValues=serialize({":p": ROLLOUT_PARTITION}),
        )
        return sorted((m for m in map(_live_model, items) if m.rollout is not None), key=lambda model: model.city)

    def rollout_history(self, city: str, limit: int = 50) -> list[RolloutEvent]:
        """The city's rollout events, newest first (at most ``limit``)."""
        if limit < 1:
            return []
        response = self._call(
            "query",
            KeyConditionExpression="city = :c AND begins_with(#r, :p)",
            ExpressionAttributeNames={"#r": "record"},
            ExpressionAttributeValues=serialize({":c": city, ":p": HISTORY_RECORD_PREFIX}),
            ScanIndexForward=False,
            ConsistentRead=True,
            Limit=limit,
        )
        events = [_rollout_event(deserialize(item)) for item in response.get("Items", [])]
        return sorted(events, key=lambda event: (event.at, event.revision), reverse=True)

    def rollout_override(self, city: str) -> str | None:
        """The city's override of model-sync's rollout policy (a spec string), or None."""
        item = self._get(city, OVERRIDE_RECORD)
        spec = item.get("spec") if item else None
        return str(spec) if spec else None

    def set_rollout_override(self, city: str, spec: str | None, now: datetime | None = None) -> None:
        """Store (or, with None, remove) the city's override; the caller validates ``spec`` (model-sync's grammar)."""
        key = {"city": city, "record": OVERRIDE_RECORD}
        if spec is None:
            self._call("delete_item", Key=serialize(key))
        else:
            self._call("put_item", Item=serialize({**key, "spec": spec, "updated_at": _timestamp(now)}))

    # plumbing
    @staticmethod
    def _status_update(
        city: str, version: str, status: Status, reason: str | None = None, forbid: Status | None = None
    ) -> dict[str, Any]:
        """Status-change arguments shared by set_status and the transactions (each adds TableName its way).

        ``reason=None`` leaves the stored reason untouched (a demoted version keeps why it was live).
        ``forbid``: the write fails (the whole transaction with it) when the version has that status now.
        """
        values: dict[str, Any] = {":s": status}
        if reason is not None:
            values[":why"] = reason
        condition = "attribute_exists(#r)"
        if forbid is not None:
            condition += " AND #s <> :forbidden"
            values[":forbidden"] = forbid
        return {
            "Key": serialize({"city": city, "record": _version_record(version)}),
            "UpdateExpression": "SET #s = :s" + (", reason = :why" if reason is not None else ""),
            "ConditionExpression": condition,
            "ExpressionAttributeNames": {"#s": "status", "#r": "record"},
            "ExpressionAttributeValues": serialize(values),
        }

    def _status_action(
        self, city: str, version: str, status: Status, reason: str | None = None, forbid: Status | None = None
    ) -> dict[str, Any]:
        """``_status_update`` as one action of a rollout transaction."""
        return {"Update": {"TableName": self._table, **self._status_update(city, version, status, reason, forbid)}}

    def _live_update(
        self, city: str, expression: str, condition: str, values: Mapping[str, Any], names: Mapping[str, str]
    ) -> dict[str, Any]:
        """The live item's update in a rollout transaction: ``#ro`` (the rollout) and ``#rv`` (the write
        counter, which every such update bumps) are named here; ``names`` adds the rest."""
        return {
            "Update": {
                "TableName": self._table,
                "Key": serialize({"city": city, "record": LIVE_RECORD}),
                "UpdateExpression": expression,
                "ConditionExpression": condition,
                "ExpressionAttributeNames": {"#ro": ROLLOUT_ATTRIBUTE, "#rv": REVISION_ATTRIBUTE, **names},
                "ExpressionAttributeValues": serialize(values),
            }
        }

    def _history_put(
        self,
        city: str,
        candidate_version: str,
        live_version: str,
        action: str,
        at: str,
        actor: str,
        reason: str,
        evidence: Mapping[str, Any],
        revision: int,
    ) -> dict[str, Any]:
        event = RolloutEvent(
            city, candidate_version, live_version, action, at, actor, reason, _storable(evidence), revision
        )
        item = {**event.as_dict(), "record": _history_record(at, candidate_version, action, revision)}
        return {"Put": {"TableName": self._table, "Item": serialize(item)}}

    def _running(
        self, city: str, candidate_version: str | None, live: LiveModel | None = None
    ) -> tuple[LiveModel, Rollout]:
        """The live model and its rollout (of ``candidate_version``, when given); NoRollout otherwise."""
        live = live or self.find_live(city)
        rollout = live.rollout if live else None
        if live is None or rollout is None or (candidate_version and rollout.candidate_version != candidate_version):
            raise NoRollout(city, candidate_version)
        return live, rollout

    def _transact(self, actions: list[dict[str, Any]], refused: Callable[[], DomainError]) -> None:
        """One TransactWriteItems; a failed condition raises ``refused()``, anything else DependencyFailure."""
        try:
            self._db.transact_write_items(TransactItems=actions)
        except ClientError as error:
            if _code(error) in {"TransactionCanceledException", "ConditionalCheckFailedException"}:
                raise refused() from error
            raise DependencyFailure(f"DynamoDB TransactWriteItems failed: {error}") from error
        except BotoCoreError as error:
            raise DependencyFailure(f"DynamoDB TransactWriteItems failed: {error}") from error

    def _get(self, city: str, record: str) -> dict[str, Any] | None:
        response = self._call("get_item", Key=serialize({"city": city, "record": record}), ConsistentRead=True)
        item = response.get("Item")
        return deserialize(item) if item else None

    def _paginate(self, operation: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
        paginator = self._db.get_paginator(operation)
        try:
            for page in paginator.paginate(TableName=self._table, **kwargs):
                for item in page.get("Items", []):
                    yield deserialize(item)
        except (ClientError, BotoCoreError) as error:
            raise DependencyFailure(f"DynamoDB {operation} failed: {error}") from error

    def _call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        try:
            return getattr(self._db, operation)(TableName=self._table, **kwargs)
        except (ClientError, BotoCoreError) as error:
            raise DependencyFailure(f"DynamoDB {operation} failed: {error}") from error


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _revision(item: Mapping[str, Any]) -> int:
    """The live item's write counter (0 on an item written before rollouts existed)."""
    return int(item.get(REVISION_ATTRIBUTE, 0))


def _revision_condition(revision: int) -> tuple[str, dict[str, Any]]:
    """``#rv`` (the counter's name placeholder) still holds ``revision``."""
    if revision == 0:
        return "attribute_not_exists(#rv)", {}
    return "#rv = :revision", {":revision": revision}


def _moment(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC).replace(microsecond=0)
    return (now if now.tzinfo else now.replace(tzinfo=UTC)).astimezone(UTC).replace(microsecond=0)


def _storable(value: Any) -> Any:
    """Evidence as the registry can store it: a non-finite float (an infinite likelihood ratio) as its text."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, Mapping):
        return {str(key): _storable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_storable(item) for item in value]
    return value


def _rollout(raw: Any, revision: int) -> Rollout | None:
    if not isinstance(raw, Mapping):
        return None
    return Rollout(
        candidate_version=raw["candidate_version"],
        candidate_target_model=raw["candidate_target_model"],
        mode=raw["mode"],
        weight_bp=int(raw["weight_bp"]),
        salt=raw["salt"],
        started_at=raw["started_at"],
        deadline=raw["deadline"],
        revision=revision,
        policy=dict(raw.get("policy") or {}),
        started_by=raw.get("started_by", ""),
    )


def _live_model(item: Mapping[str, Any]) -> LiveModel:
    return LiveModel(
        item["city"],
        item["live_version"],
        item["target_model"],
        item["promoted_at"],
        _rollout(item.get(ROLLOUT_ATTRIBUTE), _revision(item)),
    )


def _rollout_event(item: Mapping[str, Any]) -> RolloutEvent:
    return RolloutEvent(
        city=item["city"],
        candidate_version=item["candidate_version"],
        live_version=item.get("live_version", ""),
        action=item["action"],
        at=item["at"],
        actor=item.get("actor", ""),
        reason=item.get("reason", ""),
        evidence=dict(item.get("evidence") or {}),
        revision=int(item.get("revision", 0)),
    )


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
