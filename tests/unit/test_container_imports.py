"""The image carries numpy and the server's own dependencies only: the container never imports more.

Checked twice: statically (every third-party module the container's import closure names is pinned in
requirements/container.txt) and at run time (a fresh interpreter that builds the app and loads the
default program has imported neither boto3 nor scikit-learn nor anything else unpinned).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Project packages the image copies (container/Dockerfile) and the modules of them the container may reach.
PROJECT_ROOTS = {
    "container": ROOT,
    "endpoint": ROOT,
    "packed_forest": ROOT,
    "training": ROOT,
    "house_prices": ROOT / "layers" / "common",
}


def _module_file(name: str) -> Path | None:
    top = name.split(".")[0]
    if top not in PROJECT_ROOTS:
        return None
    base = PROJECT_ROOTS[top].joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def _closure(start: list[str]) -> tuple[set[str], set[str]]:
    """Project modules reachable from ``start`` by top-level imports, and the third-party tops they name."""
    seen: set[str] = set()
    external: set[str] = set()
    pending = list(start)
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        path = _module_file(name)
        if path is None:
            continue
        seen.add(name)
        tree = ast.parse(path.read_text())
        for node in tree.body:  # module level only: function-level imports are opt-in paths
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            else:
                continue
            for imported in names:
                top = imported.split(".")[0]
                if top in PROJECT_ROOTS:
                    pending.append(imported)
                elif top not in sys.stdlib_module_names and top != "__future__":
                    external.add(top)
    return seen, external


def _pinned() -> set[str]:
    lines = (ROOT / "requirements" / "container.txt").read_text().splitlines()
    return {line.split("==")[0].strip().lower() for line in lines if "==" in line and not line.startswith("#")}


def test_every_third_party_module_the_container_imports_is_pinned_for_the_image() -> None:
    modules, external = _closure(["container.__main__", "training.inference"])

    assert "container.app" in modules
    assert "training.inference" in modules
    assert external <= {"numpy", "starlette", "uvicorn"}, external
    # uvloop and httptools are what endpoint.http tells uvicorn to run on.
    assert external | {"uvloop", "httptools"} <= _pinned()


def test_the_running_container_imports_no_aws_sdk_and_no_scikit_learn(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from container.settings import ContainerSettings\n"
        "from container.programs import Programs\n"
        "from container.app import create_app\n"
        "settings = ContainerSettings.from_env({'CONTAINER_MEMORY_BUDGET_BYTES': '1000000'})\n"
        "programs = Programs.from_file(settings.program_path, allow_model_code=False)\n"
        f"create_app(settings, programs, Path({str(tmp_path)!r}))\n"
        "import uvicorn.loops.uvloop, uvicorn.protocols.http.httptools_impl\n"
        "banned = ('boto3', 'botocore', 'sklearn', 'scipy', 'joblib', 'pandas', 'prometheus_client', 'moto')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in banned))\n"
    )

    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True)

    assert result.stdout.strip() == "[]", result.stdout + result.stderr
