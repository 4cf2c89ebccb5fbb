"""Dense serving's pure parts: the container's environment, the instance's memory, model names, the PSS of a tree."""

from __future__ import annotations

import os

from endpoint.instance import container_environment
from endpoint.memory import process_tree, pss_bytes
from endpoint.sagemaker_side import instance_memory, model_name


def test_the_container_gets_the_models_environment_without_the_sagemaker_sides_settings() -> None:
    environ = {
        "PATH": "/usr/bin",
        "SAGEMAKER_PROGRAM": "inference.py",
        "ALLOW_PICKLED_MODELS": "false",
        "CONTAINER_WORKERS": "3",
        "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:5000",
        "AWS_SECRET_ACCESS_KEY": "local",
        "ENDPOINT_MAX_MODELS": "10",
        "MODEL_DATA_URL": "s3://bucket/p/",
        "MODEL_CACHE_SETTING": "Enabled",
    }
    environment = container_environment(environ, CONTAINER_MEMORY_BUDGET_BYTES="1000")
    assert environment == {
        "PATH": "/usr/bin",
        "SAGEMAKER_PROGRAM": "inference.py",
        "ALLOW_PICKLED_MODELS": "false",
        "CONTAINER_WORKERS": "3",
        "CONTAINER_MEMORY_BUDGET_BYTES": "1000",
        "PYTHONUNBUFFERED": "1",
    }


def test_the_instance_memory_is_the_budget_plus_the_containers_own_headroom() -> None:
    # The container, given this as its cgroup limit, would compute exactly the budget (container/settings.py)
    from container.settings import HEADROOM_BASE_BYTES, HEADROOM_PER_WORKER_BYTES

    for workers in (1, 2, 8):
        memory = instance_memory(256 * 1024**2, workers)
        assert memory - HEADROOM_BASE_BYTES - HEADROOM_PER_WORKER_BYTES * workers == 256 * 1024**2


def test_model_names_are_opaque_path_safe_and_stable() -> None:
    name = model_name("Chicago_IL.20261207T000000Z-0badc0de.tar.gz")
    assert len(name) == 32
    assert all(character in "0123456789abcdef" for character in name)
    assert name == model_name("Chicago_IL.20261207T000000Z-0badc0de.tar.gz")
    assert name != model_name("Chicago_IL.20261207T000001Z-0badc0de.tar.gz")


def test_the_pss_of_this_process_is_counted_and_a_vanished_pid_is_not() -> None:
    assert process_tree(os.getpid())[0] == os.getpid()
    assert pss_bytes([os.getpid()]) > 1024**2
    assert process_tree(2**22 + 7) == []
    assert pss_bytes([2**22 + 7]) == 0
