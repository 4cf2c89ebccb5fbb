"""Lambda's execution environments for one function: a pool of sandbox processes.

Lambda runs each concurrent invocation in its own execution environment, and an environment runs one
invocation at a time; module state (clients, caches such as the router's live-version cache) lives as
long as the environment. Here each environment is a process (``python -m local.sandboxes``) that
imports the handler once (its cold start) and then answers invocations over a socket pair, one JSON
line each way. The pool:

* reuses the most recently used idle sandbox (warm start), starts a new one only when every sandbox
  is busy and the pool is below its size (cold start, paid by that invocation, as on Lambda);
* is sized to the machine by default and capped by the function's ``ReservedConcurrentExecutions``;
  invocations beyond the size wait for a sandbox to come free (Lambda would scale out or throttle);
* kills a sandbox whose invocation outlives the function's ``Timeout``, or that crashed, and never
  reuses it — the next invocation gets a fresh environment, as Lambda resets one after a timeout.

The parent never imports the handler: two sandboxes never share module state, and the HTTP front
stays free of the function's imports.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import socket
import subprocess
import sys
import time
import traceback
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from local.lambda_runtime import LambdaContext, load_handler
from local.template import FunctionSpec

log = logging.getLogger("local.sandboxes")

# Lambda limits its Init phase to 10 s; a loaded 2-core machine importing boto3 and Powertools in
# several sandboxes at once can need longer, so locally a cold start gets more room before it fails.
INIT_TIMEOUT_SECONDS = 30.0
# An invocation's event and result travel as one JSON line: room for a 10 MB body, base64-encoded.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


class InvocationFailed(RuntimeError):
    """The invocation produced no result: the handler raised, timed out, or its sandbox died.

    API Gateway answers all of these with a 500; the reason goes to the logs only.
    """


class InvocationTimedOut(InvocationFailed):
    pass


def default_pool_size(function: FunctionSpec, cpus: int | None = None) -> int:
    """Two sandboxes per core, capped by the function's reserved concurrency.

    An invocation spends much of its time waiting for the endpoint, so one sandbox per core would
    leave the cores idle; more than two per core only adds processes that contend for the GIL-free
    CPU time that is not there.
    """
    size = 2 * (cpus or os.cpu_count() or 1)
    if function.reserved_concurrency is not None:
        size = min(size, function.reserved_concurrency)
    return size


@dataclass(frozen=True)
class SandboxSpec:
    """What a sandbox process needs to become the function: its spec, region and account."""

    function: FunctionSpec
    region: str
    account_id: str

    def to_json(self) -> str:
        function = asdict(self.function)
        # Routes, triggers and paths are plain data; JSON turns tuples into lists and Paths into strings.
        return json.dumps({"function": function, "region": self.region, "account_id": self.account_id}, default=str)

    @classmethod
    def from_json(cls, text: str) -> SandboxSpec:
        data = json.loads(text)
        raw = data["function"]
        function = FunctionSpec(
            logical_id=raw["logical_id"],
            function_name=raw["function_name"],
            code_uri=Path(raw["code_uri"]),
            handler=raw["handler"],
            runtime=raw["runtime"],
            timeout=int(raw["timeout"]),
            memory_size=int(raw["memory_size"]),
            environment=dict(raw["environment"]),
            layer_paths=tuple(Path(path) for path in raw["layer_paths"]),
            reserved_concurrency=raw.get("reserved_concurrency"),
        )
        return cls(function, data["region"], data["account_id"])


# --- the parent side ---------------------------------------------------------------------------


@dataclass(eq=False)  # identity semantics: the pool keeps sandboxes in a set
class Sandbox:
    """One running execution environment, as the pool sees it."""

    process: subprocess.Popen[bytes]
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    invocations: int = 0

    async def invoke(self, message: bytes) -> dict[str, Any]:
        self.writer.write(message)
        await self.writer.drain()
        line = await self.reader.readline()
        if not line:
            raise InvocationFailed(f"sandbox {self.process.pid} exited (status {self.process.poll()})")
        self.invocations += 1
        reply: dict[str, Any] = json.loads(line)
        return reply

    async def discard(self) -> None:
        """Kill the process (a timed-out or broken environment is never reused) and reap it."""
        self.writer.close()
        if self.process.poll() is None:
            self.process.kill()
        await asyncio.to_thread(self.process.wait)

    async def close(self, timeout: float = 5.0) -> None:
        """End of the pool: closing the socket makes the sandbox exit; kill it if it does not."""
        self.writer.close()
        try:
            await asyncio.wait_for(asyncio.to_thread(self.process.wait), timeout)
        except TimeoutError:
            await self.discard()


@dataclass
class SandboxPool:
    spec: SandboxSpec
    size: int
    init_timeout: float = INIT_TIMEOUT_SECONDS
    python: str = sys.executable
    environment: Mapping[str, str] | None = None
    _idle: list[Sandbox] = field(default_factory=list)
    _slots: asyncio.Semaphore | None = None
    _all: set[Sandbox] = field(default_factory=set)
    cold_starts: int = 0

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError(
                f"{self.spec.function.logical_id}: a pool of {self.size} sandboxes could run nothing "
                "(ReservedConcurrentExecutions 0 throttles every invocation)"
            )

    @property
    def timeout(self) -> int:
        return self.spec.function.timeout

    async def start(self, warm: int = 1) -> None:
        """Start ``warm`` sandboxes now, so a broken handler fails the start, not the first request."""
        self._slots = asyncio.Semaphore(self.size)
        started = await asyncio.gather(*(self._spawn() for _ in range(min(warm, self.size))))
        self._idle.extend(started)

    async def invoke(self, event: Mapping[str, Any]) -> Any:
        """Run one invocation in a free sandbox; its result, or InvocationFailed with the reason."""
        if self._slots is None:
            raise RuntimeError("the sandbox pool is not started")
        message = (json.dumps({"event": event}) + "\n").encode()
        async with self._slots:
            # LIFO: the most recently used sandbox is the warmest, and idle ones can be let go first.
            sandbox = self._idle.pop() if self._idle else await self._spawn()
            try:
                async with asyncio.timeout(self.timeout):
                    reply = await sandbox.invoke(message)
            except TimeoutError:
                await self._drop(sandbox)
                raise InvocationTimedOut(f"Task timed out after {self.timeout:.2f} seconds") from None
            except (InvocationFailed, OSError, ValueError) as error:
                await self._drop(sandbox)
                raise InvocationFailed(str(error)) from error
            except BaseException:
                # Cancelled (the client went away): the sandbox may be mid-invocation, so it is not reusable.
                await asyncio.shield(self._drop(sandbox))
                raise
            self._idle.append(sandbox)
        if "error" in reply:
            failure = reply["error"]
            raise InvocationFailed(f"{failure.get('errorType')}: {failure.get('errorMessage')}")
        return reply["result"]

    async def close(self) -> None:
        sandboxes, self._idle = list(self._all), []
        self._all.clear()
        await asyncio.gather(*(sandbox.close() for sandbox in sandboxes), return_exceptions=True)

    async def _drop(self, sandbox: Sandbox) -> None:
        self._all.discard(sandbox)
        await sandbox.discard()

    async def _spawn(self) -> Sandbox:
        """A cold start: a new process imports the handler and says it is ready."""
        started = time.perf_counter()
        ours, theirs = socket.socketpair()
        try:
            process = subprocess.Popen(
                [self.python, "-m", "local.sandboxes", "--fd", str(theirs.fileno()), "--spec", self.spec.to_json()],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                env=dict(self.environment) if self.environment is not None else None,
            )
        finally:
            theirs.close()
        reader, writer = await asyncio.open_unix_connection(sock=ours, limit=MAX_MESSAGE_BYTES)
        sandbox = Sandbox(process, reader, writer)
        try:
            async with asyncio.timeout(self.init_timeout):
                line = await reader.readline()
        except TimeoutError:
            await sandbox.discard()
            raise InvocationFailed(f"init did not finish within {self.init_timeout:g} s") from None
        hello = json.loads(line) if line else {"error": {"errorType": "Runtime.ExitError", "errorMessage": "exited"}}
        if "error" in hello:
            await sandbox.discard()
            failure = hello["error"]
            raise InvocationFailed(f"init failed: {failure.get('errorType')}: {failure.get('errorMessage')}")
        self._all.add(sandbox)
        self.cold_starts += 1
        log.info(
            "sandbox %s of %s ready in %.0f ms (%d/%d)",
            process.pid,
            self.spec.function.logical_id,
            (time.perf_counter() - started) * 1000,
            len(self._all),
            self.size,
        )
        return sandbox


# --- the sandbox process -----------------------------------------------------------------------


def _error(error: BaseException) -> dict[str, Any]:
    return {"error": {"errorType": type(error).__name__, "errorMessage": str(error)}}


def serve(sock: socket.socket, spec: SandboxSpec) -> int:
    """Load the handler (the Init phase), then answer invocations until the pool closes the socket."""
    function = spec.function
    channel = sock.makefile("rwb")

    def send(message: dict[str, Any]) -> None:
        channel.write((json.dumps(message) + "\n").encode())
        channel.flush()

    try:
        handler = load_handler(function, spec.region)
    except Exception as error:
        traceback.print_exc()
        send(_error(error))
        return 1
    send({"ready": True})
    arn = f"arn:aws:lambda:{spec.region}:{spec.account_id}:function:{function.function_name}"
    # One log stream per execution environment, as Lambda names them.
    stream = f"{datetime.now(UTC):%Y/%m/%d}/[$LATEST]{uuid.uuid4().hex}"
    while line := channel.readline():
        event = json.loads(line)["event"]
        context = LambdaContext(
            function_name=function.function_name,
            memory_limit_in_mb=function.memory_size,
            timeout_seconds=function.timeout,
            invoked_function_arn=arn,
            log_stream_name=stream,
        )
        try:
            reply = {"result": handler(event, context)}
            encoded = json.dumps(reply)
        except Exception as error:
            # Lambda logs the traceback; the caller only learns that the invocation failed.
            traceback.print_exc()
            encoded = json.dumps(_error(error))
        channel.write((encoded + "\n").encode())
        channel.flush()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="one Lambda execution environment (started by SandboxPool)")
    parser.add_argument("--fd", type=int, required=True, help="this end of the pool's socket pair")
    parser.add_argument("--spec", required=True, help="SandboxSpec as JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    with socket.socket(fileno=args.fd) as sock, contextlib.suppress(KeyboardInterrupt, BrokenPipeError):
        return serve(sock, SandboxSpec.from_json(args.spec))
    return 0


if __name__ == "__main__":
    sys.exit(main())
