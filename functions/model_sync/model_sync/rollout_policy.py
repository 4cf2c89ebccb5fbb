"""model-sync's rollout policy: does a candidate that passed the quality gate go live, or enter a rollout?

``ROLLOUT_POLICY`` (template parameter ``RolloutPolicy``), overridable per city in the registry
(``ModelRegistry.rollout_override``, set with ``python -m ops rollout policy CITY SPEC``):

* ``off`` (default) — today's behaviour: the candidate goes live at once;
* ``shadow`` or ``shadow:<pct>`` — live keeps answering; ``pct`` % of its predictions (default 100) are also
  scored by the candidate, off the response path;
* ``canary:<pct>`` — the candidate answers ``pct`` % of the city's houses (a stable bucket per house).

Either rollout mode may end in ``,days:<n>``: the decider ends the rollout as ``timed_out`` after ``n`` days
without a decision (default ``ROLLOUT_MAX_DAYS``). Percentages take up to two decimals: the registry stores
basis points. The first version of a city has nothing to be compared with and goes live directly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from house_prices.registry import MAX_WEIGHT_BP, RolloutMode

PolicyMode = Literal["off", "shadow", "canary"]
_MODES: dict[str, PolicyMode] = {"off": "off", "shadow": "shadow", "canary": "canary"}
DEFAULT_ROLLOUT_POLICY = "off"
DEFAULT_ROLLOUT_MAX_DAYS = 14
_PERCENT = r"[0-9]{1,3}(\.[0-9]{1,2})?"
_SPEC = re.compile(
    rf"(?P<mode>off|shadow|canary)(:(?P<pct>{_PERCENT}))?(,days:(?P<days>[1-9][0-9]{{0,3}}))?",
)
# The template's AllowedPattern: the grammar (parse also refuses 0 % and more than 100 %);
# tests/unit/test_model_sync_rollout_policy.py keeps the two in step.
TEMPLATE_PATTERN = rf"^(off|(shadow(:{_PERCENT})?|canary:{_PERCENT})(,days:[1-9][0-9]{{0,3}})?)$"


@dataclass(frozen=True)
class RolloutPolicy:
    mode: PolicyMode
    weight_bp: int = 0  # canary: the candidate's share of houses; shadow: the share scored by the candidate
    days: int | None = None  # None: ROLLOUT_MAX_DAYS

    @classmethod
    def parse(cls, text: str) -> RolloutPolicy:
        match = _SPEC.fullmatch(text.strip())
        problem = "" if match else "not a policy"
        if match:
            mode, pct, days = _MODES[match["mode"]], match["pct"], match["days"]
            if mode == "off" and (pct or days):
                problem = "'off' takes no percentage or days"
            elif mode == "canary" and pct is None:
                problem = "canary needs the candidate's share: canary:<pct>"
            else:
                weight_bp = MAX_WEIGHT_BP if pct is None else int(Decimal(pct) * 100)
                if mode != "off" and not 0 < weight_bp <= MAX_WEIGHT_BP:
                    problem = "the percentage must be above 0 and at most 100"
                else:
                    return cls(mode, weight_bp if mode != "off" else 0, int(days) if days else None)
        raise ValueError(
            f"rollout policy {text!r}: {problem}; use 'off', 'shadow[:<pct>]' or 'canary:<pct>', "
            "optionally followed by ',days:<n>' (e.g. 'canary:10,days:7')"
        )

    @property
    def rollout_mode(self) -> RolloutMode | None:
        """The registry's rollout mode, or None for ``off`` (the candidate goes live at once)."""
        return None if self.mode == "off" else self.mode

    def duration_seconds(self, default_days: int) -> float:
        return float((self.days or default_days) * 86_400)

    def __str__(self) -> str:
        if self.mode == "off":
            return "off"
        pct = format((Decimal(self.weight_bp) / 100).normalize(), "f")
        share = "" if self.mode == "shadow" and self.weight_bp == MAX_WEIGHT_BP else f":{pct}"
        return f"{self.mode}{share}" + (f",days:{self.days}" if self.days else "")


ROLLOUT_OFF = RolloutPolicy("off")
