"""The models one worker process serves: load and unload through the shared registry, map lazily.

``load`` (``POST /models``) checks the url and the directory, claims the name in the registry (one load
per name across workers, memory reserved), runs the program's ``model_fn`` in the load pool under the
load timeout, measures the result and commits its charge, or records why not. The worker that loaded a
model keeps it; any other worker maps it on its first invocation (``find``), running ``model_fn`` in
its own process: a packed forest is memory-mapped, so those pages are shared, not copied.

A worker learns of unloads by catching up with the registry on every request and every
``SYNC_SECONDS`` in between, and drops its reference then. An invocation already holding the model
keeps its reference until it answers (the map stays valid even if the files go), so unloading never
breaks a request in flight. Everything here runs on the worker's event loop thread, like the registry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from container import model_dir
from container.errors import (
    Conflict,
    ContainerError,
    InsufficientMemory,
    ModelLoadFailed,
    ModelNotFound,
)
from container.programs import Programs, load_model
from container.registry import Entry, NotLoaded, OverBudget, Present, Registry
from container.sizing import ModelSize, measure
from endpoint.program import InferenceProgram

log = logging.getLogger("container.models")
# How often an idle worker catches up with the registry (to let go of unloaded models).
SYNC_SECONDS = 0.05
# Waiting on another caller's load: the first poll comes soon, later ones less often.
_FIRST_POLL_SECONDS = 0.001
_MAX_POLL_SECONDS = 0.05


@dataclass(eq=False, slots=True)
class Resident:
    """A model mapped in this worker, for one load (``seq``) of its name."""

    name: str
    seq: int
    program: InferenceProgram
    model: Any
    # Predict seconds per body byte, measured where it runs (container.invoke decides inline or pooled).
    cost: float | None = None


@dataclass(frozen=True)
class _Built:
    resident: Resident
    size: ModelSize
    seconds: float


class Models:
    def __init__(
        self,
        registry: Registry,
        programs: Programs,
        *,
        model_root: Path,
        max_model_dir_bytes: int,
        workers: int,
        load_pool: Executor,
        load_timeout_seconds: float,
        release: Callable[[], Any] = lambda: None,
    ) -> None:
        self.registry = registry
        self.programs = programs
        # Resolved once: every url is checked against the root's real path.
        self.model_root = Path(os.path.realpath(model_root))
        self.max_model_dir_bytes = max_model_dir_bytes
        self.workers = workers
        self.load_pool = load_pool
        self.load_timeout_seconds = load_timeout_seconds
        self._release = release
        self._residents: dict[str, Resident] = {}
        self._mapping: dict[int, asyncio.Future[Resident]] = {}

    # Loading and unloading (the management API) -----------------------------------------------------

    async def load(self, name: str, url: str) -> Entry:
        path = model_dir.resolve(url, self.model_root)
        found = model_dir.inspect(path, max_bytes=self.max_model_dir_bytes, program=self.programs.program_name)
        entry = await self._claim(name, url, found.file_bytes)
        try:
            built = await asyncio.wait_for(
                asyncio.get_running_loop().run_in_executor(self.load_pool, self._build, entry, found, True),
                self.load_timeout_seconds,
            )
        except BaseException as error:
            answer = _load_error(error, name, self.load_timeout_seconds)
            self.registry.fail(entry.seq, answer.status, answer.kind, answer.message)
            if isinstance(error, asyncio.CancelledError):
                raise
            raise answer from error
        charged = built.size.charged(self.workers)
        try:
            committed = self.registry.commit(entry.seq, charged)
        except OverBudget as error:
            raise InsufficientMemory(_over_budget(name, error)) from None
        except NotLoaded:
            raise ModelLoadFailed(f"the load of {name!r} was given up while it ran; try again") from None
        self._residents[name] = built.resident
        self._trim()
        log.info(
            "loaded %s in %.1f ms: %d bytes charged (%d shared, %d private, %s); %d of %d bytes in use",
            name,
            built.seconds * 1000,
            charged,
            built.size.shared,
            built.size.private,
            built.size.method,
            self.registry.charged_bytes,
            self.registry.budget_bytes,
        )
        return committed

    async def unload(self, name: str) -> Entry:
        self.catch_up()
        entry = self.registry.get(name)
        if entry is not None and entry.state == "loading":
            await self._outcome(entry)
        try:
            unloaded = self.registry.unload(name)
        except NotLoaded:
            raise ModelNotFound(f"Model not found: {name}") from None
        self.catch_up()
        log.info("unloaded %s; %d of %d bytes in use", name, self.registry.charged_bytes, self.registry.budget_bytes)
        return unloaded

    async def _claim(self, name: str, url: str, reservation: int) -> Entry:
        """One load per name: a load already running is waited for, then answered 409 (or its failure)."""
        while True:
            try:
                return self.registry.claim(name, url, reservation)
            except OverBudget as error:
                raise InsufficientMemory(_over_budget(name, error)) from None
            except Present as present:
                if present.entry.state == "loaded":
                    raise Conflict(f"Model {name} is already loaded.") from None
                outcome = await self._outcome(present.entry)
                if outcome is not None:
                    raise outcome from None
                if self.registry.loaded(name) is not None:
                    raise Conflict(f"Model {name} is already loaded.") from None
                # Loaded and unloaded again meanwhile: claim it afresh.

    async def _outcome(self, entry: Entry) -> ContainerError | None:
        """Wait for a running load to end: None if it loaded, else the error its caller got."""
        delay = _FIRST_POLL_SECONDS
        while True:
            await asyncio.sleep(delay)
            delay = min(delay * 2, _MAX_POLL_SECONDS)
            self.catch_up()
            current = self.registry.entry_of(entry.seq)
            if current is not None and current.state == "loaded":
                return None
            if current is None:
                failure = self.registry.failure(entry.seq)
                if failure is None:
                    return None
                return ContainerError(failure.message, status=failure.status, kind=failure.kind)
            self.registry.settle(current)

    # Serving (the invoke path) ------------------------------------------------------------------------

    def find(self, name: str) -> Resident | None:
        """The model if this worker has it mapped for its current load; raises 404 if it is not loaded."""
        self.catch_up()
        entry = self.registry.loaded(name)
        if entry is None:
            raise ModelNotFound(f"Model not found: {name}")
        resident = self._residents.get(name)
        return resident if resident is not None and resident.seq == entry.seq else None

    async def map(self, name: str) -> Resident:
        """Map a model another worker loaded (one ``model_fn`` per load in this worker, however many wait)."""
        entry = self.registry.loaded(name)
        if entry is None:
            raise ModelNotFound(f"Model not found: {name}")
        pending = self._mapping.get(entry.seq)
        if pending is None:
            pending = asyncio.ensure_future(self._map(entry))
            self._mapping[entry.seq] = pending
            pending.add_done_callback(lambda _: self._mapping.pop(entry.seq, None))
        return await asyncio.shield(pending)

    async def _map(self, entry: Entry) -> Resident:
        path = model_dir.resolve(entry.url, self.model_root)
        found = model_dir.inspect(path, max_bytes=self.max_model_dir_bytes, program=self.programs.program_name)
        try:
            built = await asyncio.wait_for(
                asyncio.get_running_loop().run_in_executor(self.load_pool, self._build, entry, found, False),
                self.load_timeout_seconds,
            )
        except Exception as error:
            raise _load_error(error, entry.name, self.load_timeout_seconds) from error
        self.catch_up()
        current = self.registry.loaded(entry.name)
        if current is None or current.seq != entry.seq:
            # Unloaded while it was being mapped: serve the requests waiting for it, keep nothing.
            return built.resident
        self._residents[entry.name] = built.resident
        self._trim()
        log.debug("mapped %s in %.1f ms", entry.name, built.seconds * 1000)
        return built.resident

    def _build(self, entry: Entry, found: model_dir.ModelDir, measured: bool) -> _Built:
        """In the load pool: the program, ``model_fn``, and (for a new load) the size."""
        started = time.perf_counter()
        program = self.programs.for_model(found.program)
        model = load_model(program, found.path)
        # A model that cannot be measured is charged its files' bytes (the claim's reservation).
        size = measure(model, fallback_bytes=entry.charged) if measured else ModelSize(0, 0, "not measured")
        resident = Resident(name=entry.name, seq=entry.seq, program=program, model=model)
        return _Built(resident, size, time.perf_counter() - started)

    # Keeping up with other workers --------------------------------------------------------------------

    def catch_up(self) -> None:
        """Read the registry's news and let go of models that were unloaded or reloaded elsewhere."""
        self.registry.sync()
        changed = self.registry.changes()
        if changed is None:
            self._drop(name for name, resident in list(self._residents.items()) if not self._current(resident))
        elif changed:
            self._drop(name for name in changed if name in self._residents and not self._current(self._residents[name]))

    async def keep_up(self) -> None:
        """Run for the worker's life: catch up every SYNC_SECONDS, so idle workers unmap unloaded models too."""
        while True:
            await asyncio.sleep(SYNC_SECONDS)
            try:
                self.catch_up()
            except Exception:
                log.exception("catching up with the registry failed")

    def _current(self, resident: Resident) -> bool:
        entry = self.registry.loaded(resident.name)
        return entry is not None and entry.seq == resident.seq

    def _drop(self, names: Iterable[str]) -> None:
        dropped = 0
        for name in list(names):
            dropped += self._residents.pop(name, None) is not None
        if dropped:
            # The pages of a mapped model go when its last reference does.
            self._trim()

    def _trim(self) -> None:
        """Return the heap that loads and unloads freed (``malloc_trim``, throttled) from a pool thread.

        ``model_fn`` allocates and frees temporaries in several pool threads (glibc gives each its
        arena): untrimmed, that slack came to ~30 KiB per mapped model in a worker.
        """
        # A RuntimeError: the pool is shut down, the worker is stopping.
        with contextlib.suppress(RuntimeError):
            self.load_pool.submit(self._release)


def _load_error(error: BaseException, name: str, timeout: float) -> ContainerError:
    if isinstance(error, ContainerError):
        return error
    if isinstance(error, TimeoutError):
        return ModelLoadFailed(f"model_fn for {name!r} did not finish within {timeout:g} s")
    if isinstance(error, asyncio.CancelledError):
        return ModelLoadFailed(f"the load of {name!r} was cancelled")
    if isinstance(error, MemoryError):
        return InsufficientMemory(f"model_fn for {name!r} ran out of memory")
    log.warning("model_fn failed for %s", name, exc_info=error)
    return ModelLoadFailed(f"model_fn failed for {name!r}: {_one_line(error)}")


def _over_budget(name: str, error: OverBudget) -> str:
    return (
        f"Cannot load {name}: it needs {error.needed} bytes and {error.used} of the {error.budget}-byte memory budget "
        "are in use; unload a model and try again."
    )


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 500 else text[:497] + "..."
