"""Settings from the environment and the command line, and where the memory budget comes from."""

from __future__ import annotations

from pathlib import Path

import pytest

from container import settings as settings_module
from container.limits import Found
from container.settings import ContainerSettings

MIB = 1024**2


def resolve(
    environ: dict[str, str], *, limit: int | None = None, cpus: int = 4, **overrides: object
) -> ContainerSettings:
    return ContainerSettings.from_env(
        environ,
        memory_limit=lambda: Found(limit, "/sys/fs/cgroup/memory.max") if limit is not None else None,
        cpu_count=lambda: cpus,
        physical_memory=lambda: 24 * 1024 * MIB,
        **overrides,
    )


def test_the_defaults_are_sagemaker_s_port_one_worker_per_cpu_and_the_project_s_program() -> None:
    settings = resolve({}, limit=8 * 1024 * MIB)

    assert (settings.host, settings.port, settings.workers) == ("0.0.0.0", 8080, 4)
    assert settings.model_root == Path("/opt/ml/models")
    assert settings.program_path == settings_module.PACKAGE_ROOT / "training" / "inference.py"
    assert settings.allow_model_code is False


def test_the_budget_is_the_cgroup_limit_less_headroom_for_the_processes() -> None:
    settings = resolve({"CONTAINER_MEMORY_BYTES": "999"}, limit=8 * 1024 * MIB, cpus=2)

    headroom = settings_module.HEADROOM_BASE_BYTES + 2 * settings_module.HEADROOM_PER_WORKER_BYTES
    assert settings.memory_budget.bytes == 8 * 1024 * MIB - headroom
    assert "cgroup limit" in settings.memory_budget.source


def test_without_a_cgroup_limit_the_budget_comes_from_container_memory_bytes_then_ram() -> None:
    from_variable = resolve({"CONTAINER_MEMORY_BYTES": str(2048 * MIB), "CONTAINER_MEMORY_HEADROOM_BYTES": "0"})
    from_ram = resolve({"CONTAINER_MEMORY_HEADROOM_BYTES": "0"})

    assert from_variable.memory_budget.bytes == 2048 * MIB
    assert "CONTAINER_MEMORY_BYTES" in from_variable.memory_budget.source
    assert from_ram.memory_budget.bytes == 24 * 1024 * MIB
    assert "physical memory" in from_ram.memory_budget.source


def test_an_explicit_budget_wins_over_everything() -> None:
    assert resolve({"CONTAINER_MEMORY_BUDGET_BYTES": "12345"}, limit=1 << 33).memory_budget.bytes == 12345
    assert resolve({"CONTAINER_MEMORY_BUDGET_BYTES": "12345"}, budget=999).memory_budget.bytes == 999


def test_sagemaker_s_variables_and_the_command_line_in_their_order() -> None:
    environ = {
        "SAGEMAKER_BIND_TO_PORT": "9090",
        "SAGEMAKER_MODEL_SERVER_WORKERS": "3",
        "SAGEMAKER_PROGRAM": "serve.py",
        "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/code",
        "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "text/csv",
        "ALLOW_MODEL_CODE": "TRUE",
    }
    settings = resolve(environ, limit=1 << 33, port=7070)

    assert (settings.port, settings.workers) == (7070, 3)
    assert settings.program_path == Path("/opt/ml/code/serve.py")
    assert settings.default_accept == "text/csv"
    assert settings.allow_model_code is True
    assert resolve({"CONTAINER_WORKERS": "5", "SAGEMAKER_MODEL_SERVER_WORKERS": "3"}, limit=1 << 33).workers == 5


@pytest.mark.parametrize(
    ("environ", "problem"),
    [
        ({"CONTAINER_PORT": "http"}, "CONTAINER_PORT"),
        ({"CONTAINER_WORKERS": "0"}, "workers must be positive"),
        ({"ALLOW_MODEL_CODE": "maybe"}, "ALLOW_MODEL_CODE"),
        ({"CONTAINER_MODEL_ROOT": "models"}, "absolute"),
        ({"SAGEMAKER_SUBMIT_DIRECTORY": "s3://bucket/sourcedir.tar.gz"}, "downloads nothing"),
        ({"CONTAINER_MEMORY_BYTES": "100"}, "memory budget"),
    ],
)
def test_bad_settings_fail_naming_the_problem(environ: dict[str, str], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        resolve(environ)
