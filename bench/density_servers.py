"""The servers of the density bench (``bench/density.py``), each started the way its image starts it.

* **MMS**: the scikit-learn image's multi-model server, exactly as the image's ``serve`` starts it in
  multi-model mode (aws/sagemaker-scikit-learn-container, tag ``v1.4-2-py312`` at 85e9fb9):
  ``serving.serving_entrypoint`` → ``serving_mms.start_model_server`` → ``_set_mms_configs`` exports its
  ``SAGEMAKER_*`` defaults and writes ``config.properties`` (a ``vmargs`` line, then
  ``docker/1.4-2-py312/resources/mms/config.properties.tmp``), then ``mms_patch.model_server`` runs
  ``mxnet-model-server --start --mms-config CONFIG --log-config <sagemaker_inference>/etc/log4j.properties``:
  MMS 1.1.1's Java frontend (``mms/frontend/model-server.jar``) with one Python backend per model and
  ``default_workers_per_model=1``. The Python side is the image's serving stack
  (``tests.sagemaker_image.serving_stack_python``: its Python, numpy, sagemaker-inference 1.2.0,
  multi-model-server 1.1.1), the vendored ``sagemaker_sklearn_container.handler_service``, the image's
  ``decoder.py`` patch (an overlay copy of ``sagemaker_inference`` with the patched module, first on
  ``PYTHONPATH``, which is what the Dockerfile's ``COPY`` over the installed file amounts to) and the
  project's ``training/inference.py`` as ``SAGEMAKER_PROGRAM``.
* **the dense container**: ``python -m container serve`` with the Python of ``build/container-venv``
  (the image's pinned requirements, Python 3.12) and the image's environment.
* **the ceiling**: ``bench/density_ceiling.py``, bench/peers.py's bare Starlette app on uvicorn +
  httptools + uvloop in as many processes as asked, one ``SO_REUSEPORT`` socket each, as the container.

Deviations from the image, each because this is not the image's machine: Java 17 instead of the image's
Java 8 (so ``-XX:+UseParNewGC``, which Java 9+ refuse to start with, is left out of ``vmargs``);
``--foreground`` so the frontend stays in the measured process tree (the image's ``serve`` process waits
for it instead); the paths (``TEMP``, logs, ``plugins_path``) under the bench's work directory, with
no plugin jar (the image's ``endpoints-1.0.jar`` only adds ``GET /execution-parameters``, for batch
transform); the program on ``PYTHONPATH`` rather than pip-installed from ``SAGEMAKER_SUBMIT_DIRECTORY``.
"""

from __future__ import annotations

import math
import os
import random
import shutil
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bench.processes import LOCALHOST, REPO_ROOT, BenchBroken, Server

IMAGE_TAG = "1.4-2-py312"
HANDLER = "sagemaker_sklearn_container.handler_service"
VENDOR = REPO_ROOT / "vendor" / "sagemaker-scikit-learn-container"
PROGRAM_DIR = REPO_ROOT / "training"
CONTAINER_REQUIREMENTS = REPO_ROOT / "requirements" / "container.txt"
CONTAINER_VENV = REPO_ROOT / "build" / "container-venv"
CONTAINER_PYTHON_VERSION = "3.12"
# The project's own modules the programs import (house_prices from the shared layer, packed_forest).
PROJECT_PATH = (str(REPO_ROOT), str(REPO_ROOT / "layers" / "common"))

# The image's MMS configuration (docker/1.4-2-py312/resources/mms/config.properties.tmp, vendored verbatim):
# _set_mms_configs writes a vmargs line and then this file; MMS fills in the $$VARIABLES$$ from the environment.
CONFIG_TEMPLATE = VENDOR / "docker" / IMAGE_TAG / "resources" / "mms" / "config.properties.tmp"
# The plugins directory the Dockerfile creates (it holds endpoints-1.0.jar, which is not used here).
IMAGE_PLUGINS_PATH = "plugins_path=/tmp/plugins\n"
# serving_mms.py's constants.
DEFAULT_MAX_CONTENT_LEN = 6 * 1024**2
MMS_NUM_MODEL_WORKERS_INIT = 1
MMS_MODEL_JOB_QUEUE_SIZE_DEFAULT = 100


def max_heap_mib(cpus: int, max_content_length: int = DEFAULT_MAX_CONTENT_LEN) -> int:
    """``_set_mms_configs``: (workers + job queue) x payload x 1.2 + 128 MiB, workers = CPUs, queue = 2 x CPUs."""
    return math.ceil((cpus + 2 * cpus) * (max_content_length / 1024**2) * 1.2) + 128


def vmargs_line(heap: str) -> str:
    """The image's ``vmargs`` line without ``-XX:+UseParNewGC`` (Java 8 only: Java 17 exits on it)."""
    return (
        f"vmargs=-XX:-UseLargePages -XX:MaxMetaspaceSize=32M -XX:InitiatingHeapOccupancyPercent=25"
        f" -Xms{heap} -Xmx{heap} -XX:MaxDirectMemorySize={heap}\n"
    )


def mms_environment(port: int, cpus: int) -> dict[str, str]:
    """What the image's environment holds when ``mxnet-model-server`` starts (Dockerfile ENV + _set_mms_configs)."""
    heap = f"{max_heap_mib(cpus)}m"
    return {
        "SAGEMAKER_MULTI_MODEL": "true",
        "SAGEMAKER_PROGRAM": "inference.py",
        "SAGEMAKER_MMS_MODEL_STORE": "/",
        "SAGEMAKER_MMS_LOAD_MODELS": "",
        "SAGEMAKER_MMS_DEFAULT_HANDLER": HANDLER,
        "SAGEMAKER_BIND_TO_PORT": str(port),
        "SAGEMAKER_NUM_MODEL_WORKERS": str(MMS_NUM_MODEL_WORKERS_INIT),
        "SAGEMAKER_MODEL_JOB_QUEUE_SIZE": str(MMS_MODEL_JOB_QUEUE_SIZE_DEFAULT),
        "SAGEMAKER_MAX_REQUEST_SIZE": str(DEFAULT_MAX_CONTENT_LEN),
        "SAGEMAKER_MAX_HEAP_SIZE": heap,
        "SAGEMAKER_MAX_DIRECT_MEMORY_SIZE": heap,
    }


def mms_config(cpus: int, plugins_path: Path) -> str:
    """``config.properties`` as the image writes it, with the plugins directory under the bench's work directory."""
    template = CONFIG_TEMPLATE.read_text()
    if IMAGE_PLUGINS_PATH not in template:
        raise BenchBroken(f"{CONFIG_TEMPLATE} no longer holds {IMAGE_PLUGINS_PATH.strip()!r}")
    return vmargs_line(f"{max_heap_mib(cpus)}m") + template.replace(
        IMAGE_PLUGINS_PATH, f"plugins_path={plugins_path}\n"
    )


def patched_toolkit(site_packages: Path, into: Path) -> Path:
    """A copy of the installed ``sagemaker_inference`` with the image's ``decoder.py`` over its own."""
    target = into / "sagemaker_inference"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(site_packages / "sagemaker_inference", target, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(VENDOR / "patches" / IMAGE_TAG / "sagemaker_inference" / "decoder.py", target / "decoder.py")
    return into


def mms_port() -> int:
    """A free port MMS accepts: its ``Connector.parse`` refuses any port >= Short.MAX_VALUE (32767)."""
    for _ in range(200):
        candidate = random.randrange(20_000, 32_000)
        with socket.socket() as probe:
            try:
                probe.bind((LOCALHOST, candidate))
            except OSError:
                continue
            return candidate
    raise BenchBroken("no free port below 32767 for MMS")


@dataclass(frozen=True)
class MmsLayout:
    """Where one MMS run keeps its files (all under ``work``)."""

    work: Path

    @property
    def config(self) -> Path:
        return self.work / "config.properties"

    @property
    def overlay(self) -> Path:
        return self.work / "overlay"

    @property
    def plugins(self) -> Path:
        return self.work / "plugins"

    @property
    def tmp(self) -> Path:
        return self.work / "tmp"

    @property
    def logs(self) -> Path:
        return self.work / "logs"


def mms_server(python: Path, work: Path, *, cpus: int, log_path: Path) -> Server:
    """MMS 1.1.1 as the image runs it in multi-model mode (no model loaded: SageMaker loads them)."""
    layout = MmsLayout(work)
    for directory in (layout.plugins, layout.tmp, layout.logs):
        directory.mkdir(parents=True, exist_ok=True)
    site_packages = next(python.parent.parent.glob("lib/python3*/site-packages"))
    patched_toolkit(site_packages, layout.overlay)
    layout.config.write_text(mms_config(cpus, layout.plugins))
    port = mms_port()
    env = {
        **mms_environment(port, cpus),
        "PYTHONPATH": os.pathsep.join(
            [str(layout.overlay), str(VENDOR / "serving"), str(PROGRAM_DIR), *reversed(PROJECT_PATH)]
        ),
        # The image's TEMP (Java's tmpdir: the backends' Unix sockets); TMPDIR keeps the launcher's pid file
        # (tempfile.gettempdir()/.model_server.pid) apart from any other MMS on this machine.
        "TEMP": str(layout.tmp),
        "TMPDIR": str(layout.tmp),
        "LOG_LOCATION": str(layout.logs),
        "METRICS_LOCATION": str(layout.logs),
    }
    log4j = site_packages / "sagemaker_inference" / "etc" / "log4j.properties"
    launcher = python.parent / "mxnet-model-server"
    if shutil.which("java") is None:
        raise BenchBroken("MMS needs java on PATH (its frontend is model-server.jar)")
    argv = [str(launcher), "--start", "--foreground", "--mms-config", str(layout.config), "--log-config", str(log4j)]
    return Server(name="mms", argv=argv, env=env, cwd=work, log_path=log_path, port=port)


def container_python() -> Path:
    """``build/container-venv``'s python (built from requirements/container.txt once, as the Makefile does)."""
    from tests.sagemaker_image import cached_venv

    requirements = CONTAINER_REQUIREMENTS
    python = cached_venv(
        CONTAINER_VENV, CONTAINER_PYTHON_VERSION, ["--no-deps", "-r", str(requirements)], requirements.read_bytes()
    )
    if python is None:
        raise BenchBroken(f"the container's Python {CONTAINER_PYTHON_VERSION} is not installed (pyenv install 3.12)")
    return python


def mms_python() -> Path:
    from tests.sagemaker_image import serving_stack_python

    python = serving_stack_python(IMAGE_TAG)
    if python is None:
        raise BenchBroken(f"the {IMAGE_TAG} image's Python is not installed (pyenv install 3.12)")
    return python


def image_environment() -> dict[str, str]:
    """The container image's ENV lines that matter outside Docker, and the repository as its /opt/program."""
    return {"PYTHONPATH": os.pathsep.join(PROJECT_PATH), "PYTHONUNBUFFERED": "1", "MALLOC_ARENA_MAX": "2"}


def container_server(
    python: Path,
    *,
    workers: int,
    model_root: Path,
    budget_bytes: int,
    log_path: Path,
    name: str | None = None,
    extra_env: Mapping[str, str] | None = None,
) -> Server:
    """``python -m container serve`` on a free port with ``workers`` processes and a fixed memory budget."""
    argv = [
        str(python),
        "-m",
        "container",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        "{port}",
        "--workers",
        str(workers),
        "--model-root",
        str(model_root),
        "--memory-budget-bytes",
        str(budget_bytes),
        "--log-level",
        "warning",
    ]
    return Server(
        name=name or f"container-{workers}w",
        argv=argv,
        env={**image_environment(), **(extra_env or {})},
        cwd=REPO_ROOT,
        log_path=log_path,
        port=0,
    )


def ceiling_server(python: Path, *, workers: int, log_path: Path) -> Server:
    """bench/peers.py's bare Starlette app on uvicorn + httptools + uvloop, ``workers`` processes."""
    argv = [str(python), str(Path(__file__).with_name("density_ceiling.py")), "--port", "{port}"]
    return Server(
        name=f"ceiling-{workers}p",
        argv=[*argv, "--workers", str(workers)],
        env=image_environment(),
        cwd=REPO_ROOT,
        log_path=log_path,
        port=0,
    )
