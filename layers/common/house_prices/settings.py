"""The one reader of the process environment: typed settings, every problem reported at once.

Each component (router, model-sync, ops) declares a frozen dataclass and fills it through an
``EnvReader``; ``EnvReader.check`` then raises one ``SettingsError`` naming every offending variable,
so an operator fixes a misconfigured function in one deployment, not one variable per cold start.
Standard library only: it ships in the Lambda layer and is imported by the operator CLI.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, MutableMapping
from typing import TypeVar

from house_prices.errors import FieldProblem

T = TypeVar("T")


class SettingsError(ValueError):
    """A component is misconfigured; ``problems`` names each offending variable."""

    def __init__(self, component: str, problems: list[FieldProblem]) -> None:
        super().__init__(f"Invalid {component} settings: " + "; ".join(_describe(p) for p in problems))
        self.component = component
        self.problems = problems


def process_environ() -> MutableMapping[str, str]:
    """The process environment: the only place that touches ``os.environ``."""
    return os.environ


class EnvReader:
    """Reads variables from ``environ`` and collects problems instead of stopping at the first."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = process_environ() if environ is None else environ
        self.problems: list[FieldProblem] = []

    def raw(self, name: str) -> str:
        """The stripped value; blank counts as unset."""
        return self._environ.get(name, "").strip()

    def optional(self, name: str, default: str | None = None) -> str | None:
        return self.raw(name) or default

    def required(self, name: str) -> str:
        value = self.raw(name)
        if not value:
            self.problems.append(FieldProblem(name, "is required"))
        return value

    def integer(self, name: str, default: int, minimum: int = 1) -> int:
        raw = self.raw(name)
        if not raw:
            return default
        try:
            value = int(raw)
        except ValueError:
            self.problems.append(FieldProblem(name, f"must be an integer, got {raw!r}"))
            return default
        if value < minimum:
            self.problems.append(FieldProblem(name, f"must be >= {minimum}, got {value}"))
        return value

    def parsed(self, name: str, parse: Callable[[str], T], default: str) -> T:
        """``parse(value or default)``; a ValueError it raises becomes this variable's problem.

        After a problem the default's value stands in, so reading goes on (``check`` raises anyway).
        """
        raw = self.raw(name)
        try:
            return parse(raw or default)
        except ValueError as error:
            if not raw:
                raise  # a default that does not parse is the component's bug, not the operator's
            self.problems.append(FieldProblem(name, str(error)))
            return parse(default)

    def check(self, component: str) -> None:
        if self.problems:
            raise SettingsError(component, list(self.problems))


def _describe(problem: FieldProblem) -> str:
    # A parser's own message may already start with the variable (``QUALITY_GATE='x' is not ...``).
    return problem.problem if problem.problem.startswith(problem.field) else f"{problem.field} {problem.problem}"
