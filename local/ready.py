"""Ready files: what each local-stack child publishes once it serves, one dataclass per shape.

A child writes its shape with :func:`write`; ``local.stack`` reads it back with :func:`parse`, the one
place a ready file's JSON becomes a typed value (a missing or unknown field is named, not a KeyError).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from local.process import write_ready_file


@dataclass(frozen=True)
class EventQueue:
    """The queue that carries one function's S3 events (Lambda's async event queue), and where failures go.

    ``on_failure_url`` is the function's ``EventInvokeConfig`` OnFailure queue ("" if it has none).
    """

    function_id: str
    queue_url: str
    queue_arn: str
    on_failure_url: str
    max_attempts: int


@dataclass(frozen=True)
class MotoReady:
    """``local.moto_services``: moto serves, the template's resources exist, the journal (if any) is replayed."""

    # Fields holding a sequence of another ready shape, parsed element by element.
    nested: ClassVar[Mapping[str, type]] = {"queues": EventQueue}

    endpoint_url: str
    queues: tuple[EventQueue, ...]
    # What replaying the journal did (local.journal's report); None without a journal.
    replayed: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class DispatcherReady:
    """``local.dispatcher``: the function is loaded and the queue is about to be polled."""

    function: str
    queue_url: str


@dataclass(frozen=True)
class HttpApiReady:
    """``local.http_api``: the HTTP API answers on ``url`` (its first sandbox has started)."""

    port: int
    url: str
    pid: int
    sandboxes: int


@dataclass(frozen=True)
class LogDeliveryReady:
    """``local.log_delivery``: the function's log file is being tailed for its subscription filters."""

    function: str
    deliveries: int


@dataclass(frozen=True)
class SchedulerReady:
    """``local.scheduler``: the function is loaded, its schedules run, on-demand ticks are taken at ``url``."""

    function: str
    url: str
    schedules: Mapping[str, str]  # Schedule event name -> its expression


Shape = TypeVar("Shape", EventQueue, MotoReady, DispatcherReady, HttpApiReady, LogDeliveryReady, SchedulerReady)


def write(path: Path, facts: MotoReady | DispatcherReady | HttpApiReady | LogDeliveryReady | SchedulerReady) -> None:
    """Publish ``facts`` atomically; a field that is None is left out."""
    write_ready_file(path, {name: value for name, value in asdict(facts).items() if value is not None})


def parse(shape: type[Shape], data: Mapping[str, Any]) -> Shape:
    """``data`` (a ready file's JSON) as ``shape``; ValueError naming every missing or unknown field."""
    names = {field.name for field in fields(shape)}
    required = {field.name for field in fields(shape) if field.default is MISSING and field.default_factory is MISSING}
    missing, unknown = sorted(required - data.keys()), sorted(data.keys() - names)
    if missing or unknown:
        raise ValueError(f"{shape.__name__} ready file: missing fields {missing}, unknown fields {unknown}")
    nested: Mapping[str, Any] = getattr(shape, "nested", {})
    values: dict[str, Any] = {
        name: tuple(parse(nested[name], item) for item in value) if name in nested else value
        for name, value in data.items()
    }
    return shape(**values)
