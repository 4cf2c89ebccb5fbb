"""What the container may use: its memory limit and its CPUs, read from the cgroup the process runs in.

SageMaker runs the image under Docker, which puts a memory limit on the container's cgroup: cgroup v2
``memory.max`` (``max`` = none) or cgroup v1 ``memory.limit_in_bytes`` (a page-rounded 2**63 - 1 =
none). The effective limit is the smallest one on the way from the process's cgroup to the root, so
every ancestor that is visible is read. Inside a container the cgroup file system is usually mounted
at the container's own cgroup, whose path in ``/proc/self/cgroup`` may not exist under the mount: the
mount root is read too. CPUs: the affinity mask, capped by a CFS quota when one is set.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PROC_CGROUP = Path("/proc/self/cgroup")
CGROUP_ROOT = Path("/sys/fs/cgroup")
# Anything this large is cgroup v1's way of saying "no limit" (it reports 2**63 - 1 rounded down to a page).
_NO_LIMIT_FROM = 1 << 60


@dataclass(frozen=True)
class Found:
    """A limit and the file it came from (shown at startup, so an operator can check it)."""

    value: int
    source: str


def memory_limit(proc_cgroup: Path = PROC_CGROUP, root: Path = CGROUP_ROOT) -> Found | None:
    """The container's memory limit in bytes, or None when no cgroup sets one."""
    found = [limit for path in _memory_files(proc_cgroup, root) if (limit := _read_limit(path)) is not None]
    return min(found, key=lambda limit: limit.value) if found else None


def cpu_count(proc_cgroup: Path = PROC_CGROUP, root: Path = CGROUP_ROOT) -> int:
    """CPUs this process may run on: the affinity mask, capped by a cgroup CPU quota if one is set."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        count = os.cpu_count() or 1
    for quota in _cpu_quotas(proc_cgroup, root):
        count = min(count, max(1, math.ceil(quota)))
    return max(1, count)


def _cgroup_paths(proc_cgroup: Path) -> dict[str, str]:
    """Controller (``""`` for cgroup v2's unified line) -> the process's cgroup path."""
    paths: dict[str, str] = {}
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return paths
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        for controller in controllers.split(",") if controllers else [""]:
            paths[controller] = path
    return paths


def _with_ancestors(mount: Path, cgroup_path: str) -> Iterator[Path]:
    """``mount/a/b``, ``mount/a``, ``mount``: the limit that applies is the smallest among them."""
    parts = [part for part in cgroup_path.split("/") if part and part not in (".", "..")]
    for depth in range(len(parts), -1, -1):
        yield mount.joinpath(*parts[:depth])


def _memory_files(proc_cgroup: Path, root: Path) -> Iterator[Path]:
    paths = _cgroup_paths(proc_cgroup)
    if "" in paths:
        for mount in (root, root / "unified"):
            for directory in _with_ancestors(mount, paths[""]):
                yield directory / "memory.max"
    if "memory" in paths:
        for directory in _with_ancestors(root / "memory", paths["memory"]):
            yield directory / "memory.limit_in_bytes"


def _read_limit(path: Path) -> Found | None:
    try:
        raw = path.read_text().strip()
    except OSError:
        return None
    if raw == "max":
        return None
    try:
        value = int(raw)
    except ValueError:
        return None
    return Found(value, str(path)) if 0 < value < _NO_LIMIT_FROM else None


def _cpu_quotas(proc_cgroup: Path, root: Path) -> Iterator[float]:
    """Each visible CFS quota as a number of CPUs (v2 ``cpu.max``, v1 ``cpu.cfs_quota_us``/``cpu.cfs_period_us``)."""
    paths = _cgroup_paths(proc_cgroup)
    if "" in paths:
        for directory in _with_ancestors(root, paths[""]):
            try:
                quota, period = (directory / "cpu.max").read_text().split()
                if quota != "max" and int(period) > 0:
                    yield int(quota) / int(period)
            except (OSError, ValueError):
                continue
    if "cpu" in paths:
        for directory in _with_ancestors(root / "cpu", paths["cpu"]):
            try:
                quota_us = int((directory / "cpu.cfs_quota_us").read_text())
                period_us = int((directory / "cpu.cfs_period_us").read_text())
            except (OSError, ValueError):
                continue
            if quota_us > 0 and period_us > 0:
                yield quota_us / period_us
