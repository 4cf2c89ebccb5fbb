"""One home per fact: where a fact must be written again (YAML, JSON, a Makefile), it agrees with its home.

Python code imports a fact from its home; these tests tie the copies that cannot import:
the 256 MiB artifact budget (``house_prices.artifacts``), SageMaker's name rule (``house_prices.naming``),
the forest's hyperparameters (``training/train.py``), the package roots (``pyproject.toml``'s pytest
``pythonpath``) and the density bench's memory budget (``ops/serving_figures.json``).
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from house_prices import naming
from house_prices.artifacts import DEFAULT_MAX_UNPACKED_BYTES
from tests.sam_transform import decoded_template
from tests.unit import test_import_graph
from training import inputs, train

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return decoded_template()


@pytest.fixture(scope="module")
def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def package_roots(pyproject: dict[str, Any]) -> list[str]:
    """The one list: the directories every process puts on sys.path (as Lambda puts the layer there)."""
    roots: list[str] = pyproject["tool"]["pytest"]["ini_options"]["pythonpath"]
    return roots


def test_the_template_and_env_json_give_model_sync_the_artifact_budget(template: dict[str, Any]) -> None:
    # Given the budget's home, when the template and sam local's env.json set model-sync's variable
    variables = template["Resources"]["ModelSyncFunction"]["Properties"]["Environment"]["Variables"]
    env_json = json.loads((ROOT / "env.json").read_text())["ModelSyncFunction"]

    # Then both carry the same number
    assert variables["MAX_UNPACKED_BYTES"] == str(DEFAULT_MAX_UNPACKED_BYTES)
    assert env_json["MAX_UNPACKED_BYTES"] == str(DEFAULT_MAX_UNPACKED_BYTES)


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("house-prices-mme", True),
        ("a", True),
        ("a--b", True),
        ("a" * 63, True),
        ("a" * 64, False),
        ("-a", False),
        ("a-", False),
        ("a_b", False),
        ("a.b", False),
    ],
)
def test_the_template_endpoint_name_pattern_is_sagemakers_rule_in_lower_case(
    template: dict[str, Any], name: str, valid: bool
) -> None:
    # Given the EndpointName parameter's pattern (lower case: SageMaker lower-cases names inside ARNs)
    pattern = template["Parameters"]["EndpointName"]["AllowedPattern"]

    # Then it admits a lower-case name exactly when SageMaker's rule does, and never an upper-case one
    assert (re.fullmatch(pattern, name) is not None) == valid == naming.is_valid_sagemaker_name(name)
    assert naming.is_valid_sagemaker_name(name.upper()) == valid
    assert re.fullmatch(pattern, "A" + name) is None


def test_jobs_pass_the_scripts_own_hyperparameter_defaults_and_a_seed() -> None:
    # Given train.py's defaults as SageMaker would run it with no hyperparameters
    script = train.parse_args([], environ={"SM_MODEL_DIR": "m", "SM_CHANNEL_TRAIN": "t", "SM_CHANNEL_VALIDATION": "v"})

    # When a job is given the default hyperparameters
    job = inputs.Hyperparameters()

    # Then the forest is the same, except that the job seeds it and a hand run of the script does not
    assert (job.n_estimators, job.min_samples_leaf) == (script.n_estimators, script.min_samples_leaf)
    assert job.random_state == inputs.JOB_RANDOM_STATE == 0
    assert script.random_state is None
    assert job.for_city("X")["random-state"] == 0


def test_the_makefile_pth_mypy_and_pytest_share_the_package_roots(pyproject: dict[str, Any]) -> None:
    roots = package_roots(pyproject)
    makefile = (ROOT / "Makefile").read_text()
    listed = re.search(r"^PACKAGE_ROOTS := (.*)$", makefile, re.MULTILINE)

    assert listed is not None
    assert listed[1].split() == roots
    # mypy also resolves from the working directory, the "." root.
    assert pyproject["tool"]["mypy"]["mypy_path"] == [root for root in roots if root != "."]


def test_every_package_under_the_roots_is_type_checked_and_first_party(pyproject: dict[str, Any]) -> None:
    # Given every top-level package the roots hold
    roots = package_roots(pyproject)
    packages = {
        path.parent.relative_to(ROOT).as_posix(): path.parent.name
        for root in roots
        for path in (ROOT / root).glob("*/__init__.py")
    }
    assert {"layers/common/house_prices", "functions/router/router", "endpoint", "ops"} <= set(packages)

    # Then mypy checks each one
    checked = set(pyproject["tool"]["mypy"]["files"])
    assert set(packages) <= checked, set(packages) - checked
    # And isort's first-party names are packages the roots hold (or directories at the "." root)
    first_party = set(pyproject["tool"]["ruff"]["lint"]["isort"]["known-first-party"])
    assert all(name in packages.values() or (ROOT / name).is_dir() for name in first_party), first_party
    # And every package the roots hold is first-party, so its imports sort with the project's
    assert set(packages.values()) <= first_party, set(packages.values()) - first_party


def test_the_import_graph_walks_packages_where_the_roots_put_them(pyproject: dict[str, Any]) -> None:
    roots = {(ROOT / root).resolve() for root in package_roots(pyproject)}

    for package, root in test_import_graph.PACKAGE_ROOTS.items():
        assert root.resolve() in roots, package
        assert (root / package).is_dir(), package


def test_the_density_bench_budget_is_the_planned_instance_memory() -> None:
    # Given the ops plan's figures (ml.m5.large's memory less what an instance keeps for itself)
    from bench import density
    from ops.plan import Figures

    figures = Figures.load()
    m5_large = next(kind for kind in figures.instance_types if kind.name == "ml.m5.large")
    planned = m5_large.memory_gib * 1024 - figures.instance_overhead_mib.value
    # Then the density bench measures models per exactly that budget
    assert density.BUDGET_BYTES == planned * 1024 * 1024
