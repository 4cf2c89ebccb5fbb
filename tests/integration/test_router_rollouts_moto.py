"""A rollout written by the registry and read by the router: moto DynamoDB, the real handler and
wiring, InvokeEndpoint checked by botocore's Stubber on both the live and the candidate's clients."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ReadTimeoutError
from botocore.stub import Stubber

from house_prices.registry import ModelRegistry
from router import handler
from router.adapters.registry import CachedRegistry
from router.settings import RouterSettings
from tests.lambda_contexts import lambda_context
from tests.model_versions import model_version
from tests.router_doubles import CANDIDATE, ENDPOINT, LIVE, OLDER, StubRouter, api_event, expected_call, json_body

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")
CITY = "Chicago_IL"
POLICY = {"min_labels": 200, "alpha": 0.05}


@pytest.fixture
def registry(router_registry: ModelRegistry) -> ModelRegistry:
    """moto DynamoDB with Chicago_IL live at LIVE (OLDER on standby) and CANDIDATE recorded, not yet rolled out."""
    for version in (OLDER, LIVE):
        router_registry.record_version(model_version(CITY, version))
        router_registry.promote(CITY, version)
    router_registry.record_version(model_version(CITY, CANDIDATE))
    return router_registry


@pytest.fixture
def stubs(monkeypatch: pytest.MonkeyPatch, registry: ModelRegistry, stub_router: StubRouter) -> dict[str, Stubber]:
    """The real wiring (the live item cache off) with a Stubber on each runtime client."""
    monkeypatch.setenv("LIVE_MODEL_CACHE_SECONDS", "0")
    monkeypatch.setenv("CAPTURE_SAMPLE_RATE", "0")
    return stub_router(
        lambda service: {"live": service.endpoint.client, "candidate": service.candidate_endpoint.client}
    )


def invoke(payload: dict[str, Any]) -> tuple[int, Any]:
    result = handler.lambda_handler(payload, lambda_context("RouterFunction"))
    return result["statusCode"], json.loads(result["body"])


def batch_event(**query: str) -> dict[str, Any]:
    loaded = api_event("api-predictions-batch.json")
    if query:
        loaded["queryStringParameters"] = query
        loaded["rawQueryString"] = "&".join(f"{k}={v}" for k, v in query.items())
    return loaded


def start_canary(registry: ModelRegistry, weight_bp: int = 10_000) -> None:
    registry.start_rollout(CITY, CANDIDATE, "canary", weight_bp, POLICY, duration_seconds=3600, actor="operator")


def test_a_canary_written_by_the_registry_routes_houses_to_the_candidate(
    registry: ModelRegistry, stubs: dict[str, Stubber]
) -> None:
    # Given a canary sending every house to CANDIDATE, started through the registry
    start_canary(registry)
    stubs["candidate"].add_response("invoke_endpoint", json_body([1.0, 2.0, 3.0]), expected_call(CANDIDATE))
    # When a batch is posted
    status, body = invoke(batch_event())
    # Then the candidate's TargetModel priced every house, and each prediction says so
    assert status == 200
    assert [(p["price"], p["version"]) for p in body["predictions"]] == [
        (1.0, CANDIDATE),
        (2.0, CANDIDATE),
        (3.0, CANDIDATE),
    ]
    assert body["model"]["version"] == LIVE


def test_a_candidate_timing_out_is_answered_by_the_live_version(
    registry: ModelRegistry, stubs: dict[str, Stubber], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a canary whose candidate call times out (botocore's own error; the Stubber cannot raise it)
    start_canary(registry)
    candidate_client = handler.service().candidate_endpoint.client  # type: ignore[attr-defined]

    def timed_out(**_: Any) -> Any:
        raise ReadTimeoutError(endpoint_url=f"https://runtime.sagemaker.us-east-1.amazonaws.com/endpoints/{ENDPOINT}")

    monkeypatch.setattr(candidate_client, "invoke_endpoint", timed_out)
    stubs["live"].add_response("invoke_endpoint", json_body([4.0, 5.0, 6.0]), expected_call(LIVE))
    # When a batch is posted, Then the live version prices it: 200, never the candidate's 504
    status, body = invoke(batch_event())
    assert status == 200
    assert [(p["price"], p["version"]) for p in body["predictions"]] == [(4.0, LIVE), (5.0, LIVE), (6.0, LIVE)]


def test_a_candidate_model_error_is_answered_by_the_live_version(
    registry: ModelRegistry, stubs: dict[str, Stubber]
) -> None:
    start_canary(registry)
    stubs["candidate"].add_client_error(
        "invoke_endpoint", service_error_code="ModelError", service_message="boom", http_status_code=424
    )
    stubs["live"].add_response("invoke_endpoint", json_body([4.0, 5.0, 6.0]), expected_call(LIVE))
    status, body = invoke(batch_event())
    assert (status, {p["version"] for p in body["predictions"]}) == (200, {LIVE})


def test_the_candidate_in_its_rollout_can_be_pinned_and_pinning_bypasses_the_rollout(
    registry: ModelRegistry, stubs: dict[str, Stubber]
) -> None:
    # Given a canary at 100 %: the candidate's record now has status "candidate"
    start_canary(registry)
    assert registry.version(CITY, CANDIDATE).status == "candidate"
    # When the candidate and then the live version are pinned, Then each alone answers, through the live client
    stubs["live"].add_response("invoke_endpoint", json_body([1.0, 2.0, 3.0]), expected_call(CANDIDATE))
    stubs["live"].add_response("invoke_endpoint", json_body([4.0, 5.0, 6.0]), expected_call(LIVE))
    assert {p["version"] for p in invoke(batch_event(version=CANDIDATE))[1]["predictions"]} == {CANDIDATE}
    assert {p["version"] for p in invoke(batch_event(version=LIVE))[1]["predictions"]} == {LIVE}


def test_the_location_shows_the_rollout_and_its_history(registry: ModelRegistry, stubs: dict[str, Stubber]) -> None:
    event = api_event("api-get-location.json")
    # Given no rollout: null
    status, body = invoke(event)
    assert (status, body["rollout"]) == (200, None)
    # When the registry starts one and changes its weight
    start_canary(registry, 500)
    registry.set_rollout_weight(CITY, CANDIDATE, 1500, actor="operator", reason="looks fine")
    # Then the location shows it, with the registry's events newest first
    status, body = invoke(event)
    shown = body["rollout"]
    assert status == 200
    assert {key: shown[key] for key in ("mode", "candidate", "weight_bp", "policy", "started_by")} == {
        "mode": "canary",
        "candidate": CANDIDATE,
        "weight_bp": 1500,
        "policy": POLICY,
        "started_by": "operator",
    }
    assert [e["action"] for e in shown["history"]] == ["weight", "started"]
    assert all(e["candidate"] == CANDIDATE for e in shown["history"])


def test_a_rollout_change_reaches_a_warm_router_within_the_cache_ttl(registry: ModelRegistry) -> None:
    # Given a warm router's cached registry (the default TTL) on the real registry, and a clock we move
    now = [1000.0]
    cached = CachedRegistry(registry, RouterSettings.live_model_cache_seconds, clock=lambda: now[0])
    start_canary(registry, 500)
    assert cached.live_model(CITY).rollout.weight_bp == 500  # type: ignore[union-attr]
    # When the weight changes, then the rollout ends
    registry.set_rollout_weight(CITY, CANDIDATE, 2000, actor="operator")
    # Then the change is invisible just before the TTL and visible at it
    now[0] += RouterSettings.live_model_cache_seconds - 0.01
    assert cached.live_model(CITY).rollout.weight_bp == 500  # type: ignore[union-attr]
    now[0] += 0.01
    assert cached.live_model(CITY).rollout.weight_bp == 2000  # type: ignore[union-attr]
    registry.end_rollout(CITY, CANDIDATE, "aborted", actor="operator", reason="test", evidence={})
    now[0] += RouterSettings.live_model_cache_seconds
    assert cached.live_model(CITY).rollout is None
