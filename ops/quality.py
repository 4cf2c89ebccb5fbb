"""``python -m ops quality``: the live quality per (city, version), worst first (docs/quality.md).

``--drift`` lists the drifting (city, version) pairs instead: those whose last drift report (saved by the
quality function from the captured predictions) flags a feature, largest PSI first.

Reads the quality table (one Scan: one small item per labelled (city, version), never the labels) and
ranks by live vs offline (the live median absolute error over the quality gate's), then by median APE.
The table is ``--quality-table``, else ``QUALITY_TABLE``, else the stack's ``QualityTableName`` output,
else the registry table's sibling (``…-RegistryTable`` → ``…-QualityTable``, as CloudFormation names both).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from house_prices import drift
from house_prices.errors import DependencyFailure
from house_prices.live_quality import EVIDENCE_PREFIX, VERSION, QualitySummary, summary_from_item
from ops.config import ConfigError, OpsConfig

COMMAND = "quality"
COLUMNS = ("city", "version", "count", "mae", "median_ape", "bias", "live_vs_offline", "offline_ae_p50")
DRIFT_COLUMNS = ("city", "version", "predictions", "features", "max_psi", "max_js")


def add_command(commands: Any) -> None:
    quality = commands.add_parser(COMMAND, help="live error per city and version from late labels, worst first")
    quality.add_argument("--quality-table", help="the quality table [QUALITY_TABLE, the stack's QualityTableName]")
    quality.add_argument("--top", type=int, default=20, help="rows to show (0: all)")
    quality.add_argument("--min-count", type=int, default=1, help="leave out versions with fewer labels")
    quality.add_argument(
        "--drift", action="store_true", help="list the drifting cities (input drift per version) instead"
    )


def table_name(
    args: argparse.Namespace, config: OpsConfig, environ: Mapping[str, str], outputs: Mapping[str, str] | None
) -> str:
    name = args.quality_table or environ.get("QUALITY_TABLE") or (outputs or {}).get("QualityTableName")
    if not name and config.registry_table and config.registry_table.endswith("-RegistryTable"):
        name = config.registry_table.removesuffix("-RegistryTable") + "-QualityTable"
    if not name:
        raise ConfigError("no quality table: pass --quality-table or --stack, set QUALITY_TABLE, or run `make up`")
    return name


def worst_first(summaries: Sequence[QualitySummary], min_count: int = 1, top: int = 0) -> list[QualitySummary]:
    """Versions with at least ``min_count`` labels, worst live-vs-offline first (unknown ratios last)."""
    kept = [s for s in summaries if s.count >= min_count]
    kept.sort(
        key=lambda s: (
            s.live_vs_offline is None,
            -(s.live_vs_offline or 0.0),
            -(s.median_ape or 0.0),
            s.city,
            s.version,
        )
    )
    return kept[:top] if top > 0 else kept


def read_items(dynamodb: Any, table: str) -> list[dict[str, Any]]:
    """Every (city, version) item of the quality table, as DynamoDB's typed JSON (one Scan).

    Rollouts' evidence items (version ``rollout#…``, house_prices.rollout_evidence) share the table and are
    left out by the Scan's filter: they are not versions (``ops rollout status`` shows them).
    """
    pages = dynamodb.get_paginator("scan").paginate(
        TableName=table,
        FilterExpression="NOT begins_with(#v, :evidence)",
        ExpressionAttributeNames={"#v": VERSION},
        ExpressionAttributeValues={":evidence": {"S": EVIDENCE_PREFIX}},
    )
    try:
        return [item for page in pages for item in page.get("Items", [])]
    except (BotoCoreError, ClientError) as error:
        raise DependencyFailure(f"DynamoDB Scan of {table} failed: {error}") from error


def read_all(dynamodb: Any, table: str) -> list[QualitySummary]:
    return [summary_from_item(item) for item in read_items(dynamodb, table)]


def drifting(items: Sequence[Mapping[str, Any]], top: int = 0) -> list[dict[str, Any]]:
    """The (city, version) pairs whose saved drift report is drifting, largest PSI first, with the drifting features."""
    found = []
    for item in items:
        report = drift.report_from_item(item)
        if report is None or not report["drifting"]:
            continue
        features = report.get("features") or {}
        flagged = sorted(name for name, figures in features.items() if figures.get("drifting"))
        found.append(
            {
                "city": str(item.get("city", {}).get("S", "")),
                "version": str(item.get("version", {}).get("S", "")),
                "predictions": report.get("count", 0),
                "features": ", ".join(flagged),
                "max_psi": max((float(f.get("psi", 0)) for f in features.values()), default=0.0),
                "max_js": max((float(f.get("js", 0)) for f in features.values()), default=0.0),
                "drift": features,
            }
        )
    found.sort(key=lambda row: (-row["max_psi"], -row["max_js"], row["city"], row["version"]))
    return found[:top] if top > 0 else found


def rows(summaries: Sequence[QualitySummary]) -> list[dict[str, Any]]:
    return [{"city": s.city, **s.as_dict()} for s in summaries]
