"""The project's import graph, read with the stdlib ast: no cycles, and the layering the architecture describes.

Every ``import``/``from … import`` between the project's own modules counts, including imports
inside functions and under ``TYPE_CHECKING``: a cycle hidden in a function is still a cycle.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path

from tests.graphs import find_cycle

ROOT = Path(__file__).resolve().parents[2]
# Where each top-level package lives (the .pth / PYTHONPATH roots).
PACKAGE_ROOTS = {
    "house_prices": ROOT / "layers" / "common",
    "router": ROOT / "functions" / "router",
    "model_sync": ROOT / "functions" / "model_sync",
    "quality": ROOT / "functions" / "quality",
    "rollouts": ROOT / "functions" / "rollouts",
    "packed_forest": ROOT,
    "training": ROOT,
    "endpoint": ROOT,
    "local": ROOT,
    "ops": ROOT,
    "container": ROOT,
    "testkit": ROOT,
    "bench": ROOT,
}
# The test and bench kit, and the benchmarks: they import production code, never the other way round.
TEST_AND_BENCH_PACKAGES = ("testkit", "bench", "tests")
LAMBDA_PACKAGES = ("house_prices", "router", "model_sync", "quality", "rollouts")
# What each Lambda package may import besides itself (functions/*/Makefile ships exactly these).
ALLOWED_IMPORTS = {
    "router": {"house_prices"},
    "model_sync": {"house_prices", "packed_forest"},
    "quality": {"house_prices"},
    "rollouts": {"house_prices"},
    "house_prices": set(),
    "packed_forest": set(),
}


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package, root in PACKAGE_ROOTS.items():
        for path in sorted((root / package).rglob("*.py")):
            found[module_name(path, root)] = path
    return found


def imported_names(path: Path, name: str) -> Iterator[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            yield base
            # ``from training import jobs`` imports the module training.jobs
            yield from (f"{base}.{alias.name}" for alias in node.names)


@cache
def graph() -> dict[str, frozenset[str]]:
    known = modules()
    edges: dict[str, frozenset[str]] = {}
    for name, path in known.items():
        targets = set()
        for imported in imported_names(path, name):
            # importing a.b.c also runs a and a.b
            parts = imported.split(".")
            targets.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
        edges[name] = frozenset(t for t in targets if t in known and t != name and not name.startswith(f"{t}."))
    return edges


def test_the_graph_sees_the_project() -> None:
    # A broken walker would pass the cycle test vacuously.
    edges = graph()
    assert len(edges) > 60
    assert "router.logic" in edges["router.handler"]
    assert "training.results" in edges["training.report"]


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": frozenset({"b"}), "b": frozenset({"c"}), "c": frozenset({"a"})}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": frozenset({"b"}), "b": frozenset()}) is None


def test_no_import_cycle_among_project_modules() -> None:
    assert find_cycle(graph()) is None


def test_lambda_packages_import_only_what_their_package_ships() -> None:
    # The router zip carries its package plus the layer; model-sync's also packed_forest; the layer only itself.
    for name, targets in graph().items():
        own = name.split(".")[0]
        if own in ALLOWED_IMPORTS:
            allowed = {own, *ALLOWED_IMPORTS[own]}
            assert all(t.split(".")[0] in allowed for t in targets), (name, sorted(targets))


def test_adapters_import_neither_settings_nor_each_other() -> None:
    # wiring.py builds clients from settings and passes both in.
    for name, targets in graph().items():
        if ".adapters." not in name:
            continue
        package = name.split(".")[0]
        assert f"{package}.settings" not in targets, name
        assert not any(".adapters." in t for t in targets), (name, sorted(targets))


def test_only_the_settings_module_touches_os_environ_in_the_lambda_packages_and_ops() -> None:
    offenders = []
    for name, path in modules().items():
        if name.split(".")[0] not in {*LAMBDA_PACKAGES, "ops"} or name == "house_prices.settings":
            continue
        if "os.environ" in path.read_text() or "getenv(" in path.read_text():
            offenders.append(name)
    assert offenders == []


def test_production_never_imports_test_or_bench_helpers() -> None:
    # testkit (in-process servers, moto S3, small forests) and bench/ may pull in moto, scikit-learn, wrk.
    offenders = []
    for name, path in modules().items():
        if name.split(".")[0] in TEST_AND_BENCH_PACKAGES:
            continue
        imported = {target.split(".")[0] for target in imported_names(path, name)}
        offenders += [(name, package) for package in sorted(imported & set(TEST_AND_BENCH_PACKAGES))]
    assert offenders == []
    # and the walker does see the kit and its users (else the check above passes vacuously)
    assert "endpoint.sockets" in graph()["testkit.servers"]
    assert "testkit.servers" in graph()["bench.processes"]
