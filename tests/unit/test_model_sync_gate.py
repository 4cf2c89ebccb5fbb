"""Quality-gate policy parsing, the decision table on measured errors, reported-vs-measured checks, settings."""

from __future__ import annotations

from typing import Any

import pytest

from house_prices.naming import DEFAULT_PREFIX
from house_prices.schema import FEATURE_NAMES
from house_prices.settings import SettingsError
from model_sync.gate import GatePolicy, Measured, decide, disagreement, metrics_problem, reported_ae_p50
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


def measured(ae_p50: float, rows: int = 300) -> Measured:
    return Measured(ae_p50=ae_p50, rows=rows, metrics={"ae_p50": ae_p50, "rows": rows})


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
        (NOT_WORSE_5, 20_000, "unmeasurable", True, "live version could not be measured"),
        (NOT_WORSE_5, "unmeasurable", 20_000, False, "only the 'always' gate can promote"),
        (NOT_WORSE_5, "unmeasurable", None, False, "only the 'always' gate can promote"),
        (GatePolicy("always"), "unmeasurable", 20_000, True, "not measured: no validation rows"),
    ],
)
def test_decision_table(policy: GatePolicy, candidate: Any, live: Any, promote: bool, why: str) -> None:
    # Given the measured errors of candidate and live ("unmeasurable": no rows / no packed live model)
    def of(value: Any) -> Measured | None:
        return None if value in (None, "unmeasurable") else measured(float(value))

    # When the gate decides
    decision = decide(
        policy, of(candidate), of(live), has_live=live is not None, unmeasured_reason="no validation rows at s3://b/k"
    )
    # Then the outcome and its reason follow the policy
    assert decision.promote is promote
    assert why in decision.reason


def test_held_back_reason_shows_both_numbers_the_rows_and_the_limit() -> None:
    decision = decide(NOT_WORSE_5, measured(22_000), measured(20_000), has_live=True)
    assert decision.reason == (
        "held back: measured validation.ae_p50 22000 vs live 20000 on the same 300 rows "
        "(limit 21000, not-worse-than-live-by:5)"
    )


@pytest.mark.parametrize(
    ("reported", "actual", "believed"),
    [(20_000, 20_000, True), (20_000, 20_150, True), (20_000, 20_300, False), (1_000, 20_000, False)],
)
def test_reported_errors_must_match_the_measured_ones(reported: float, actual: float, believed: bool) -> None:
    # Given an artifact whose metrics.json reports one AE p50 while model-sync measures another
    problem = disagreement(realistic_metrics(ae_p50=reported), measured(actual))
    # Then a gap beyond the tolerance is a reason to reject, naming both numbers
    assert (problem is None) is believed
    if not believed:
        assert f"reports validation.ae_p50={reported:g} but model-sync measured {actual:g}" in str(problem)


def test_a_huge_reported_number_is_unusable_not_an_overflow() -> None:
    assert reported_ae_p50({"validation": {"ae_p50": 10**4000}}) is None
    assert disagreement({"validation": {"ae_p50": 10**4000}}, measured(1.0)) is not None


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


def test_settings_read_from_the_environment_with_defaults() -> None:
    settings = SyncSettings.from_env({"ARTIFACT_BUCKET": "b", "REGISTRY_TABLE": "t"})
    assert settings.artifact_bucket == "b"
    assert settings.registry_table == "t"
    assert settings.layout.prefix == DEFAULT_PREFIX
    assert settings.gate == NOT_WORSE_5
    assert settings.max_unpacked_bytes == 268_435_456


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"REGISTRY_TABLE": "t"}, "ARTIFACT_BUCKET is required"),
        ({"ARTIFACT_BUCKET": "b"}, "REGISTRY_TABLE is required"),
        ({"ARTIFACT_BUCKET": "b", "REGISTRY_TABLE": "t", "QUALITY_GATE": "best"}, "QUALITY_GATE='best'"),
        (
            {"ARTIFACT_BUCKET": "b", "REGISTRY_TABLE": "t", "MAX_UNPACKED_BYTES": "1GB"},
            "MAX_UNPACKED_BYTES must be an integer, got '1GB'",
        ),
        (
            {"ARTIFACT_BUCKET": "b", "REGISTRY_TABLE": "t", "MAX_UNPACKED_BYTES": "0"},
            "MAX_UNPACKED_BYTES must be >= 1, got 0",
        ),
        ({"ARTIFACT_BUCKET": "b", "REGISTRY_TABLE": "t", "MODEL_PREFIX": "a/../b"}, "MODEL_PREFIX"),
    ],
)
def test_bad_settings_name_the_variable(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        SyncSettings.from_env(environ)


def test_every_bad_variable_is_named_in_one_error() -> None:
    # Given a function with no bucket, an unknown gate, a non-integer limit and a prefix that climbs out
    environ = {"REGISTRY_TABLE": "t", "QUALITY_GATE": "best", "MAX_UNPACKED_BYTES": "1GB", "MODEL_PREFIX": "a/../b"}
    # When settings are read
    with pytest.raises(SettingsError) as caught:
        SyncSettings.from_env(environ)
    # Then one error names each of them, in the order they are read
    assert [p.field for p in caught.value.problems] == [
        "ARTIFACT_BUCKET",
        "MODEL_PREFIX",
        "QUALITY_GATE",
        "MAX_UNPACKED_BYTES",
    ]
    assert str(caught.value).startswith("Invalid model-sync settings: ARTIFACT_BUCKET is required; MODEL_PREFIX")
