"""Training worker processes forked from one warm interpreter: scikit-learn is imported once per run, not per worker.

``WorkerPool`` starts ``python -m training.workers`` (the *zygote*). It imports ``train.py`` and
scikit-learn, fits a two-tree forest and packs it (which pulls in everything scikit-learn imports on
first use), freezes its heap for copy-on-write, then forks one child per request. Each child is a
real process running ``train.main(argv)`` in its own working directory and environment, stdout and
stderr in files, as ``python train.py ...`` would run; the zygote reports each child's pid and exit
status. A crash (a segfault, an OOM kill) ends that child only.

Started before a run validates its file, the import overlaps validation; forked children then start
in milliseconds, so a local run can cut its segments into more shards than workers and hand the next
shard to whichever worker is free (shards stay balanced when another tenant takes a core).

Protocol, one JSON object per line. Requests on the zygote's stdin:
``{"id", "argv", "env", "cwd", "stdout", "stderr"}``. Events on its stdout: ``{"ready": true}`` once
warm, ``{"id", "pid"}`` when a child starts, ``{"id", "returncode"}`` when it ends (a negative code
is the signal that ended it). The zygote exits when its stdin closes and its children are done.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import queue
import select
import subprocess
import sys
import threading
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

# The workers' numerical libraries run single-threaded: each worker is one of ``--workers`` processes
# on as many cores, and tree fits use no BLAS (the thread pools would only sit idle or oversubscribe).
SINGLE_THREADED = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
_POLL_SECONDS = 0.05
_REPO_ROOT = Path(__file__).resolve().parents[1]
COMMON_LAYER = _REPO_ROOT / "layers" / "common"


def python_path(existing: str | None = None) -> str:
    """PYTHONPATH for train.py: the common layer first (as the sourcedir root is in SageMaker)."""
    parts = [str(COMMON_LAYER)]
    if existing:
        parts.append(existing)
    return os.pathsep.join(parts)


# --------------------------------------------------------------------------- the zygote (python -m training.workers)


def _warm_up() -> Any:
    """Import ``train.py`` and run one tiny segment through it, so children inherit every lazy import."""
    import tempfile

    import numpy as np

    from house_prices import schema
    from house_prices.archives import package_model
    from training import train

    rng = np.random.default_rng(0)
    rows = rng.uniform(1, 5, size=(12, len(schema.FEATURE_NAMES)))
    split = (rows, rows.sum(axis=1))
    hyperparameters = {"n_estimators": 2, "min_samples_leaf": 1, "random_state": 0}
    model, packed, metrics = train.fit_model({"train": split, "validation": split, "test": split}, hyperparameters, "w")
    with tempfile.TemporaryDirectory(prefix="zygote-") as scratch:
        train.write_model_dir(Path(scratch) / "model", packed, metrics, model)
        package_model(Path(scratch) / "model", Path(scratch) / "model.tar.gz")
    return train


def _emit(event: Mapping[str, Any]) -> None:
    # Straight to the fd: nothing sits in a buffer a forked child could inherit and write again.
    os.write(1, (json.dumps(dict(event)) + "\n").encode())


def _child(train: Any, request: Mapping[str, Any]) -> int:
    """In the forked child: become the request's process, run ``train.main(argv)``, return its exit code."""
    for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(target, fd)
        os.close(target)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.argv = [str(getattr(train, "__file__", "train.py")), *request["argv"]]
    try:
        return train.main(list(request["argv"]))
    except SystemExit as exit_:  # argparse's errors: their message is already on stderr
        return exit_.code if isinstance(exit_.code, int) else 1
    except BaseException:
        traceback.print_exc()
        return 1


def _fork(train: Any, request: Mapping[str, Any]) -> int:
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        code = _child(train, request)
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _exit_watch(pid: int) -> int | None:
    """A pidfd that turns readable the moment ``pid`` ends (Linux 5.3+), or None: then the loop polls."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def serve() -> None:
    """The zygote's loop: fork a child per request line, report each start and exit.

    The loop sleeps in ``select`` on its stdin and on a pidfd per child, so a child's exit is
    reported at once and the parent hands that worker its next shard without a polling delay.
    """
    train = _warm_up()
    # Everything alive now is shared with every child: keep the collector from touching (copying) it.
    gc.freeze()
    _emit({"ready": True})
    children: dict[int, str] = {}
    watches: dict[int, int] = {}  # pidfd -> the child it watches
    pending = b""
    open_input = True
    while open_input or children:
        # Children without a pidfd (an old kernel) are found by polling waitpid.
        timeout = None if len(watches) == len(children) else _POLL_SECONDS
        readable, _, _ = select.select([0, *watches] if open_input else list(watches), [], [], timeout)
        if 0 in readable:
            chunk = os.read(0, 65536)
            open_input = bool(chunk)
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in filter(None, lines):
                request = json.loads(line)
                pid = _fork(train, request)
                children[pid] = str(request["id"])
                watch = _exit_watch(pid)
                if watch is not None:
                    watches[watch] = pid
                _emit({"id": request["id"], "pid": pid})
        ended = [watches.pop(fd) for fd in readable if fd in watches]
        for fd in [fd for fd in readable if fd != 0]:
            os.close(fd)
        _reap(children, ended, poll=len(watches) < len(children))


def _reap(children: dict[int, str], ended: Sequence[int], *, poll: bool) -> None:
    """Report the exit of each child in ``ended`` (their pidfds said so), and of any other, if ``poll``."""
    for pid in ended:
        if pid not in children:  # already reaped by the polling below
            continue
        try:
            _, status = os.waitpid(pid, 0)
        except ChildProcessError:  # reaped elsewhere: its exit status is unknowable
            _emit({"id": children.pop(pid), "returncode": -1})
            continue
        _emit({"id": children.pop(pid), "returncode": os.waitstatus_to_exitcode(status)})
    while poll and children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:  # none left after all (reaped elsewhere): nothing more will be known
            for job in children.values():
                _emit({"id": job, "returncode": -1})
            children.clear()
            return
        if pid == 0:
            return
        if pid in children:
            _emit({"id": children.pop(pid), "returncode": os.waitstatus_to_exitcode(status)})


# --------------------------------------------------------------------------- the parent's side


class WorkerPoolBroken(RuntimeError):
    """The zygote died: nothing more can start; its stderr says why."""


class WorkerPool:
    """A zygote and the children it forked for this process. ``start()`` returns at once; the import runs on."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self._env = {**(os.environ if env is None else env), **SINGLE_THREADED}
        self._process: subprocess.Popen[bytes] | None = None
        self._events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._stderr: list[bytes] = []
        self._readers: list[threading.Thread] = []
        self._submitted = 0
        self._lock = threading.Lock()
        self.pids: dict[str, int] = {}

    def start(self) -> WorkerPool:
        if self._process is None:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "training.workers"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=self._env,
                cwd=_REPO_ROOT,  # ``-m`` puts the working directory first on sys.path: this repository's training
                close_fds=True,
            )
            self._readers = [
                threading.Thread(target=self._read_events, args=(self._process.stdout,), daemon=True),
                threading.Thread(target=self._read_stderr, args=(self._process.stderr,), daemon=True),
            ]
            for reader in self._readers:
                reader.start()
        return self

    def __enter__(self) -> WorkerPool:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _read_events(self, stream: IO[bytes]) -> None:
        for line in stream:
            with contextlib.suppress(ValueError):
                self._events.put(json.loads(line))
        self._events.put(None)  # the zygote is gone

    def _read_stderr(self, stream: IO[bytes]) -> None:
        for line in stream:
            self._stderr.append(line)

    def stderr(self) -> str:
        return b"".join(self._stderr).decode(errors="replace")

    def submit(
        self, job: str, argv: Sequence[str], env: Mapping[str, str], cwd: Path, stdout: Path, stderr: Path
    ) -> None:
        """Fork a child that runs ``train.main(argv)``; its pid and exit code arrive as ``events()``."""
        process = self.start()._process
        assert process is not None
        assert process.stdin is not None
        request = {"id": job, "argv": list(argv), "env": dict(env), "cwd": str(cwd), "stdout": str(stdout),
                   "stderr": str(stderr)}  # fmt: skip
        try:
            with self._lock:
                process.stdin.write((json.dumps(request) + "\n").encode())
                process.stdin.flush()
                self._submitted += 1
        except (BrokenPipeError, ValueError) as error:
            raise WorkerPoolBroken(f"the training workers' zygote is gone: {self.stderr() or error}") from None

    def events(self, timeout: float) -> list[dict[str, Any]]:
        """What happened since the last call (waits up to ``timeout`` for the first); raises when the zygote died."""
        try:
            first = self._events.get(timeout=timeout)
        except queue.Empty:
            return []
        found = [first]
        with contextlib.suppress(queue.Empty):
            while True:
                found.append(self._events.get_nowait())
        if None in found:
            self._events.put(None)  # stays broken for every later call
            for reader in self._readers:
                reader.join(timeout=1)
            raise WorkerPoolBroken(f"the training workers' zygote exited: {self.stderr() or 'no output'}")
        events = [event for event in found if event is not None]
        for event in events:
            if "pid" in event:
                self.pids[str(event["id"])] = int(event["pid"])
        return events

    def kill(self, job: str) -> None:
        pid = self.pids.get(job)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)

    def close(self) -> None:
        """End the zygote: at once if it never forked, else once its children are done."""
        process, self._process = self._process, None
        if process is None:
            return
        if not self._submitted:
            process.kill()
        with contextlib.suppress(BrokenPipeError, OSError):
            assert process.stdin is not None
            process.stdin.close()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        for reader in self._readers:
            reader.join(timeout=1)


def start_workers() -> WorkerPool:
    """Start the workers' zygote now (its scikit-learn import overlaps whatever the caller does next).

    Its ``PYTHONPATH`` starts with the common layer, as train.py's does in script mode.
    """
    return WorkerPool({**os.environ, "PYTHONPATH": python_path(os.environ.get("PYTHONPATH"))}).start()


def trains_locally(argv: Sequence[str]) -> bool:
    """Whether ``python -m training.jobs argv`` will train locally, judged before argparse (and its imports) run.

    Used only to start the zygote early: a wrong guess costs nothing but time (an unused zygote is
    killed at once, and a run without one starts it as before), so anything unclear answers no.
    """
    args = list(argv)
    for index, arg in enumerate(args):
        if arg in ("-h", "--help") or arg.startswith(("--validate", "--mode=s")):
            return False
        if arg == "--mode" and index + 1 < len(args) and args[index + 1] != "local":
            return False
    return True


if __name__ == "__main__":
    serve()
