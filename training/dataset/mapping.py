"""Which file column (or constant) feeds each schema feature and the price, resolved once per run.

Everything that can be decided from the header alone is decided here, before any row is read, so a
wrong column is reported in a second on a 1 GB file.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from house_prices import schema
from training.dataset.errors import DatasetError
from training.dataset.spec import DataSpec

_NUMBER = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
_CONVERSION = re.compile(rf"(?P<column>.+?)\s*(?P<operator>[*/])\s*(?P<number>{_NUMBER})")
_CONSTANT = re.compile(_NUMBER)
_FEATURES = {feature.name: feature for feature in schema.FEATURES}
_SHOWN_COLUMNS = 40


@dataclass(frozen=True)
class Expression:
    """A column, a column times or divided by a number, or a constant: what one feature is made of."""

    text: str
    column: str | None = None
    operator: str | None = None
    number: float | None = None

    @property
    def is_constant(self) -> bool:
        return self.column is None

    def apply(self, values: np.ndarray) -> np.ndarray:
        """The converted values; the operator is kept as written because x/43560 and x*(1/43560) differ in float."""
        if self.operator is None or self.number is None:
            return values
        with np.errstate(over="ignore", invalid="ignore"):
            return values * self.number if self.operator == "*" else values / self.number


@dataclass(frozen=True)
class ResolvedMapping:
    """The plan for reading a file: which columns, and what each schema column is computed from."""

    segment_column: str
    price: Expression
    features: Mapping[str, Expression]
    id_column: str | None

    @property
    def read_columns(self) -> list[str]:
        """Every file column the run needs, each once: the only ones ever converted (10,000-column files)."""
        wanted = [self.segment_column, self.price.column, *(e.column for e in self.features.values())]
        if self.id_column is not None:
            wanted.append(self.id_column)
        return list(dict.fromkeys(c for c in wanted if c is not None))

    @property
    def expressions(self) -> dict[str, str]:
        """Feature → expression text, in schema order, for the report."""
        return {name: self.features[name].text for name in schema.FEATURE_NAMES}


def describe_columns(columns: Sequence[str], file: str) -> str:
    """The file's columns for an error message, bounded so a 10,000-column header stays readable."""
    shown = ", ".join(repr(c) for c in columns[:_SHOWN_COLUMNS])
    more = f", … and {len(columns) - _SHOWN_COLUMNS:,} more" if len(columns) > _SHOWN_COLUMNS else ""
    return f"{file} has {len(columns):,} columns: {shown}{more}"


def _suggestion(name: str, columns: Sequence[str]) -> str:
    """Up to three columns the user may have meant: spelled alike, or containing the name ("zip" → "zipcode")."""
    lowered = {c.lower(): c for c in columns}
    wanted = name.strip().lower()
    close = difflib.get_close_matches(wanted, list(lowered), n=3, cutoff=0.75)
    close += [c for c in lowered if len(wanted) >= 2 and wanted in c and c not in close]
    return f" (did you mean {' or '.join(repr(lowered[c]) for c in close[:3])}?)" if close else ""


def _delimiter_hint(columns: Sequence[str]) -> str:
    """A one-column header holding ';' or tabs is a file in another dialect (European Excel, TSV)."""
    if len(columns) == 1:
        for delimiter, label in ((";", "';'"), ("\t", "tabs")):
            if delimiter in columns[0]:
                return f". The header looks separated by {label}: only comma-separated CSV is read"
    return ""


def looks_headerless(columns: Sequence[str]) -> bool:
    """A first line made only of numbers is data: the file has no header (the notebook's training CSV format)."""
    return bool(columns) and all(_CONSTANT.fullmatch(c.strip()) for c in columns)


def _parse(text: str, columns: Sequence[str], *, allow_constant: bool) -> Expression | None:
    """An expression over ``columns``; an exact column name always wins over the other readings."""
    names = set(columns)
    for candidate in dict.fromkeys((text, text.strip())):
        if candidate in names:
            return Expression(candidate, column=candidate)
    match = _CONVERSION.fullmatch(text.strip())
    if match and match["column"] in names:
        number = float(match["number"])
        if not math.isfinite(number) or number == 0:
            raise DatasetError(f"{text!r}: the conversion factor must be a finite, non-zero number")
        return Expression(
            f"{match['column']}{match['operator']}{match['number']}",
            column=match["column"],
            operator=match["operator"],
            number=number,
        )
    if allow_constant and _CONSTANT.fullmatch(text.strip()):
        return Expression(text.strip(), number=float(text.strip()))
    return None


def _constant_problem(feature: str, expression: Expression) -> str | None:
    problem = _FEATURES[feature].problem_with(expression.number)
    return None if problem is None else f"--column {feature}={expression.text}: the constant {problem}"


def _feature_key(key: str) -> str | None:
    upper = key.strip().upper()
    return upper if upper in _FEATURES else None


def resolve_mapping(spec: DataSpec, columns: Sequence[str], file: str) -> ResolvedMapping:
    """Resolve every feature, the price, the segment and id columns against ``columns``, or raise one error.

    All problems are collected and reported together, followed by the file's columns: one run of the
    CLI shows everything to fix.
    """
    if spec.segment_column not in columns and looks_headerless(columns):
        raise DatasetError(
            f"{file}: the first line ({', '.join(columns[:8])}{', …' if len(columns) > 8 else ''}) is data, not a "
            "header. The file needs a header row naming its columns (a headerless PRICE-first training CSV "
            "cannot be mapped)."
        )
    problems: list[str] = []
    names = set(columns)

    def require(flag: str, name: str | None) -> None:
        if name is not None and name not in names:
            problems.append(f"{flag} {name!r} is not a column of {file}{_suggestion(name, columns)}")

    require("--segment-column", spec.segment_column)
    require("--id-column", spec.id_column)
    price_feature = _feature_key(spec.price_column)
    price: Expression | None = None
    if price_feature is not None:
        problems.append(
            f"--price-column {spec.price_column!r} is also the feature {price_feature}: the model would learn "
            f"{price_feature} as the price. Name the file's price column with --price-column and map features with "
            "--column FEATURE=COL"
        )
    else:
        price = _parse(spec.price_column, columns, allow_constant=False)
        if price is None:
            problems.append(
                f"--price-column {spec.price_column!r} is not a column of {file}"
                f"{_suggestion(spec.price_column, columns)}"
            )
    if spec.segment_column == spec.price_column:
        problems.append(f"--segment-column and --price-column are the same column {spec.segment_column!r}")
    if spec.id_column is not None and spec.id_column == spec.segment_column:
        problems.append(
            f"--id-column and --segment-column are the same column {spec.id_column!r}: "
            "every row of a segment would land in one split"
        )

    explicit: dict[str, str] = {}
    for key, text in spec.columns.items():
        feature = _feature_key(key)
        if feature is None:
            problems.append(f"--column {key}={text}: {key!r} is not a feature; features: {', '.join(_FEATURES)}")
        elif feature in explicit:
            problems.append(f"--column maps {feature} twice ({explicit[feature]!r} and {text!r})")
        else:
            explicit[feature] = text

    features: dict[str, Expression] = {}
    unmapped: list[str] = []
    for feature in schema.FEATURE_NAMES:
        if feature in explicit:
            expression = _parse(explicit[feature], columns, allow_constant=True)
            if expression is None:
                problems.append(
                    f"--column {feature}={explicit[feature]}: {explicit[feature]!r} is not a column of {file}"
                    f"{_suggestion(explicit[feature], columns)}; give COL, COL*NUMBER, COL/NUMBER or a constant"
                )
                continue
            if expression.is_constant:
                problem = _constant_problem(feature, expression)
                if problem:
                    problems.append(problem)
                    continue
            features[feature] = expression
            continue
        same = [c for c in columns if c.strip().upper() == feature]
        if len(same) == 1:
            features[feature] = Expression(same[0], column=same[0])
        elif len(same) > 1:
            problems.append(
                f"feature {feature} matches several columns ({', '.join(repr(c) for c in same)}); "
                f"choose one with --column {feature}=COL"
            )
        else:
            unmapped.append(f"{feature}{_suggestion(feature, columns)}")
    if unmapped:
        problems.append(
            f"feature(s) not mapped, no column has their name (in any case): {', '.join(unmapped)}; map each with "
            "--column FEATURE=COL, COL*NUMBER or COL/NUMBER (or FEATURE=0 for a constant)"
        )

    if price is not None and price.column is not None:
        for feature, expression in features.items():
            if expression.column == price.column:
                problems.append(
                    f"the price column {price.column!r} is mapped as the feature {feature} "
                    f"(--column {feature}={expression.text}): a feature must not be the price"
                )
    if problems:
        raise DatasetError("; ".join(problems) + f". {describe_columns(columns, file)}{_delimiter_hint(columns)}")
    assert price is not None
    return ResolvedMapping(segment_column=spec.segment_column, price=price, features=features, id_column=spec.id_column)
