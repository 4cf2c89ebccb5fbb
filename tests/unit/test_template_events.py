"""events/*.json and env.json (inputs of `sam local invoke`) against template.yaml and the domain rules."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote_plus

import pytest

from house_prices import naming, schema
from house_prices.errors import InvalidInput, NotAModelKey
from model_sync.settings import SyncSettings
from rollouts.settings import RolloutSettings
from router.settings import RouterSettings
from tests.sam_transform import decoded_template

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"
API_EVENTS = sorted(EVENTS.glob("api-*.json"))
S3_EVENTS = sorted(EVENTS.glob("s3-*.json"))


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return decoded_template()


@pytest.fixture(scope="module")
def env_json() -> dict[str, dict[str, str]]:
    return json.loads((ROOT / "env.json").read_text())


def load(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / name).read_text())


def body_of(name: str) -> Any:
    return json.loads(load(name)["body"])


def router_routes(template: dict[str, Any]) -> set[str]:
    events = template["Resources"]["RouterFunction"]["Properties"]["Events"].values()
    return {f"{e['Properties']['Method'].upper()} {e['Properties']['Path']}" for e in events}


def test_every_event_file_is_json_and_is_either_an_api_or_an_s3_event() -> None:
    files = sorted(EVENTS.glob("*.json"))
    assert len(files) == len(API_EVENTS) + len(S3_EVENTS)
    assert len(API_EVENTS) >= 11
    assert len(S3_EVENTS) >= 2
    for path in files:
        assert isinstance(json.loads(path.read_text()), dict), path.name


@pytest.mark.parametrize("path", API_EVENTS, ids=lambda p: p.name)
def test_api_events_have_the_http_api_payload_v2_shape(template: dict[str, Any], path: Path) -> None:
    """Given an API event, then it is a payload-2.0 event of one of the template's routes, and its raw
    path is the route with the path parameters filled in (URL-encoded, as API Gateway receives them)."""
    event = json.loads(path.read_text())
    assert event["version"] == "2.0"
    assert event["routeKey"] in router_routes(template)
    assert event["requestContext"]["routeKey"] == event["routeKey"]
    method, route = event["routeKey"].split(" ", 1)
    assert event["requestContext"]["http"]["method"] == method
    assert event["requestContext"]["http"]["path"] == event["rawPath"]
    params = event.get("pathParameters", {})
    assert set(params) == set(re.findall(r"\{(\w+)\}", route))
    expected_path = re.sub(r"\{(\w+)\}", lambda m: quote(params[m.group(1)], safe=""), route)
    assert event["rawPath"] == expected_path
    assert dict(parse_qsl(event["rawQueryString"])) == event.get("queryStringParameters", {})
    assert event["isBase64Encoded"] is False
    assert all(key == key.lower() for key in event["headers"])
    if method == "POST":
        assert isinstance(event["body"], str)
        assert event["headers"]["content-length"] == str(len(event["body"].encode()))
    else:
        assert "body" not in event


@pytest.mark.parametrize("name", ["api-predictions-single.json", "api-predictions-version-pinned.json"])
def test_single_house_events_are_valid_houses(name: str) -> None:
    assert len(schema.parse_houses(body_of(name))) == 1
    assert load(name)["pathParameters"]["city"] in schema.NOTEBOOK_CITIES


def test_batch_event_is_valid_houses() -> None:
    rows = schema.parse_houses(body_of("api-predictions-batch.json"))
    assert len(rows) == len(body_of("api-predictions-batch.json")["houses"]) > 1


def test_version_pinned_event_pins_a_valid_version() -> None:
    version = load("api-predictions-version-pinned.json")["queryStringParameters"]["version"]
    assert naming.validate_version(version) == version


@pytest.mark.parametrize(
    ("name", "fields"),
    [
        ("api-predictions-invalid-field.json", {"houses[1].SQUARE_FEET", "houses[1].NUM_BATHROOMS"}),
        ("api-predictions-unknown-field.json", {"POOL"}),
    ],
)
def test_invalid_events_are_rejected_naming_the_offending_fields(name: str, fields: set[str]) -> None:
    with pytest.raises(InvalidInput) as raised:
        schema.parse_houses(body_of(name))
    assert {problem.field for problem in raised.value.problems} == fields


def test_unknown_city_event_is_a_valid_name_but_not_a_seed_city() -> None:
    city = load("api-predictions-unknown-city.json")["pathParameters"]["city"]
    assert naming.is_valid_city(city)
    assert city not in schema.NOTEBOOK_CITIES
    schema.parse_houses(body_of("api-predictions-unknown-city.json"))


def test_hostile_city_event_is_rejected_before_any_key_is_built() -> None:
    city = load("api-predictions-hostile-city.json")["pathParameters"]["city"]
    assert not naming.is_valid_city(city)
    with pytest.raises(InvalidInput):
        naming.validate_city(city)


def test_not_json_event_body_does_not_parse_as_json() -> None:
    event = load("api-predictions-not-json.json")
    with pytest.raises(json.JSONDecodeError):
        json.loads(event["body"])
    assert event["headers"]["content-type"] != "application/json"


def s3_filter(template: dict[str, Any]) -> tuple[str, str]:
    event = template["Resources"]["ModelSyncFunction"]["Properties"]["Events"]["TrainingOutput"]["Properties"]
    rules = {r["Name"]: r["Value"] for r in event["Filter"]["S3Key"]["Rules"]}
    prefix = rules["prefix"]["Fn::Sub"].replace(
        "${ArtifactPrefix}", template["Parameters"]["ArtifactPrefix"]["Default"]
    )
    return prefix, rules["suffix"]


@pytest.mark.parametrize("name", ["s3-put-training-output.json", "s3-put-training-output-moto-encoded.json"])
def test_training_output_events_match_the_trigger_and_parse_as_a_training_output(
    template: dict[str, Any], env_json: dict[str, dict[str, str]], name: str
) -> None:
    """Given an S3 put of a training output (key URL-encoded as in notifications), when decoded, then
    the template's filter would deliver it and KeyLayout parses city and job from it."""
    record = load(name)["Records"][0]
    assert record["eventSource"] == "aws:s3"
    assert record["eventName"].startswith("ObjectCreated:")
    assert record["s3"]["bucket"]["name"] == env_json["ModelSyncFunction"]["ARTIFACT_BUCKET"]
    key = unquote_plus(record["s3"]["object"]["key"])
    prefix, suffix = s3_filter(template)
    assert key.startswith(prefix)
    assert key.endswith(suffix)
    parsed = naming.KeyLayout().parse_training_output_key(record["s3"]["object"]["key"])
    assert (parsed.city, parsed.job) == ("Chicago_IL", "Chicago-IL-20261125-040000-000")


def test_unrelated_key_event_is_outside_the_trigger_and_not_a_model_key(template: dict[str, Any]) -> None:
    key = unquote_plus(load("s3-put-unrelated-key.json")["Records"][0]["s3"]["object"]["key"])
    prefix, suffix = s3_filter(template)
    assert not (key.startswith(prefix) and key.endswith(suffix))
    with pytest.raises(NotAModelKey):
        naming.KeyLayout().parse_training_output_key(key)


def test_env_json_covers_exactly_the_functions_with_template_variables(
    template: dict[str, Any], env_json: dict[str, dict[str, str]]
) -> None:
    """Given env.json, then its keys are the functions' logical ids and it only sets variables the
    template declares (sam local ignores any other)."""
    functions = {n for n, r in template["Resources"].items() if r["Type"] == "AWS::Serverless::Function"}
    assert set(env_json) == functions
    for name, variables in env_json.items():
        declared = set(template["Resources"][name]["Properties"]["Environment"]["Variables"])
        assert set(variables) <= declared, set(variables) - declared
        assert all(isinstance(value, str) for value in variables.values())


def test_env_json_values_are_accepted_by_the_functions_settings(env_json: dict[str, dict[str, str]]) -> None:
    router = RouterSettings.from_env(env_json["RouterFunction"])
    assert router.endpoint_name == "house-prices-mme"
    sync = SyncSettings.from_env(env_json["ModelSyncFunction"])
    assert sync.artifact_bucket == env_json["ModelSyncFunction"]["ARTIFACT_BUCKET"]
    rollouts = RolloutSettings.from_env(env_json["RolloutFunction"])
    assert rollouts.quality_table == env_json["RolloutFunction"]["QUALITY_TABLE"]


def test_env_json_bucket_is_what_the_template_names_for_the_default_prefix(
    template: dict[str, Any], env_json: dict[str, dict[str, str]]
) -> None:
    default_prefix = template["Parameters"]["BucketNamePrefix"]["Default"]
    bucket = env_json["ModelSyncFunction"]["ARTIFACT_BUCKET"]
    assert re.fullmatch(rf"{re.escape(default_prefix)}-\d{{12}}-[a-z]{{2}}-[a-z]+-\d", bucket)
