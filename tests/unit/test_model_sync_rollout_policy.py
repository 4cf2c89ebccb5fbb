"""model-sync's ROLLOUT_POLICY: its grammar, its settings, and the template parameter that carries it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from local.template import load_yaml
from model_sync.rollout_policy import TEMPLATE_PATTERN, RolloutPolicy
from model_sync.settings import SyncSettings

TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"


@pytest.mark.parametrize(
    ("text", "policy", "canonical"),
    [
        ("off", RolloutPolicy("off"), "off"),
        (" shadow ", RolloutPolicy("shadow", 10_000), "shadow"),
        ("shadow:25", RolloutPolicy("shadow", 2500), "shadow:25"),
        ("shadow:100,days:3", RolloutPolicy("shadow", 10_000, 3), "shadow,days:3"),
        ("canary:10", RolloutPolicy("canary", 1000), "canary:10"),
        ("canary:0.5,days:7", RolloutPolicy("canary", 50, 7), "canary:0.5,days:7"),
        ("canary:0.01", RolloutPolicy("canary", 1), "canary:0.01"),
        ("canary:100", RolloutPolicy("canary", 10_000), "canary:100"),
    ],
)
def test_policies_parse_to_basis_points_and_print_back(text: str, policy: RolloutPolicy, canonical: str) -> None:
    assert RolloutPolicy.parse(text) == policy
    assert str(policy) == canonical
    assert RolloutPolicy.parse(canonical) == policy


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("canary", "canary needs the candidate's share"),
        ("canary:0", "above 0 and at most 100"),
        ("canary:100.5", "above 0 and at most 100"),
        ("shadow:0", "above 0 and at most 100"),
        ("canary:0.001", "not a policy"),
        ("canary:10%", "not a policy"),
        ("off:5", "'off' takes no percentage or days"),
        ("off,days:3", "'off' takes no percentage or days"),
        ("canary:10,days:0", "not a policy"),
        ("Canary:10", "not a policy"),
        ("blue-green", "not a policy"),
        ("", "not a policy"),
    ],
)
def test_bad_policies_say_what_is_wrong_and_what_is_allowed(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=re.escape(problem)) as raised:
        RolloutPolicy.parse(text)
    assert "canary:<pct>" in str(raised.value)


def test_duration_is_the_policys_days_else_the_deployments_limit() -> None:
    assert RolloutPolicy.parse("canary:5,days:2").duration_seconds(14) == 2 * 86_400
    assert RolloutPolicy.parse("canary:5").duration_seconds(14) == 14 * 86_400


@pytest.mark.parametrize(
    "text",
    [
        "off",
        "shadow",
        "shadow:12.5",
        "canary:10",
        "canary:0.01,days:9999",
        "canary:0",
        "canary:150",
        "off,days:3",
        "canary",
        "canary:10,days:0",
        "shadow,days:",
        "canary:1.234",
        "x",
    ],
)
def test_the_template_parameter_admits_the_grammar_and_parse_decides_the_rest(text: str) -> None:
    # Given the RolloutPolicy parameter as template.yaml declares it
    parameter = load_yaml(TEMPLATE.read_text())["Parameters"]["RolloutPolicy"]
    assert parameter["AllowedPattern"] == TEMPLATE_PATTERN
    assert RolloutPolicy.parse(parameter["Default"]) == RolloutPolicy("off")
    # Then a value CloudFormation refuses never parses; one it admits either parses or fails the function's
    # start-up with the variable named (0 % and > 100 %, which a regular expression cannot weigh)
    admitted = re.fullmatch(parameter["AllowedPattern"], text) is not None
    try:
        RolloutPolicy.parse(text)
        parses = True
    except ValueError as error:
        parses = False
        assert "above 0 and at most 100" in str(error) or "'off' takes no" in str(error) or not admitted
    assert parses <= admitted


def test_settings_default_to_off_and_fourteen_days() -> None:
    settings = SyncSettings.from_env({"ARTIFACT_BUCKET": "b", "REGISTRY_TABLE": "t"})
    assert (settings.rollout, settings.rollout_max_days) == (RolloutPolicy("off"), 14)
    settings = SyncSettings.from_env(
        {"ARTIFACT_BUCKET": "b", "REGISTRY_TABLE": "t", "ROLLOUT_POLICY": "canary:5", "ROLLOUT_MAX_DAYS": "3"}
    )
    assert (settings.rollout, settings.rollout_max_days) == (RolloutPolicy("canary", 500), 3)


def test_bad_rollout_settings_name_their_variables() -> None:
    environ = {"ARTIFACT_BUCKET": "b", "REGISTRY_TABLE": "t", "ROLLOUT_POLICY": "canary", "ROLLOUT_MAX_DAYS": "0"}
    with pytest.raises(ValueError, match="ROLLOUT_POLICY") as raised:
        SyncSettings.from_env(environ)
    assert "ROLLOUT_MAX_DAYS" in str(raised.value)
