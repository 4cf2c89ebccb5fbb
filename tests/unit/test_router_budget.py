"""The router's time budget with a canary: the registry, one candidate attempt and the live call fit Lambda's timeout,
and a rollout change reaches every router within 5 s (docs/rollouts.md, Targets)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cfnlint.decode import decode

from router import wiring
from router.settings import RouterSettings

TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"
# docs/rollouts.md, Targets: a weight change, promotion or rollback is visible to every router within this many seconds.
VISIBILITY_SECONDS = 5


def router_function() -> dict[str, Any]:
    loaded, problems = decode(str(TEMPLATE))
    assert not problems, problems
    return loaded["Resources"]["RouterFunction"]["Properties"]


def test_a_failing_candidate_and_the_live_fallback_fit_inside_the_lambda_timeout() -> None:
    """Given the template's timeouts, when the candidate's one attempt times out and the live call then uses
    all its attempts, then the router still answers (503/504 at worst) a second before Lambda's timeout."""
    router = router_function()
    env = router["Environment"]["Variables"]

    def per_attempt(prefix: str) -> int:
        return int(env[f"{prefix}_CONNECT_TIMEOUT_SECONDS"]) + int(env[f"{prefix}_READ_TIMEOUT_SECONDS"])

    def worst_case(prefix: str, attempts: int) -> int:
        return attempts * per_attempt(prefix) + (attempts - 1)  # standard mode: at most 1 s backoff per retry

    registry = worst_case("REGISTRY", int(env["REGISTRY_MAX_ATTEMPTS"]))
    candidate = worst_case("ENDPOINT", wiring.CANDIDATE_ATTEMPTS)
    live = worst_case("ENDPOINT", int(env["ENDPOINT_MAX_ATTEMPTS"]))
    assert registry + candidate + live + 1 <= int(router["Timeout"])


def test_the_live_item_cache_keeps_rollout_changes_within_five_seconds() -> None:
    # The cached live item (with its rollout) lives this long; the strongly consistent GetItem that refreshes
    # it takes at most REGISTRY_READ_TIMEOUT_SECONDS more in the worst single attempt, normally milliseconds.
    env = router_function()["Environment"]["Variables"]
    assert int(env["LIVE_MODEL_CACHE_SECONDS"]) < VISIBILITY_SECONDS
    assert RouterSettings.live_model_cache_seconds < VISIBILITY_SECONDS
    assert int(env["LIVE_MODEL_CACHE_SECONDS"]) == RouterSettings.live_model_cache_seconds
