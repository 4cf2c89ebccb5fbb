"""Quality-gate policy parsing, the decision table, column-order rejection and settings."""

from __future__ import annotations

from typing import Any

import pytest

from house_prices.naming import DEFAULT_PREFIX
from house_prices.schema import FEATURE_NAMES
from model_sync.gate import GatePolicy, decide, metrics_problem
from model_sync.settings import SyncSettings
from tests.unit.test_artifacts_inspection import realistic_metrics

NOT_WORSE_5 = GatePolicy.parse("not-worse-than-live-by:5")


@pytest.mark.parametrize(
    ("text", "policy"),
    [
        ("always", GatePolicy("always")),
        ("not-worse-than-live-by:5", GatePolicy("not-worse-than-live-by", 5.0)),
        (" not-worse-than-live-by:0 ", GatePolicy("not-worse-than-live-by", 0.0)),
        ("not-worse-than-live-by:2.5", GatePolicy("not-worse-than-live-by", 2.5)),
    ],
)
def test_policies_parse(text: str, policy: GatePolicy) -> None:
    assert GatePolicy.parse(text) == policy


@pytest.mark.parametrize(
    "text", ["", "Always", "not-worse-than-live-by", "not-worse-than-live-by:", "not-worse-than-live-by:-5", "x:5"]
)
def test_bad_policies_name_the_variable_and_the_valid_forms(text: str) -> None:
    with pytest.raises(ValueError, match=r"QUALITY_GATE=.* is not a policy; use 'always' or 'not-worse-than-live-by"):
        GatePolicy.parse(text)


@pytest.mark.parametrize(
    ("policy", "candidate", "live", "promote", "why"),
    [
        (NOT_WORSE_5, 20_000, None, True, "no live version"),
        (NOT_WORSE_5, 20_000, 20_000, True, "passed"),
        (NOT_WORSE_5, 21_000, 20_000, True, "passed"),  # exactly at the 5 % limit
        (NOT_WORSE_5, 21_001, 20_000, False, "held back"),
        (NOT_WORSE_5, 10_000, 20_000, True, "passed"),
        (GatePolicy("not-worse-than-live-by", 0), 20_001, 20_000, False, "held back"),
        (GatePolicy("always"), 90_000, 20_000, True, "always"),
        (NOT_WORSE_5, 20_000, "missing", True, "live version has no usable"),
        (NOT_WORSE_5, "missing", 20_000, False, "candidate has no usable"),
    ],
)
def test_decision_table(policy: GatePolicy, candidate: Any, live: Any, promote: bool, why: str) -> None:
    def metrics(value: Any) -> dict[str, Any] | None:
        if value is None:
            return None
        return {"validation": {}} if value == "missing" else realistic_metrics(ae_p50=float(value))

    candidate_metrics = metrics(candidate)
    assert candidate_metrics is not None
    decision = decide(policy, candidate_metrics, metrics(live))
    assert decision.promote is promote
    assert why in decision.reason


def test_held_back_reason_shows_both_numbers_and_the_limit() -> None:
    decision = decide(NOT_WORSE_5, realistic_metrics(ae_p50=22_000), realistic_metrics(ae_p50=20_000))
    assert decision.reason == (
        "held back: validation.ae_p50 22000 vs live 20000 (limit 21000, not-worse-than-live-by:5)"
    )


@pytest.mark.parametrize(
    ("metrics", "problem"),
    [
        (realistic_metrics(), None),
        (realistic_metrics(features=list(reversed(FEATURE_NAMES))), "differ from the serving order"),
        (realistic_metrics(features=FEATURE_NAMES[:-1]), "differ from the serving order"),
        ({k: v for k, v in realistic_metrics().items() if k != "features"}, "no 'features' list"),
        ({**realistic_metrics(), "features": "YEAR_BUILT,SQUARE_FEET"}, "differ from the serving order"),
        ({**realistic_metrics(), "validation": {"ae_p50": -1}}, "finite non-negative validation.ae_p50"),
        ({**realistic_metrics(), "validation": {"ae_p50": True}}, "finite non-negative validation.ae_p50"),
    ],
)
def test_metrics_that_make_a_model_unservable(metrics: dict[str, Any], problem: str | None) -> None:
    found = metrics_problem(metrics)
    if problem is None:
        assert found is None
    else:
        assert found is not None
        assert problem in found


@pytest.mark.parametrize(
    ("trained", "serving", "servable"),
    [
        ("1.4.2", "1.4", True),
        ("1.4.2", "1.4.0", True),
        ("1.4.2", None, True),
        ("1.9.1", "1.4", False),
        ("1.2.1", "1.4", False),
        (None, "1.4", False),
    ],
)
def test_pickles_must_match_the_serving_sklearn_minor_version(
    trained: str | None, serving: str | None, servable: bool
) -> None:
    metrics = {**realistic_metrics(), "versions": {"sklearn": trained} if trained else {}}
    problem = metrics_problem(metrics, serving)
    assert (problem is None) is servable
    if not servable:
        assert f"endpoint serves {serving}" in str(problem)


def test_settings_read_from_the_environment_with_defaults() -> None:
    settings = SyncSettings.from_env({"ARTIFACT_BUCKET": "b", "REGISTRY_TABLE": "t"})
    assert settings.artifact_bucket == "b"
    assert settings.registry_table == "t"
    assert settings.layout.prefix == DEFAULT_PREFIX
    assert settings.gate == NOT_WORSE_5
    assert settings.max_unpacked_bytes == 268_435_456
    assert settings.serving_sklearn_version is None
    assert (
        SyncSettings.from_env(
            {"ARTIFACT_BUCKET": "b", "REGISTRY_TABLE": "t", "SERVING_SKLEARN_VERSION": "1.4"}
        ).serving_sklearn_version
        == "1.4"
    )


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"REGISTRY_TABLE": "t"}, "ARTIFACT_BUCKET is required"),
        ({"ARTIFACT_BUCKET": "b"}, "REGISTRY_TABLE is required"),
        ({"ARTIFACT_BUCKET": "b", "REGISTRY_TABLE": "t", "QUALITY_GATE": "best"}, "QUALITY_GATE='best'"),
        ({"ARTIFACT_BUCKET": "b", "REGISTRY_TABLE": "t", "MAX_UNPACKED_BYTES": "1GB"}, "MAX_UNPACKED_BYTES='1GB'"),
        ({"ARTIFACT_BUCKET": "b", "REGISTRY_TABLE": "t", "MAX_UNPACKED_BYTES": "0"}, "MAX_UNPACKED_BYTES='0'"),
        ({"ARTIFACT_BUCKET": "b", "REGISTRY_TABLE": "t", "MODEL_PREFIX": "a/../b"}, "MODEL_PREFIX"),
        (
            {"ARTIFACT_BUCKET": "b", "REGISTRY_TABLE": "t", "SERVING_SKLEARN_VERSION": "1.4-2"},
            "SERVING_SKLEARN_VERSION",
        ),
    ],
)
def test_bad_settings_name_the_variable(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        SyncSettings.from_env(environ)
