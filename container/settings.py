"""The container's settings: read once from the environment (and the command line), never elsewhere.

Names follow SageMaker where it has one (``SAGEMAKER_BIND_TO_PORT``, ``SAGEMAKER_MODEL_SERVER_WORKERS``,
``SAGEMAKER_PROGRAM``, ``SAGEMAKER_SUBMIT_DIRECTORY``, ``SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT``); the
rest are ``CONTAINER_*``. docs/container.md lists them all.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from container import limits
from house_prices.schema import MAX_ENDPOINT_BODY_BYTES

PACKAGE_ROOT = Path(__file__).resolve().parent.parent
# training/inference.py, in the repository and at the same place in the image (/opt/program/training).
DEFAULT_SUBMIT_DIRECTORY = PACKAGE_ROOT / "training"
DEFAULT_PROGRAM = "inference.py"
DEFAULT_PORT = 8080
# Where SageMaker puts each model of a multi-model endpoint: /opt/ml/models/{model_name}/model.
DEFAULT_MODEL_ROOT = Path("/opt/ml/models")
MIB = 1024**2
# InvokeEndpoint's payload limit (the service model's BodyBlob): the container never needs more.
MAX_BODY_BYTES = MAX_ENDPOINT_BODY_BYTES
# Memory the container's own processes need beside the models (measured in docs/container.md: PSS
# 29 MiB with one worker, 45 MiB for the supervisor and two workers, numpy and the HTTP stack imported),
# with room for request buffers, allocator slack and the registry (~0.5 KiB per model per worker).
HEADROOM_BASE_BYTES = 64 * MIB
HEADROOM_PER_WORKER_BYTES = 48 * MIB

TRUE = ("1", "true", "yes", "on")


@dataclass(frozen=True)
class MemoryBudget:
    """Bytes the loaded models may take in total, and how that number was reached (logged at startup)."""

    bytes: int
    source: str


@dataclass(frozen=True)
class ContainerSettings:
    memory_budget: MemoryBudget
    # All interfaces: SageMaker reaches the container from outside it.
    host: str = "0.0.0.0"
    port: int = DEFAULT_PORT
    workers: int = 1
    model_root: Path = DEFAULT_MODEL_ROOT
    # None: a private temporary directory made at startup and removed at exit.
    state_dir: Path | None = None
    program: str = DEFAULT_PROGRAM
    submit_directory: Path = DEFAULT_SUBMIT_DIRECTORY
    # Run code/<program> from a model directory. Off by default: a model file must not run code.
    allow_model_code: bool = False
    default_accept: str = "application/json"
    max_body_bytes: int = MAX_BODY_BYTES
    body_read_timeout_seconds: float = 10.0
    model_load_timeout_seconds: float = 120.0
    # A model directory whose regular files add up to more than this is refused (400) before any load.
    max_model_dir_bytes: int = 4 * 1024**3
    # Predictions that took less than this (per body size) run on the event loop; slower ones in a thread.
    inline_predict_seconds: float = 0.002
    load_threads: int = 4
    predict_threads: int = 2

    def __post_init__(self) -> None:
        for name in ("workers", "max_body_bytes", "max_model_dir_bytes", "load_threads", "predict_threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name.replace('_', ' ')} must be positive")
        for name in ("body_read_timeout_seconds", "model_load_timeout_seconds"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name.replace('_', ' ')} must be positive")
        if self.inline_predict_seconds < 0:
            raise ValueError("inline predict seconds must not be negative")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be 0-65535, got {self.port}")
        if self.memory_budget.bytes < 1:
            raise ValueError(f"the memory budget is {self.memory_budget.bytes} bytes ({self.memory_budget.source})")
        if not self.model_root.is_absolute():
            raise ValueError(f"model root must be an absolute path, got {self.model_root}")

    @property
    def program_path(self) -> Path:
        return Path(self.submit_directory) / self.program

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str],
        *,
        memory_limit: Callable[[], limits.Found | None] = limits.memory_limit,
        cpu_count: Callable[[], int] = limits.cpu_count,
        physical_memory: Callable[[], int] | None = None,
        **overrides: Any,
    ) -> ContainerSettings:
        """Settings from ``environ``; ``overrides`` (parsed CLI options) win when not None."""
        values: dict[str, Any] = {}
        # Each field's variables, first set wins, and how to convert the value.
        env_map: dict[str, tuple[tuple[str, ...], Callable[[str], Any]]] = {
            "host": (("CONTAINER_HOST",), str),
            "port": (("CONTAINER_PORT", "SAGEMAKER_BIND_TO_PORT"), int),
            "workers": (("CONTAINER_WORKERS", "SAGEMAKER_MODEL_SERVER_WORKERS"), int),
            "model_root": (("CONTAINER_MODEL_ROOT",), Path),
            "state_dir": (("CONTAINER_STATE_DIR",), Path),
            "program": (("SAGEMAKER_PROGRAM",), str),
            "submit_directory": (("SAGEMAKER_SUBMIT_DIRECTORY",), _local_directory),
            "allow_model_code": (("ALLOW_MODEL_CODE",), _boolean),
            "default_accept": (("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT",), str),
            "body_read_timeout_seconds": (("CONTAINER_BODY_READ_TIMEOUT_SECONDS",), float),
            "model_load_timeout_seconds": (("CONTAINER_MODEL_LOAD_TIMEOUT_SECONDS",), float),
            "max_model_dir_bytes": (("CONTAINER_MAX_MODEL_DIR_BYTES",), int),
            "inline_predict_seconds": (("CONTAINER_INLINE_PREDICT_SECONDS",), float),
        }
        for name, (variables, convert) in env_map.items():
            raw = _first(environ, variables)
            if raw is not None:
                values[name] = _converted(raw[0], raw[1], convert)
        values.update({name: value for name, value in overrides.items() if value is not None and name != "budget"})
        values.setdefault("workers", cpu_count())
        values["memory_budget"] = _memory_budget(
            environ,
            explicit=overrides.get("budget"),
            workers=int(values["workers"]),
            memory_limit=memory_limit,
            physical_memory=physical_memory or _physical_memory,
        )
        return cls(**values)


def _memory_budget(
    environ: Mapping[str, str],
    *,
    explicit: int | None,
    workers: int,
    memory_limit: Callable[[], limits.Found | None],
    physical_memory: Callable[[], int],
) -> MemoryBudget:
    """The models' budget: explicit, else the cgroup limit, else CONTAINER_MEMORY_BYTES, else RAM; less headroom."""
    if explicit is not None:
        return MemoryBudget(explicit, "--memory-budget-bytes")
    raw = environ.get("CONTAINER_MEMORY_BUDGET_BYTES")
    if raw:
        return MemoryBudget(_converted("CONTAINER_MEMORY_BUDGET_BYTES", raw, int), "CONTAINER_MEMORY_BUDGET_BYTES")
    raw_headroom = environ.get("CONTAINER_MEMORY_HEADROOM_BYTES")
    headroom = (
        _converted("CONTAINER_MEMORY_HEADROOM_BYTES", raw_headroom, int)
        if raw_headroom
        else HEADROOM_BASE_BYTES + HEADROOM_PER_WORKER_BYTES * workers
    )
    found = memory_limit()
    if found is not None:
        total, source = found.value, f"cgroup limit {found.value} bytes ({found.source})"
    elif environ.get("CONTAINER_MEMORY_BYTES"):
        total = _converted("CONTAINER_MEMORY_BYTES", environ["CONTAINER_MEMORY_BYTES"], int)
        source = f"CONTAINER_MEMORY_BYTES={total} (no cgroup limit)"
    else:
        total = physical_memory()
        source = f"physical memory {total} bytes (no cgroup limit, CONTAINER_MEMORY_BYTES unset)"
    return MemoryBudget(total - headroom, f"{source} less {headroom} bytes of headroom")


def _first(environ: Mapping[str, str], variables: tuple[str, ...]) -> tuple[str, str] | None:
    for variable in variables:
        raw = environ.get(variable)
        if raw:
            return variable, raw
    return None


def _converted(variable: str, raw: str, convert: Callable[[str], Any]) -> Any:
    try:
        return convert(raw)
    except ValueError as error:
        raise ValueError(f"{variable}={raw!r} is not valid: {error}") from error


def _local_directory(raw: str) -> Path:
    if "://" in raw:
        raise ValueError(
            "a URL: this container downloads nothing; bake the program into the image or ship it as code/ in the model"
        )
    return Path(raw)


def _boolean(raw: str) -> bool:
    value = raw.strip().lower()
    if value in TRUE:
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("expected true or false")


def _physical_memory() -> int:
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
