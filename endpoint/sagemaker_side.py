"""Dense serving: the SageMaker side of a multi-model endpoint, in front of the model container.

What SageMaker itself does for a custom multi-model container, and nothing more (no model logic: the
container runs ``model_fn`` and the hooks):

* **InvokeEndpoint** (:class:`InvokeContainer`): the same wire protocol, validation and errors as the
  managed mode; the request is forwarded to ``POST /models/{model_name}/invoke`` with ``Content-Type``,
  ``Accept``, ``X-Amzn-SageMaker-Target-Model``, ``-Custom-Attributes`` and ``-Inference-Id``. A 2xx
  answer goes back with the container's content type (and custom attributes, if it set any); any other
  status is a ``ModelError`` whose ``OriginalStatusCode``/``OriginalMessage`` are the container's status
  and body; no answer within 60 s is SageMaker's timeout ``ModelError`` (``OriginalStatusCode`` 0).
* **Models** (:class:`ContainerModels`): a TargetModel's first invocation downloads it from S3 and
  extracts it safely into the container's model directory (``endpoint.download``'s cache, laid out as
  ``ROOT/{model_name}/model``; ``model_name`` = the first 32 hex digits of sha256(TargetModel), opaque to
  the container), then calls LoadModel, ``POST /models {"model_name", "url"}``: 200 or 409 (already
  loaded) is success; **507** (the container's memory is full) unloads the least recently used model no
  request is using and tries again. Concurrent first requests share one download and one LoadModel. A
  model's directory stays pinned in the disk cache (never evicted) for as long as the container has it
  loaded. UnloadModel is ``DELETE /models/{model_name}`` (404: already gone).
* **A 404 from invoke** (the container restarted, or lost the model) loads it again and retries once;
  so does a container that could not be reached, once it is back (:mod:`endpoint.instance` restarts it).
* **ModelCacheSetting=Disabled**: load, invoke, unload (concurrent requests for one model share the load;
  the last one out unloads).
* **Instance memory**: the PSS of the container's process tree is sampled every second
  (``ContainerMemoryBytes``; ``MemoryUtilization`` is its share of the instance's memory, SageMaker's
  metric; ``LoadedModelBytes`` what it grew by since the container started); above the instance's memory,
  least recently used models are unloaded, as SageMaker does when an instance runs out of memory. The
  container's own budget (507) normally acts first.

Everything here runs on the event loop thread; downloads, unpinning and memory sampling run in a thread
pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import Gauge

from endpoint import protocol
from endpoint.config import EndpointConfig
from endpoint.container_client import Answer, ContainerClient, ContainerTimeout, ContainerUnreachable
from endpoint.download import ArtifactCache
from endpoint.errors import ContainerError, ContainerUnavailable, LoadTimeout, ModelNotReady, ServiceUnavailable
from endpoint.instance import ContainerProcess
from endpoint.invocations import InvocationsApp, read_body, send_answer, validate_headers
from endpoint.metrics import EndpointMetrics
from endpoint.store import Background, SharedLoad

log = logging.getLogger("endpoint.sagemaker_side")

Scope = dict[str, Any]
Receive = Any
Send = Any

# What SageMaker answers when the container has not answered an invocation within 60 s.
INVOCATION_TIMEOUT_MESSAGE = (
    "Your invocation timed out while waiting for a response from container primary. Review the latency "
    "metrics for each container in Amazon CloudWatch, resolve the issue, and try again."
)
# How long an invocation waits for a restarted container before answering ServiceUnavailable.
RESTART_WAIT_SECONDS = 15.0
UNLOAD_TIMEOUT_SECONDS = 30.0
MEMORY_SAMPLE_SECONDS = 1.0

_TARGET_MODEL = protocol.TARGET_MODEL_HEADER.lower().encode()
_CUSTOM_ATTRIBUTES = protocol.CUSTOM_ATTRIBUTES_HEADER.lower().encode()
_INFERENCE_ID = protocol.INFERENCE_ID_HEADER.lower().encode()
# The request headers SageMaker passes on to the container's invoke route.
_FORWARDED = frozenset({b"content-type", b"accept", _TARGET_MODEL, _CUSTOM_ATTRIBUTES, _INFERENCE_ID})
_JSON = [(b"content-type", b"application/json")]


def model_name(target_model: str) -> str:
    """The container's ``model_name`` for a TargetModel: opaque, path-safe, and the disk cache's directory name."""
    return hashlib.sha256(target_model.encode("utf-8")).hexdigest()[:32]


@dataclass(eq=False, slots=True)
class Hosted:
    """A TargetModel the container has loaded (as far as this side knows), and the requests using it."""

    target: str
    name: str
    # The pinned cache directory; the container's url is ``directory / "model"``.
    directory: Path
    # The container's start it was loaded into (a restart forgets every model).
    generation: int
    leases: int = 0


class ContainerModels:
    """Which models the container holds, in LRU order; LoadModel/UnloadModel calls; leases of requests."""

    def __init__(
        self,
        artifacts: ArtifactCache,
        client: ContainerClient,
        instance: ContainerProcess,
        metrics: EndpointMetrics,
        executor: Executor,
        *,
        caching: bool,
        wait_seconds: float,
        load_timeout_seconds: float,
        instance_memory_bytes: int,
    ) -> None:
        self._artifacts = artifacts
        self._client = client
        self._instance = instance
        self._metrics = metrics
        self._executor = executor
        self._caching = caching
        self._wait_seconds = wait_seconds
        self._load_timeout = load_timeout_seconds
        self.instance_memory_bytes = instance_memory_bytes
        self._hosted: OrderedDict[str, Hosted] = OrderedDict()
        self._pending: dict[str, SharedLoad[Hosted]] = {}
        self._unloading: dict[str, asyncio.Future[None]] = {}
        # Futures resolved whenever a lease is released or a load ends: a LoadModel refused for memory waits on them.
        self._changes: list[asyncio.Future[None]] = []
        # Loads waiting in _make_room for such a change (they cannot make room for each other).
        self._waiting_for_room = 0
        self._background = Background()
        self._closed = False
        self.memory_pss = 0
        registry = metrics.registry
        self._memory_gauge = Gauge(
            "ContainerMemoryBytes",
            "PSS of the model container's process tree (supervisor and workers).",
            registry=registry,
        )
        self._utilisation_gauge = Gauge(
            "MemoryUtilization", "The container's PSS as a percentage of the instance's memory.", registry=registry
        )

    # -- introspection (tests, /metrics) ------------------------------------------------------------
    @property
    def loaded_targets(self) -> list[str]:
        """TargetModels the container holds, least recently used first."""
        return list(self._hosted)

    def hosted(self, target: str) -> Hosted | None:
        return self._hosted.get(target)

    # -- acquiring ----------------------------------------------------------------------------------
    def try_acquire(self, target: str) -> Hosted | None:
        """A lease on ``target`` if the container holds it: no await on the hot path."""
        hosted = self._hosted.get(target)
        if hosted is None or hosted.generation != self._instance.generation:
            return None
        hosted.leases += 1
        self._hosted.move_to_end(target)
        self._metrics.cache_hits += 1
        return hosted

    async def acquire(self, target: str) -> Hosted:
        if self._closed:
            raise ServiceUnavailable("The endpoint is shutting down.")
        hosted = self.try_acquire(target)
        if hosted is not None:
            return hosted
        started = time.perf_counter()
        self._metrics.cache_misses += 1
        pending = self._pending.get(target)
        if pending is None:
            pending = self._start_load(target)
        hosted = await pending.wait(
            self._wait_seconds,
            self.release,
            lambda: ModelNotReady(
                f"Model {target} is still being downloaded or loaded after {self._wait_seconds:g} s; retry later."
            ),
        )
        self._metrics.model_loading_wait_time.observe(time.perf_counter() - started)
        return hosted

    def release(self, hosted: Hosted) -> None:
        hosted.leases -= 1
        if hosted.leases:
            return
        self._changed()
        if not self._caching and self._hosted.get(hosted.target) is hosted:
            self._background.track(asyncio.ensure_future(self._unload(hosted)))

    def _changed(self) -> None:
        changes, self._changes = self._changes, []
        for waiter in changes:
            if not waiter.done():
                waiter.set_result(None)

    def forget(self, hosted: Hosted) -> None:
        """The container no longer has ``hosted`` (it answered 404, or restarted): stop counting it as loaded."""
        if self._hosted.get(hosted.target) is hosted:
            del self._hosted[hosted.target]
            self._unpin(hosted)
            self._update_gauges()

    def container_restarted(self) -> None:
        """Every model is gone with the old container; requests using one reload it when they get a 404."""
        forgotten = self._forget_all()
        if forgotten:
            log.warning("the model container restarted: %d models must be loaded again", forgotten)

    def _forget_all(self) -> int:
        forgotten, self._hosted = list(self._hosted.values()), OrderedDict()
        for hosted in forgotten:
            self._unpin(hosted)
        self._update_gauges()
        return len(forgotten)

    # -- loading ------------------------------------------------------------------------------------
    def _start_load(self, target: str) -> SharedLoad[Hosted]:
        pending: SharedLoad[Hosted] = SharedLoad(future=asyncio.get_running_loop().create_future())
        self._pending[target] = pending
        self._background.track(asyncio.ensure_future(self._run_load(target, pending)))
        return pending

    async def _run_load(self, target: str, pending: SharedLoad[Hosted]) -> None:
        loop = asyncio.get_running_loop()
        try:
            unloading = self._unloading.get(target)
            if unloading is not None:  # the container must have let go of it before it is loaded again
                await asyncio.shield(unloading)
            fetched = await loop.run_in_executor(self._executor, self._artifacts.fetch, target)
            if fetched.downloaded:
                self._metrics.model_downloads.inc()
                self._metrics.model_downloading_time.observe(fetched.seconds)
            name = model_name(target)
            try:
                started = time.perf_counter()
                generation = await self._load(target, name, fetched.model_dir / "model")
                self._metrics.model_loads.inc()
                self._metrics.model_loading_time.observe(time.perf_counter() - started)
            except BaseException:
                await loop.run_in_executor(self._executor, self._artifacts.unpin, fetched.model_dir)
                raise
        except BaseException as error:
            del self._pending[target]
            self._changed()
            pending.fail(error)
            self._metrics.model_load_failures.inc()
            if not isinstance(error, Exception):
                raise
            return
        # From here to set_result nothing awaits: the hand-over to the waiters is atomic.
        del self._pending[target]
        stale = self._hosted.pop(target, None)
        if stale is not None:
            self._unpin(stale)
        hosted = Hosted(target, name, fetched.model_dir, generation, leases=pending.waiters)
        self._hosted[target] = hosted
        self._update_gauges()
        self._changed()
        pending.future.set_result(hosted)
        if not pending.waiters and not self._caching:  # every waiter gave up: nobody will release it
            self._background.track(asyncio.ensure_future(self._unload(hosted)))

    async def _load(self, target: str, name: str, url: Path) -> int:
        """LoadModel until the container has it: 507 makes room (LRU) and tries again; other errors raise.

        Returns the container's generation that loaded it.
        """
        body = json.dumps({"model_name": name, "url": str(url)}).encode()
        deadline = time.monotonic() + self._load_timeout
        reconnected = False
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LoadTimeout(f"Model {target} did not finish loading within {self._load_timeout:g} s.")
            generation = self._instance.generation
            try:
                answer = await self._client.request("POST", "/models", headers=_JSON, body=body, timeout=remaining)
            except ContainerTimeout:
                raise LoadTimeout(f"Model {target} did not finish loading within {self._load_timeout:g} s.") from None
            except ContainerUnreachable as error:
                if reconnected or not await self._instance.wait_serving(min(remaining, RESTART_WAIT_SECONDS)):
                    raise ContainerUnavailable(str(error)) from None
                reconnected = True
                continue
            if answer.status in (200, 409):
                return generation
            if answer.status == 507 and await self._make_room(target, deadline):
                continue
            raise ContainerError(answer.text(), answer.status)

    async def _make_room(self, target: str, deadline: float) -> bool:
        """Unload the least recently used model no request is using; False when nothing could ever make room.

        If every loaded model is in use, or other loads are still on their way into the container (they become
        unloadable once loaded), wait for a release or a load to end. Loads that are all waiting here cannot
        make room for each other: then (with nothing in use) the model does not fit.
        """
        victim = next((h for h in self._hosted.values() if not h.leases and h.target != target), None)
        if victim is not None:
            log.debug("the container is full: unloading %s to load %s", victim.target, target)
            await self._unload(victim)
            return True
        in_use = any(h.leases for h in self._hosted.values())
        loading = len(self._pending) - 1 - self._waiting_for_room
        if not in_use and loading <= 0:
            return False
        waiter = asyncio.get_running_loop().create_future()
        self._changes.append(waiter)
        self._waiting_for_room += 1
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    await waiter
        finally:
            self._waiting_for_room -= 1
        return waiter.done()

    # -- unloading ----------------------------------------------------------------------------------
    async def _unload(self, hosted: Hosted) -> None:
        """UnloadModel; the directory is unpinned once the container has let go of it."""
        if self._hosted.get(hosted.target) is not hosted or hosted.leases:
            return  # gone already, or a request took it meanwhile (a Disabled model asked for again)
        del self._hosted[hosted.target]
        self._update_gauges()
        done = asyncio.get_running_loop().create_future()
        self._unloading[hosted.target] = done
        started = time.perf_counter()
        released = True
        try:
            answer = await self._client.request("DELETE", f"/models/{hosted.name}", timeout=UNLOAD_TIMEOUT_SECONDS)
            if answer.status not in (200, 404):
                released = False  # still loaded in the container: its files must stay
                log.error("UnloadModel %s failed (%d): %s", hosted.target, answer.status, answer.text()[:200])
        except ContainerUnreachable:
            pass  # the container is gone, and its models with it
        except ContainerTimeout:
            released = False
            log.error("UnloadModel %s: no answer within %g s", hosted.target, UNLOAD_TIMEOUT_SECONDS)
        finally:
            del self._unloading[hosted.target]
            done.set_result(None)
        if released:
            self._unpin(hosted)
            self._metrics.model_unloads.inc()
            self._metrics.model_unloading_time.observe(time.perf_counter() - started)

    def _unpin(self, hosted: Hosted) -> None:
        self._background.track(
            asyncio.get_running_loop().run_in_executor(self._executor, self._artifacts.unpin, hosted.directory)
        )

    # -- instance memory ----------------------------------------------------------------------------
    async def watch_memory(self, interval: float = MEMORY_SAMPLE_SECONDS) -> None:
        """Sample the container's PSS; above the instance's memory, unload least recently used models."""
        loop = asyncio.get_running_loop()
        while not self._closed:
            await asyncio.sleep(interval)
            if not self._instance.serving:
                continue
            pss = await loop.run_in_executor(self._executor, self._instance.pss_bytes)
            self.memory_pss = pss
            self._memory_gauge.set(pss)
            self._utilisation_gauge.set(100.0 * pss / self.instance_memory_bytes)
            self._metrics.loaded_model_bytes.set(max(0, pss - self._instance.boot_pss))
            if pss > self.instance_memory_bytes:
                await self._shed(pss)

    async def _shed(self, pss: int) -> None:
        idle = [hosted for hosted in self._hosted.values() if not hosted.leases]
        if not idle:
            return
        per_model = max(1.0, (pss - self._instance.boot_pss) / max(1, len(self._hosted)))
        count = min(len(idle), math.ceil((pss - self.instance_memory_bytes) / per_model))
        log.warning(
            "the container's PSS %d is over the instance's memory %d: unloading %d models",
            pss,
            self.instance_memory_bytes,
            count,
        )
        await asyncio.gather(*(self._unload(hosted) for hosted in idle[:count]))

    # -- housekeeping -------------------------------------------------------------------------------
    def _update_gauges(self) -> None:
        self._metrics.loaded_model_count.set(len(self._hosted))

    async def drain(self) -> None:
        """Wait for in-flight loads, unloads and unpins (tests, shutdown)."""
        await self._background.drain()

    async def close(self) -> None:
        """Stop loading; unpin every directory (the container stops with the endpoint)."""
        self._closed = True
        await self.drain()
        self._forget_all()
        await self.drain()


class InvokeContainer(InvocationsApp):
    """InvokeEndpoint in dense serving, a plain ASGI app: validate, find or load the model, forward, answer."""

    def __init__(
        self,
        config: EndpointConfig,
        models: ContainerModels,
        client: ContainerClient,
        instance: ContainerProcess,
        metrics: EndpointMetrics,
    ) -> None:
        super().__init__(config, metrics)
        self.models = models
        self.client = client
        self.instance = instance

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        config = self.config
        request_id, state = self.begin(scope)
        target = custom_attributes = inference_id = declared = None
        forwarded: list[tuple[bytes, bytes]] = []
        for name, value in scope["headers"]:
            if name in _FORWARDED:
                forwarded.append((name, value))
                if name == _TARGET_MODEL:
                    target = value.decode("latin-1")
                elif name == _CUSTOM_ATTRIBUTES:
                    custom_attributes = value.decode("latin-1")
                elif name == _INFERENCE_ID:
                    inference_id = value.decode("latin-1")
            elif name == b"content-length":
                declared = value
        target = validate_headers(state, target, custom_attributes, inference_id)
        body = await read_body(receive, declared, config.max_body_bytes, config.body_read_timeout_seconds)
        if self.shutting_down:
            raise ServiceUnavailable("The endpoint is shutting down.")
        models = self.models
        hosted: Hosted | None = models.try_acquire(target) or await models.acquire(target)
        try:
            assert hosted is not None
            answer = await self._forward(hosted, forwarded, body)
            if answer is None or answer.status == 404:
                # The container lost the model (restarted, or unloaded it): load it again, retry once.
                models.forget(hosted)
                models.release(hosted)
                hosted = None
                if answer is None and not await self.instance.wait_serving(RESTART_WAIT_SECONDS):
                    raise ContainerUnavailable("the model container did not come back")
                hosted = await models.acquire(target)
                answer = await self._forward(hosted, forwarded, body)
                if answer is None:
                    raise ContainerUnavailable("the model container could not be reached")
        finally:
            if hosted is not None:
                models.release(hosted)
        if not 200 <= answer.status < 300:
            raise ContainerError(answer.text(), answer.status)
        await send_answer(
            send,
            answer.header(b"content-type") or b"application/json",
            answer.body,
            request_id,
            answer.header(_CUSTOM_ATTRIBUTES),
        )
        self.metrics.invocation("OK", time.perf_counter() - started)

    async def _forward(self, hosted: Hosted, headers: list[tuple[bytes, bytes]], body: bytes) -> Answer | None:
        """The container's answer; None when it could not be reached (it died or is restarting)."""
        try:
            return await self.client.request(
                "POST",
                f"/models/{hosted.name}/invoke",
                headers=headers,
                body=body,
                timeout=self.config.container_invoke_timeout_seconds,
            )
        except ContainerTimeout:
            raise ContainerError(INVOCATION_TIMEOUT_MESSAGE, 0) from None
        except ContainerUnreachable:
            return None


def instance_memory(budget_bytes: int, workers: int) -> int:
    """The instance's memory for a container whose models may take ``budget_bytes``: the budget plus the
    headroom the container itself keeps for its processes (64 MiB + 48 MiB per worker, container/settings.py),
    so a container given a cgroup limit of this size would compute exactly this budget."""
    return budget_bytes + 64 * 1024**2 + 48 * 1024**2 * workers


def ping_container(client: ContainerClient) -> Callable[[], Awaitable[bool]]:
    """``GET /ping`` of the endpoint in dense serving: healthy when the container answers its own ping."""

    async def ping() -> bool:
        try:
            return (await client.request("GET", "/ping", timeout=2.0)).status == 200
        except (ContainerUnreachable, ContainerTimeout):
            return False

    return ping
