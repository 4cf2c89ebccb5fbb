"""``python -m ops plan``: instances and monthly cost of each serving option, before anything is deployed.

Arithmetic only, no AWS call. The inputs are data in ``ops/serving_figures.json``: the measured memory
per loaded model and CPU per request of each serving option (the managed scikit-learn image, the dense
container), SageMaker instance types and their on-demand prices per region, each with its source.

For each option and instance type::

    by memory = ceil(models / floor((instance memory - overhead) / memory per model))
    by CPU    = ceil(rps x CPU per request / (vCPUs x target utilisation))
    CPU per request = CPU of a one-row request + (rows per request - 1) x CPU per extra row
    instances = max(by memory, by CPU, minimum instances)

Models are whole, so memory counts how many fit on one instance; every model is assumed resident (a
multi-model endpoint that holds fewer reloads them, at the option's load time each).
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich import box
from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

COMMAND = "plan"
FIGURES_FILE = Path(__file__).with_name("serving_figures.json")
# Float noise must not buy an instance: 2.0000000000004 instances is 2.
_CEIL_DIGITS = 9


class PlanError(ValueError):
    """Bad input or a broken figures file; the message is one line that says which."""


@dataclass(frozen=True)
class Figure:
    value: float
    source: str
    date: str


@dataclass(frozen=True)
class ServingOption:
    key: str
    label: str
    template: str
    memory_per_model_mib: Figure
    cpu_ms_per_request: Figure
    cpu_ms_per_extra_row: Figure
    load_seconds: Figure

    def cpu_ms(self, rows_per_request: int) -> float:
        return self.cpu_ms_per_request.value + (rows_per_request - 1) * self.cpu_ms_per_extra_row.value


@dataclass(frozen=True)
class InstanceType:
    name: str
    vcpus: int
    memory_gib: float


@dataclass(frozen=True)
class Figures:
    options: tuple[ServingOption, ...]
    instance_types: tuple[InstanceType, ...]
    instance_overhead_mib: Figure
    hours_per_month: Figure
    target_utilisation: Figure
    min_instances: Figure
    # region -> instance type -> USD per instance-hour
    prices: Mapping[str, Mapping[str, float]]
    price_source: str
    price_date: str

    @classmethod
    def load(cls, path: Path = FIGURES_FILE) -> Figures:
        try:
            text = path.read_text()
        except OSError as error:
            raise PlanError(f"cannot read {path}: {error}") from error
        try:
            return cls.parse(json.loads(text))
        except PlanError:
            raise
        except (KeyError, TypeError, ValueError) as error:  # JSONDecodeError is a ValueError
            raise PlanError(f"{path} is malformed: {type(error).__name__}: {error}") from error

    @classmethod
    def parse(cls, document: Mapping[str, Any]) -> Figures:
        planning = document["planning"]
        types = document["instance_types"]["types"]
        prices = document["prices"]
        return cls(
            options=tuple(_option(item) for item in document["options"]),
            instance_types=tuple(
                InstanceType(name, int(spec["vcpus"]), float(spec["memory_gib"])) for name, spec in types.items()
            ),
            instance_overhead_mib=_figure(planning["instance_overhead_mib"]),
            hours_per_month=_figure(planning["hours_per_month"]),
            target_utilisation=_figure(planning["target_utilisation"]),
            min_instances=_figure(planning["min_instances"]),
            prices={
                region: {name: float(price) for name, price in by_type.items()}
                for region, by_type in prices["usd_per_hour"].items()
            },
            price_source=str(prices["source"]),
            price_date=str(prices["date"]),
        )


def _figure(raw: Mapping[str, Any]) -> Figure:
    value = float(raw["value"])
    if not math.isfinite(value) or value < 0:
        raise PlanError(f"figure {raw!r} must be a finite number >= 0")
    return Figure(value, str(raw["source"]), str(raw["date"]))


def _option(raw: Mapping[str, Any]) -> ServingOption:
    memory = _figure(raw["memory_per_model_mib"])
    if memory.value == 0:
        raise PlanError(f"option {raw['key']!r}: memory_per_model_mib must be > 0")
    return ServingOption(
        key=str(raw["key"]),
        label=str(raw["label"]),
        template=str(raw["template"]),
        memory_per_model_mib=memory,
        cpu_ms_per_request=_figure(raw["cpu_ms_per_request"]),
        cpu_ms_per_extra_row=_figure(raw["cpu_ms_per_extra_row"]),
        load_seconds=_figure(raw["load_seconds"]),
    )


@dataclass(frozen=True)
class Demand:
    """What the endpoint must carry. Validated here, so the CLI and any caller get the same messages."""

    models: int
    rps: float
    rows_per_request: int = 1
    region: str = "us-east-1"
    min_instances: int = 2
    target_utilisation: float = 0.5

    def check(self, figures: Figures) -> None:
        if self.models < 0:
            raise PlanError(f"--models must be >= 0, got {self.models}")
        if not math.isfinite(self.rps) or self.rps < 0:
            raise PlanError(f"--rps must be a finite number >= 0, got {self.rps}")
        if self.rows_per_request < 1:
            raise PlanError(f"--rows-per-request must be >= 1, got {self.rows_per_request}")
        if self.min_instances < 1:
            raise PlanError(f"--min-instances must be >= 1, got {self.min_instances}")
        if not (math.isfinite(self.target_utilisation) and 0 < self.target_utilisation <= 1):
            raise PlanError(f"--target-utilisation must be in (0, 1], got {self.target_utilisation}")
        if self.region not in figures.prices:
            known = ", ".join(sorted(figures.prices))
            # Short enough for one 80-column line after "error: " (the CLI's stderr wraps there).
            raise PlanError(f"no prices for region {self.region!r}; known: {known}")


@dataclass(frozen=True)
class Sizing:
    """One option on one instance type. ``None`` means "not possible": no model fits, or no price."""

    option: str
    instance_type: str
    vcpus: int
    memory_gib: float
    models_per_instance: int
    by_memory: int | None
    by_cpu: int
    instances: int | None
    limited_by: str | None
    usd_per_hour: float | None
    usd_per_month: float | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class OptionPlan:
    option: ServingOption
    cpu_ms_per_request: float
    sizings: tuple[Sizing, ...]
    cheapest: Sizing | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "option": self.option.key,
            "label": self.option.label,
            "template": self.option.template,
            "memory_per_model_mib": self.option.memory_per_model_mib.value,
            "cpu_ms_per_request": round(self.cpu_ms_per_request, 6),
            "load_seconds": self.option.load_seconds.value,
            "cheapest": None if self.cheapest is None else self.cheapest.as_dict(),
            "instance_types": [sizing.as_dict() for sizing in self.sizings],
            "sources": {
                name: {"value": figure.value, "source": figure.source, "date": figure.date}
                for name, figure in (
                    ("memory_per_model_mib", self.option.memory_per_model_mib),
                    ("cpu_ms_per_request", self.option.cpu_ms_per_request),
                    ("cpu_ms_per_extra_row", self.option.cpu_ms_per_extra_row),
                    ("load_seconds", self.option.load_seconds),
                )
            },
        }


@dataclass(frozen=True)
class Plan:
    demand: Demand
    figures: Figures
    options: tuple[OptionPlan, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "demand": asdict(self.demand),
            "assumptions": {
                "instance_overhead_mib": self.figures.instance_overhead_mib.value,
                "hours_per_month": self.figures.hours_per_month.value,
                "prices": {"source": self.figures.price_source, "date": self.figures.price_date},
            },
            "options": [option.as_dict() for option in self.options],
        }


def make_plan(demand: Demand, figures: Figures) -> Plan:
    demand.check(figures)
    prices = figures.prices[demand.region]
    plans = []
    for option in figures.options:
        sizings = tuple(
            size(option, instance, demand, figures, prices.get(instance.name)) for instance in figures.instance_types
        )
        plans.append(OptionPlan(option, option.cpu_ms(demand.rows_per_request), sizings, cheapest(sizings)))
    return Plan(demand, figures, tuple(plans))


def size(
    option: ServingOption, instance: InstanceType, demand: Demand, figures: Figures, usd_per_hour: float | None
) -> Sizing:
    """One option on one instance type (``usd_per_hour`` None: the region has no price for it)."""
    available_mib = instance.memory_gib * 1024 - figures.instance_overhead_mib.value
    fit = max(0, math.floor(round(available_mib / option.memory_per_model_mib.value, _CEIL_DIGITS)))
    by_memory: int | None
    if demand.models == 0:
        by_memory = 0
    elif fit == 0:
        by_memory = None  # not even one model fits
    else:
        by_memory = _ceil(demand.models / fit)
    cores = demand.rps * option.cpu_ms(demand.rows_per_request) / 1000
    by_cpu = _ceil(cores / (instance.vcpus * demand.target_utilisation))
    instances: int | None = None
    limited_by: str | None = None
    if by_memory is not None:
        instances = max(by_memory, by_cpu, demand.min_instances)
        if max(by_memory, by_cpu) <= demand.min_instances:
            limited_by = "minimum"
        elif by_memory >= by_cpu:
            limited_by = "memory"
        else:
            limited_by = "cpu"
    monthly = None
    if instances is not None and usd_per_hour is not None:
        monthly = round(instances * usd_per_hour * figures.hours_per_month.value, 2)
    return Sizing(
        option=option.key,
        instance_type=instance.name,
        vcpus=instance.vcpus,
        memory_gib=instance.memory_gib,
        models_per_instance=fit,
        by_memory=by_memory,
        by_cpu=by_cpu,
        instances=instances,
        limited_by=limited_by,
        usd_per_hour=usd_per_hour,
        usd_per_month=monthly,
    )


def cheapest(sizings: Sequence[Sizing]) -> Sizing | None:
    """Lowest monthly cost; on a tie, fewer instances (fewer things to fail), then the type's name."""
    priced = [s for s in sizings if s.usd_per_month is not None and s.instances is not None]
    if not priced:
        return None
    return min(priced, key=lambda s: (s.usd_per_month, s.instances, s.instance_type))


def _ceil(value: float) -> int:
    return math.ceil(round(value, _CEIL_DIGITS))


# --- the command ---------------------------------------------------------------------------------


def add_command(commands: Any) -> None:
    command = commands.add_parser(COMMAND, help="instances and monthly cost of each serving option (no AWS call)")
    command.add_argument("--models", type=int, required=True, help="models to keep loaded")
    command.add_argument("--rps", type=float, required=True, help="requests per second, all models together")
    command.add_argument("--rows-per-request", type=int, default=1, help="houses per request (default 1)")
    # SUPPRESS: a global --region given before `plan` must not be overridden by this one's default.
    command.add_argument("--region", default=argparse.SUPPRESS, help="price list region (default us-east-1)")
    command.add_argument(
        "--min-instances", type=int, help="floor of instances (default 2: more than one Availability Zone)"
    )
    command.add_argument("--target-utilisation", type=float, help="CPU share to plan for (default 0.5)")
    command.add_argument("--figures", type=Path, default=FIGURES_FILE, help="figures file (default %(default)s)")
    # Also after the command, as the other flags of `plan` are; SUPPRESS keeps a global --json.
    command.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON")


DEFAULT_PRICE_REGION = "us-east-1"


def run(args: argparse.Namespace) -> Plan:
    figures = Figures.load(args.figures)
    demand = Demand(
        models=args.models,
        rps=args.rps,
        rows_per_request=args.rows_per_request,
        region=getattr(args, "region", None) or DEFAULT_PRICE_REGION,
        min_instances=int(figures.min_instances.value) if args.min_instances is None else args.min_instances,
        target_utilisation=(
            figures.target_utilisation.value if args.target_utilisation is None else args.target_utilisation
        ),
    )
    return make_plan(demand, figures)


# No outer edges and shared padding: the widest table stays under 80 columns.
_COMPACT: dict[str, Any] = {"box": box.SIMPLE_HEAD, "show_edge": False, "collapse_padding": True}


def renderables(plan: Plan) -> list[RenderableType]:
    """A heading, every instance type per option, the cheapest per option, the assumptions.

    Sized for 80 columns, the width rich assumes when stdout is a pipe, so that no instance type or
    option is wrapped or cut; "none" marks what is not possible (no model fits, or no price).
    """
    demand = plan.demand
    rows = "row" if demand.rows_per_request == 1 else "rows"
    heading = Text(
        f"Serving plan: {demand.models:,} models, {demand.rps:,g} req/s, {demand.rows_per_request} {rows} per "
        f"request, {demand.region}, at least {demand.min_instances} instances, CPU target "
        f"{demand.target_utilisation:.0%}"
    )
    out: list[RenderableType] = [heading]
    for option in plan.options:
        figures = option.option
        table = Table(
            title=(
                f"{figures.key}: {figures.label}; {figures.memory_per_model_mib.value:g} MiB per model, "
                f"{option.cpu_ms_per_request:.3g} ms CPU per request"
            ),
            **_COMPACT,
        )
        for column in ("instance type", "vCPU", "GiB", "models\nper instance", "by\nmemory", "by\nCPU"):
            table.add_column(column, justify="left" if column == "instance type" else "right", no_wrap=True)
        table.add_column("instances", justify="right", no_wrap=True)
        table.add_column("$/month", justify="right", no_wrap=True)
        for s in option.sizings:
            table.add_row(
                s.instance_type,
                str(s.vcpus),
                f"{s.memory_gib:g}",
                f"{s.models_per_instance:,}",
                _count(s.by_memory),
                _count(s.by_cpu),
                _count(s.instances),
                _usd(s.usd_per_month),
            )
        out.append(table)
    summary = Table(title="Cheapest per option", **_COMPACT)
    for column in ("option", "instance type", "instances", "limited by", "$/month", "model load"):
        summary.add_column(column, justify="right" if column in {"instances", "$/month"} else "left", no_wrap=True)
    for option in plan.options:
        best = option.cheapest
        summary.add_row(
            option.option.key,
            best.instance_type if best else "none",
            _count(best.instances if best else None),
            (best.limited_by if best else None) or "none",
            _usd(best.usd_per_month if best else None),
            _seconds(option.option.load_seconds.value),
        )
    out.append(summary)
    out.append(
        Text(
            f"Prices: SageMaker real-time inference, on-demand, {demand.region}, recorded "
            f"{plan.figures.price_date}; {plan.figures.hours_per_month.value:g} h per month. Usable memory: "
            f"instance memory less {plan.figures.instance_overhead_mib.value:g} MiB. Every figure and its "
            f"source: ops/serving_figures.json."
        )
    )
    return out


def _count(value: int | None) -> str:
    return "none" if value is None else f"{value:,}"


def _usd(value: float | None) -> str:
    return "none" if value is None else f"{value:,.2f}"


def _seconds(value: float) -> str:
    return f"{value * 1000:g} ms" if value < 1 else f"{value:g} s"
