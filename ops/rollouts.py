"""``python -m ops rollout``: the operator's hands on progressive delivery (docs/rollouts.md, "Operators").

    rollout status [CITY]                    running rollouts; with CITY: its rollout, evidence, history, override
    rollout start CITY [--version V] [--mode shadow|canary] [--weight PCT] [--days N] [--guard NAME=VALUE]
    rollout weight CITY PCT                  the candidate's share (canary) or the scored share (shadow)
    rollout promote CITY                     the candidate goes live now (same transaction as the decider's)
    rollout abort CITY                       end the rollout; the candidate goes back to standby
    rollout policy CITY [SPEC | --clear]     the city's override of model-sync's ROLLOUT_POLICY
    rollout evaluate [--at ISO]              one pass of the decider, now or at a simulated time

Every write is one of the registry's conditional writes (``ModelRegistry``): a command racing model-sync, the
decider or another operator either wins whole or fails with RolloutConflict, and can be run again. The
evidence is the quality table's item ``(city, "rollout#{candidate}")`` (``house_prices.rollout_evidence``),
shown when that table is known (``--quality-table``, ``QUALITY_TABLE``, the stack's output, or the registry's
sibling) and holds it; else ``status`` shows the registry state alone, saying why.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from rich.console import Console

from house_prices.errors import DomainError, FieldProblem, InvalidInput, NoRollout, UnknownCity
from house_prices.naming import validate_city, validate_version
from house_prices.registry import MAX_WEIGHT_BP, LiveModel, ModelRegistry, Rollout, RolloutMode
from house_prices.rollout_evidence import RolloutEvidence, evidence_version
from house_prices.rollout_stats import GuardPolicy
from model_sync.rollout_policy import DEFAULT_ROLLOUT_MAX_DAYS, RolloutPolicy
from ops import tables
from ops.config import ConfigError
from ops.errors import aws_error, error_code

COMMAND = "rollout"
ACTOR = "operator"
DEFAULT_WEIGHT_PCT = {"canary": "10", "shadow": "100"}
MODES: dict[str, RolloutMode] = {"shadow": "shadow", "canary": "canary"}
ROLLOUT_COLUMNS = (
    "city",
    "live_version",
    "candidate_version",
    "mode",
    "weight_pct",
    "started_at",
    "deadline",
    "started_by",
    "revision",
)
HISTORY_COLUMNS = ("at", "action", "candidate_version", "live_version", "actor", "reason")


class NothingToRollOut(DomainError):
    """``rollout start`` without ``--version`` found no standby version newer than the live one."""


@dataclass(frozen=True)
class Section:
    title: str
    rows: Sequence[Mapping[str, Any]]
    columns: Sequence[str]


@dataclass(frozen=True)
class Report:
    """What a rollout command found or did: ``result`` for --json, ``sections`` and ``lines`` for people."""

    result: Any
    sections: list[Section] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)


# --- arguments ---------------------------------------------------------------------------------------------


def add_command(commands: Any) -> list[argparse.ArgumentParser]:
    """The ``rollout`` command and its sub-commands (returned, so the caller gives them the global options)."""
    rollout = commands.add_parser(COMMAND, help="progressive delivery per city: status, start, weight, promote, abort")
    actions = rollout.add_subparsers(dest="rollout_command", required=True)
    status = actions.add_parser("status", help="running rollouts; with CITY its rollout, evidence and history")
    status.add_argument("city", nargs="?")
    status.add_argument("--history", type=int, default=20, help="history events to show (newest first)")
    status.add_argument("--quality-table", help="where the evidence is [QUALITY_TABLE, the stack's QualityTableName]")
    start = actions.add_parser("start", help="start a shadow or canary rollout of a standby version")
    start.add_argument("city")
    start.add_argument("--version", help="the candidate (default: the newest standby version newer than live)")
    start.add_argument("--mode", choices=("shadow", "canary"), default="canary")
    start.add_argument("--weight", help="percent: canary's share of houses (default 10), shadow's scored share (100)")
    start.add_argument("--days", type=int, default=DEFAULT_ROLLOUT_MAX_DAYS, help="time limit (default %(default)s)")
    start.add_argument(
        "--guard",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a guard setting other than its default (rollout_stats.GuardPolicy: alpha, min_labels, ...)",
    )
    start.add_argument("--replace", action="store_true", help="end a running rollout as superseded first")
    weight = actions.add_parser("weight", help="change the running rollout's weight (percent)")
    weight.add_argument("city")
    weight.add_argument("percent")
    for name, text in (("promote", "make the candidate live now"), ("abort", "end the rollout; candidate to standby")):
        command = actions.add_parser(name, help=text)
        command.add_argument("city")
        command.add_argument("--reason", default="", help="recorded in the history and on the candidate")
    policy = actions.add_parser("policy", help="show, set or clear the city's override of ROLLOUT_POLICY")
    policy.add_argument("city")
    policy.add_argument("spec", nargs="?", help="off | shadow[:PCT] | canary:PCT, optionally ,days:N")
    policy.add_argument("--clear", action="store_true", help="remove the override (ROLLOUT_POLICY applies)")
    evaluate = actions.add_parser("evaluate", help="decide every running rollout once, as the scheduled decider does")
    evaluate.add_argument("--at", help="the decision time, ISO-8601 (default: now); a simulated clock for demos")
    evaluate.add_argument("--quality-table", help="where the evidence is [QUALITY_TABLE, the stack's QualityTableName]")
    return [rollout, *actions.choices.values()]


def weight_bp(percent: str, field_name: str = "weight") -> int:
    """A percentage with at most two decimals, as basis points (0..10000)."""
    try:
        value = Decimal(percent.strip().removesuffix("%")) * 100
    except InvalidOperation:
        value = Decimal(-1)
    if not (value.is_finite() and value == value.to_integral_value() and 0 <= value <= MAX_WEIGHT_BP):
        raise InvalidInput(
            [FieldProblem(field_name, "a percentage from 0 to 100 with at most two decimals")],
            message=f"Invalid weight: {percent!r}",
        )
    return int(value)


def guard_policy(settings: Sequence[str]) -> dict[str, Any]:
    """``NAME=VALUE`` settings over GuardPolicy's defaults, every field written down (the rollout keeps them)."""
    given: dict[str, Any] = {}
    for setting in settings:
        name, sep, raw = setting.partition("=")
        try:
            if not sep:
                raise ValueError("expected NAME=VALUE")
            given[name.strip()] = float(raw) if any(c in raw for c in ".eE") else int(raw)
        except ValueError as error:
            raise InvalidInput([FieldProblem("guard", f"{setting!r}: {error}")], "Invalid guard setting") from error
    try:
        return GuardPolicy.from_mapping(given).as_dict()
    except ValueError as error:
        raise InvalidInput([FieldProblem("guard", str(error))], "Invalid guard setting") from error


# --- commands ----------------------------------------------------------------------------------------------


def run(
    args: argparse.Namespace,
    registry: ModelRegistry,
    dynamodb: Any,
    quality_table: Callable[[], str],
    environ: Mapping[str, str],
) -> Report:
    command = args.rollout_command
    if command == "evaluate":
        return evaluate(registry, dynamodb, quality_table, args.at)
    if command == "status" and args.city is None:
        return status_all(registry)
    city = validate_city(args.city)
    if command == "status":
        return status_city(
            registry, city, args.history, lambda candidate: evidence(dynamodb, quality_table, city, candidate)
        )
    if command == "start":
        return start(registry, city, args.version, MODES[args.mode], args.weight, args.days, args.guard, args.replace)
    if command == "weight":
        live, rollout = running(registry, city)
        changed = registry.set_rollout_weight(
            city, rollout.candidate_version, weight_bp(args.percent), ACTOR, expected_revision=rollout.revision
        )
        return rollout_report(city, live.version, changed, "Weight changed")
    if command == "promote":
        live, rollout = running(registry, city)
        reason = args.reason or f"promoted by operator ({rollout.mode}, was {live.version})"
        promoted = registry.promote_rollout(city, rollout.candidate_version, ACTOR, reason, {})
        row = {
            "city": city,
            "version": promoted.version,
            "previous_version": live.version,
            "promoted_at": promoted.promoted_at,
        }
        return Report(row, [Section("Promoted", [row], ("city", "version", "previous_version", "promoted_at"))])
    if command == "abort":
        live, rollout = running(registry, city)
        registry.end_rollout(city, rollout.candidate_version, "aborted", ACTOR, args.reason or "no reason given", {})
        row = {
            "city": city,
            "candidate_version": rollout.candidate_version,
            "live_version": live.version,
            "outcome": "aborted",
        }
        return Report(row, [Section("Aborted", [row], ("city", "candidate_version", "live_version", "outcome"))])
    return policy(registry, city, args.spec, args.clear, environ)


DECISION_COLUMNS = ("city", "mode", "outcome", "candidate_version", "live_version", "reason")


def evaluate(registry: ModelRegistry, dynamodb: Any, quality_table: Callable[[], str], at: str | None) -> Report:
    """The decider's own pass (``rollouts.wiring.decider``): the same judge, writes and history as the schedule's."""
    from rollouts.wiring import decider

    try:
        when = datetime.fromisoformat(at) if at else datetime.now(UTC)
    except ValueError as error:
        raise InvalidInput(
            [FieldProblem("at", f"an ISO-8601 time, got {at!r}")], f"Invalid --at: {at!r} is not an ISO-8601 time"
        ) from error
    report = decider(dynamodb, registry.table_name, quality_table()).evaluate(when)
    rows = [decision.as_dict() for decision in report.decisions]
    title = f"Decisions at {report.at} ({len(rows)})" if rows else f"Decisions at {report.at}: no rollout runs"
    return Report({**report.as_dict(), "decisions": rows}, [Section(title, rows, DECISION_COLUMNS)])


def running(registry: ModelRegistry, city: str) -> tuple[LiveModel, Rollout]:
    live = registry.find_live(city)
    if live is None:
        raise UnknownCity(city)
    if live.rollout is None:
        raise NoRollout(city)
    return live, live.rollout


def rollout_row(city: str, live_version: str, rollout: Rollout) -> dict[str, Any]:
    return {
        "city": city,
        "live_version": live_version,
        **rollout.as_dict(),
        "weight_pct": float(Decimal(rollout.weight_bp) / 100),
    }


def rollout_report(city: str, live_version: str, rollout: Rollout, title: str) -> Report:
    row = rollout_row(city, live_version, rollout)
    return Report(row, [Section(title, [row], ROLLOUT_COLUMNS)])


def status_all(registry: ModelRegistry) -> Report:
    rows = [rollout_row(m.city, m.version, m.rollout) for m in registry.rollouts() if m.rollout is not None]
    return Report(rows, [Section("Rollouts in progress", rows, ROLLOUT_COLUMNS)])


def status_city(
    registry: ModelRegistry,
    city: str,
    history_limit: int,
    read_evidence: Callable[[str], tuple[dict[str, Any] | None, str]],
) -> Report:
    live = registry.find_live(city)
    if live is None:
        raise UnknownCity(city)
    history = [event.as_dict() for event in registry.rollout_history(city, history_limit)]
    override = registry.rollout_override(city)
    result: dict[str, Any] = {
        "city": city,
        "live_version": live.version,
        "rollout": None,
        "evidence": None,
        "override": override,
        "history": history,
    }
    report = Report(result)
    if live.rollout is None:
        report.lines.append(f"{city}: no rollout running; live version {live.version}")
    else:
        result["rollout"] = rollout_row(city, live.version, live.rollout)
        report.sections.append(Section(f"Rollout of {city}", [result["rollout"]], ROLLOUT_COLUMNS))
        found, unavailable = read_evidence(live.rollout.candidate_version)
        result["evidence"] = found
        if found is None:
            report.lines.append(f"Evidence: {unavailable}")
        else:
            report.sections.append(evidence_section(found))
    report.lines.append(f"Rollout policy override: {override or 'none (ROLLOUT_POLICY applies)'}")
    report.sections.append(Section(f"History of {city} (newest first)", history, HISTORY_COLUMNS))
    return report


def evidence(
    dynamodb: Any, quality_table: Callable[[], str], city: str, candidate: str
) -> tuple[dict[str, Any] | None, str]:
    """The rollout's evidence summary (``RolloutEvidence.summary``), or None and why it cannot be shown."""
    try:
        table = quality_table()
    except ConfigError as error:
        return None, f"not shown: {error}"
    key = {"city": {"S": city}, "version": {"S": evidence_version(candidate)}}
    try:
        item = dynamodb.get_item(TableName=table, Key=key, ConsistentRead=True).get("Item")
    except ClientError as error:
        if error_code(error) == "ResourceNotFoundException":
            return None, f"not shown: the quality table {table} does not exist"
        raise aws_error("dynamodb:GetItem", error) from error
    except BotoCoreError as error:
        raise aws_error("dynamodb:GetItem", error) from error
    if item is None:
        return None, f"none yet in {table} (no labelled or scored prediction of the candidate so far)"
    return RolloutEvidence.from_item(_plain(item)).summary(), ""


def evidence_section(summary: Mapping[str, Any]) -> Section:
    """The evidence summary as a table: one row per sample when it is grouped by sample, else one per figure."""
    if summary and all(isinstance(values, Mapping) for values in summary.values()):
        rows = [{"sample": name, **values} for name, values in summary.items()]
        columns = ["sample", *dict.fromkeys(column for values in summary.values() for column in values)]
        return Section("Evidence", rows, columns)
    return Section(
        "Evidence", [{"figure": name, "value": value} for name, value in summary.items()], ("figure", "value")
    )


def start(
    registry: ModelRegistry,
    city: str,
    version: str | None,
    mode: RolloutMode,
    weight: str | None,
    days: int,
    guards: Sequence[str],
    replace: bool,
) -> Report:
    live = registry.find_live(city)
    if live is None:
        raise UnknownCity(city)
    candidate = validate_version(version) if version else newest_standby(registry, city, live.version)
    if days < 1:
        raise InvalidInput([FieldProblem("days", "at least 1")], message=f"Invalid time limit: {days!r}")
    rollout = registry.start_rollout(
        city,
        candidate,
        mode,
        weight_bp(weight or DEFAULT_WEIGHT_PCT[mode]),
        guard_policy(guards),
        days * 86_400,
        ACTOR,
        reason=f"{mode} rollout started by operator",
        replace=replace,
    )
    return rollout_report(city, live.version, rollout, "Rollout started")


def newest_standby(registry: ModelRegistry, city: str, live_version: str) -> str:
    for version in registry.versions(city):  # newest first
        if version.version > live_version and version.status == "standby":
            return version.version
    raise NothingToRollOut(f"{city}: no standby version newer than the live {live_version}; pass --version")


def policy(registry: ModelRegistry, city: str, spec: str | None, clear: bool, environ: Mapping[str, str]) -> Report:
    if spec is not None and clear:
        raise InvalidInput([FieldProblem("spec", "give a policy or --clear, not both")], "Invalid rollout policy")
    if clear:
        registry.set_rollout_override(city, None)
    elif spec is not None:
        try:
            parsed = RolloutPolicy.parse(spec)
        except ValueError as error:
            raise InvalidInput([FieldProblem("spec", str(error))], "Invalid rollout policy") from error
        registry.set_rollout_override(city, str(parsed))
    row = {
        "city": city,
        "override": registry.rollout_override(city),
        # What this shell says model-sync runs with; the deployed function's own setting is the template's.
        "deployment": environ.get("ROLLOUT_POLICY"),
    }
    return Report(row, [Section("Rollout policy", [row], ("city", "override", "deployment"))])


def print_report(out: Console, report: Report) -> None:
    for section in report.sections:
        tables.print_rows(out, list(section.rows), section.columns, section.title)
    for text in report.lines:
        tables.line(out, text)


def _plain(item: Mapping[str, Any]) -> dict[str, Any]:
    """DynamoDB's typed JSON of the evidence item as plain values (its fields are numbers and strings)."""
    from boto3.dynamodb.types import TypeDeserializer

    deserializer = TypeDeserializer()
    plain: dict[str, Any] = {}
    for name, attribute in item.items():
        value = deserializer.deserialize(attribute)
        plain[name] = float(value) if isinstance(value, Decimal) else value
    return plain
