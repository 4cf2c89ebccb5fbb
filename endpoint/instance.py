"""One endpoint instance in dense serving: the model container's process, as SageMaker runs it.

On AWS, SageMaker starts the image on each instance with ``serve``, waits for ``GET /ping``, sends it
every LoadModel, UnloadModel and invocation, and replaces a container that dies (whose models are then
gone: the next invocation loads them again). Locally the image's command runs from the repository,
``python -m container serve``, on a listening socket this process binds and keeps (``--fd``), so a
restarted container answers on the same address and connections made meanwhile wait in the backlog.

The container runs in this process's process group (the local stack stops both together) and with
``--exit-with-parent`` (it stops if this process is killed). Its environment is this process's, less the
SageMaker side's own settings (S3 credentials and endpoints, ``ENDPOINT_*``): what the Model's
``Environment`` gives the image on AWS. A container that dies is restarted after 0.5 s, 1 s, 2 s… (cap
8 s); dying more than 5 times in 60 s is a crash loop: :attr:`ContainerProcess.failure` says so and
``on_failed`` runs (the endpoint then stops, so the local stack's supervisor sees it).

Memory: :meth:`ContainerProcess.pss_bytes` is the PSS of the container's whole process tree (supervisor
and workers; a model memory-mapped by several workers counts once), what the instance's memory
utilisation is made of.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from endpoint.container_client import ContainerClient, ContainerTimeout, ContainerUnreachable
from endpoint.memory import process_tree, pss_bytes

log = logging.getLogger("endpoint.instance")

REPO_ROOT = Path(__file__).resolve().parent.parent
# The image's command (container/Dockerfile: ENTRYPOINT ["python", "-m", "container"], CMD ["serve"]).
IMAGE_COMMAND = (sys.executable, "-m", "container", "serve")
# Settings of the SageMaker side that the container must not see (on AWS it gets the Model's Environment only).
_SIDE_PREFIXES = ("AWS_", "ENDPOINT_")
_SIDE_VARIABLES = ("MODEL_DATA_URL", "MODEL_CACHE_SETTING")
_MAX_RESTARTS = 5
_RESTART_WINDOW_SECONDS = 60.0
_BACKOFF_BASE_SECONDS = 0.5
_BACKOFF_CAP_SECONDS = 8.0


def container_environment(environ: Mapping[str, str], **settings: str) -> dict[str, str]:
    """The container's environment: ``environ`` without the SageMaker side's settings, plus ``settings``."""
    environment = {
        name: value
        for name, value in environ.items()
        if not name.startswith(_SIDE_PREFIXES) and name not in _SIDE_VARIABLES
    }
    environment.update(settings)
    environment.setdefault("PYTHONUNBUFFERED", "1")
    return environment


class ContainerProcess:
    """The container's process on ``sock``; ``generation`` counts its starts (a restart forgets every model)."""

    def __init__(
        self,
        arguments: Sequence[str],
        environment: Mapping[str, str],
        sock: socket.socket,
        client: ContainerClient,
        *,
        command: Sequence[str] = IMAGE_COMMAND,
        ready_timeout_seconds: float = 60.0,
        on_restart: Callable[[], None] = lambda: None,
        on_failed: Callable[[str], None] = lambda reason: None,
    ) -> None:
        self._argv = [*command, "--host", "127.0.0.1", "--fd", str(sock.fileno()), "--exit-with-parent", *arguments]
        self._environment = dict(environment)
        self._sock = sock
        self._client = client
        self._ready_timeout = ready_timeout_seconds
        self._on_restart = on_restart
        self._on_failed = on_failed
        self._process: subprocess.Popen[bytes] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._ready: asyncio.Event | None = None
        self._stopping = False
        self._restarts: list[float] = []
        self.generation = 0
        self.failure: str | None = None
        # PSS of the container right after it became ready: what it takes with no model loaded.
        self.boot_pss = 0

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def pids(self) -> list[int]:
        """The container's supervisor and its workers, while it runs."""
        return process_tree(self._process.pid) if self._process is not None and self._process.poll() is None else []

    def pss_bytes(self) -> int:
        return pss_bytes(self.pids())

    @property
    def serving(self) -> bool:
        return self._ready is not None and self._ready.is_set()

    async def start(self) -> None:
        """Start the container and wait until it answers ``/ping``; raises if it exits or stays silent."""
        self._ready = asyncio.Event()
        self._spawn()
        await self._become_ready()
        self._watcher = asyncio.ensure_future(self._watch())

    async def wait_serving(self, timeout: float) -> bool:
        """Wait (at most ``timeout`` seconds) until the container is up again after a restart."""
        if self._ready is None or self.failure is not None:
            return False
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._ready.wait()
        return self._ready.is_set()

    def _spawn(self) -> None:
        log.info("starting the model container: %s", " ".join(self._argv))
        self._process = subprocess.Popen(
            self._argv,
            cwd=REPO_ROOT,
            env=self._environment,
            stdin=subprocess.DEVNULL,
            pass_fds=(self._sock.fileno(),),
        )

    async def _become_ready(self) -> None:
        assert self._process is not None
        assert self._ready is not None
        deadline = time.monotonic() + self._ready_timeout
        while True:
            code = self._process.poll()
            if code is not None:
                raise RuntimeError(f"the model container exited with code {code} before answering /ping")
            with contextlib.suppress(ContainerUnreachable, ContainerTimeout):
                answer = await self._client.request("GET", "/ping", timeout=2.0)
                if answer.status == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the model container did not answer /ping within {self._ready_timeout:g} s")
            await asyncio.sleep(0.05)
        self.boot_pss = await asyncio.get_running_loop().run_in_executor(None, self.pss_bytes)
        self._ready.set()
        log.info("model container ready (pid %d, generation %d)", self._process.pid, self.generation)

    async def _watch(self) -> None:
        """Restart the container whenever it exits, until stopped or crash-looping."""
        assert self._ready is not None
        while not self._stopping:
            assert self._process is not None
            code = self._process.poll()
            if code is None:
                await asyncio.sleep(0.1)
                continue
            self._ready.clear()
            self.generation += 1
            self._on_restart()
            now = time.monotonic()
            self._restarts = [at for at in self._restarts if now - at < _RESTART_WINDOW_SECONDS] + [now]
            if len(self._restarts) > _MAX_RESTARTS:
                self.failure = (
                    f"the model container exited {len(self._restarts)} times within {_RESTART_WINDOW_SECONDS:g} s "
                    f"(last exit code {code}); giving up"
                )
                log.error("%s", self.failure)
                self._on_failed(self.failure)
                return
            delay = min(_BACKOFF_CAP_SECONDS, _BACKOFF_BASE_SECONDS * 2 ** (len(self._restarts) - 1))
            log.error("the model container exited with code %d; restarting it in %.1f s", code, delay)
            await asyncio.sleep(delay)
            if self._stopping:
                return
            self._kill_leftovers()
            self._spawn()
            try:
                await self._become_ready()
            except RuntimeError as error:
                log.error("the restarted model container failed: %s", error)

    def _kill_leftovers(self) -> None:
        """Workers of a container whose supervisor died (they also stop on their own: --exit-with-parent)."""
        if self._process is None:
            return
        for pid in process_tree(self._process.pid)[1:]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    async def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the container (it finishes in-flight requests), SIGKILL it after ``timeout`` seconds."""
        self._stopping = True
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        process = self._process
        if process is None or process.poll() is not None:
            return
        workers = process_tree(process.pid)[1:]
        process.send_signal(signal.SIGTERM)  # its supervisor stops its workers and waits for them
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(loop.run_in_executor(None, process.wait), timeout)
        except TimeoutError:
            process.kill()
            await loop.run_in_executor(None, process.wait)
            for pid in workers:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
