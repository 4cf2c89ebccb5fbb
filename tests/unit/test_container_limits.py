"""The container's memory limit and CPUs from cgroup files: v2, v1, hybrid, nested, and no limit at all."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from container import limits


def cgroup(tmp_path: Path, proc: str, files: dict[str, str]) -> tuple[Path, Path]:
    """A fake /proc/self/cgroup and /sys/fs/cgroup tree."""
    root = tmp_path / "sys-fs-cgroup"
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    proc_file = tmp_path / "proc-self-cgroup"
    proc_file.write_text(proc)
    return proc_file, root


def test_cgroup_v2_memory_max_inside_a_container(tmp_path: Path) -> None:
    proc, root = cgroup(tmp_path, "0::/\n", {"memory.max": "8589934592\n"})

    found = limits.memory_limit(proc, root)

    assert found is not None
    assert found.value == 8 * 1024**3
    assert found.source.endswith("memory.max")


def test_cgroup_v2_takes_the_smallest_limit_on_the_way_to_the_root(tmp_path: Path) -> None:
    proc, root = cgroup(
        tmp_path,
        "0::/system.slice/job.scope\n",
        {"memory.max": "max\n", "system.slice/memory.max": "2000000\n", "system.slice/job.scope/memory.max": "max\n"},
    )

    found = limits.memory_limit(proc, root)

    assert found is not None
    assert found.value == 2_000_000


def test_cgroup_v1_limit_and_its_no_limit_value(tmp_path: Path) -> None:
    limited = tmp_path / "limited"
    limited.mkdir()
    proc, root = cgroup(limited, "4:memory:/docker/abc\n", {"memory/memory.limit_in_bytes": "1073741824\n"})
    assert limits.memory_limit(proc, root) is not None

    unlimited = tmp_path / "unlimited"
    unlimited.mkdir()
    proc, root = cgroup(unlimited, "4:memory:/\n0::/\n", {"memory/memory.limit_in_bytes": "9223372036854771712\n"})
    assert limits.memory_limit(proc, root) is None


def test_no_cgroup_files_means_no_limit(tmp_path: Path) -> None:
    assert limits.memory_limit(tmp_path / "absent", tmp_path / "absent-root") is None


def test_cpu_count_is_capped_by_a_quota(tmp_path: Path) -> None:
    available = len(os.sched_getaffinity(0))
    proc, root = cgroup(tmp_path, "0::/\n", {"cpu.max": "50000 100000\n"})
    assert limits.cpu_count(proc, root) == 1

    proc, root = cgroup(tmp_path / "v1", "2:cpu,cpuacct:/\n", {"cpu/cpu.cfs_quota_us": "-1\n"})
    assert limits.cpu_count(proc, root) == available


@pytest.mark.parametrize("content", ["", "garbage\n", "-5\n"])
def test_unreadable_limit_files_are_ignored(tmp_path: Path, content: str) -> None:
    proc, root = cgroup(tmp_path, "0::/\n", {"memory.max": content})

    assert limits.memory_limit(proc, root) is None
