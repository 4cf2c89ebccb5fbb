"""Hostile input through the real local HTTP API and straight at the endpoint: never a 5xx, always JSON.

A fixed corpus of known-nasty requests plus Hypothesis-generated ones (well over 500 in all, bounded
to well under a minute here). A client's mistake is a 4xx whose JSON body names the problem — the
router's ``{"message", "errors": [{"field", "problem"}]}``, API Gateway's own ``{"message"}``, or
SageMaker Runtime's ``x-amzn-ErrorType`` + ``{"message"}`` — and afterwards the stack still serves.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from house_prices import schema
from local.stack import LocalStack

pytestmark = pytest.mark.slow

CITY = "Chicago_IL"
VALID = dict(schema.EXAMPLE_HOUSE)
GATEWAY_MESSAGES = {"Not Found", "Request Entity Too Large", "Request Timeout"}
# Hypothesis drives a live stack: no deadline (the machine is shared), no shrinking replay database.
# Requests checked by this module; the last test asserts the suite really sent what it claims.
CHECKED = {"api": 0, "endpoint": 0}
LIVE = settings(deadline=None, database=None, suppress_health_check=list(HealthCheck), derandomize=True)


@pytest.fixture(scope="module")
def pids_before(stack: LocalStack, trained: dict) -> dict[str, int]:
    """Each stack process before the suites: a restart by the supervisor would be a crash we caused."""
    return {child.name: child.pid for child in stack.children}


@pytest.fixture(scope="module")
def api(stack: LocalStack, pids_before: dict[str, int]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.info.api_url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def endpoint(stack: LocalStack, trained: dict) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.info.endpoint_url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def target_model(trained: dict) -> str:
    return str(trained["live"][CITY].target_model)


def assert_clean_api_answer(response: httpx.Response) -> None:
    """No 5xx; a JSON object naming the problem; the router's 4xx name the offending field."""
    CHECKED["api"] += 1
    assert response.status_code < 500, (response.status_code, response.text[:500])
    if response.request.method == "HEAD":
        return
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert isinstance(body, dict)
    if response.status_code < 400:
        return
    assert isinstance(body.get("message"), str)
    assert body["message"]
    if body["message"] not in GATEWAY_MESSAGES:
        assert body["errors"], body
        for error in body["errors"]:
            assert isinstance(error["field"], str)
            assert isinstance(error["problem"], str)
            assert error["problem"]
    assert "Traceback" not in response.text


def assert_clean_endpoint_answer(response: httpx.Response) -> None:
    """SageMaker Runtime's shape: errors are 4xx with x-amzn-ErrorType and a JSON message."""
    CHECKED["endpoint"] += 1
    assert response.status_code < 500, (response.status_code, response.text[:500])
    if response.status_code >= 400:
        assert response.headers.get("x-amzn-ErrorType"), (response.status_code, dict(response.headers))
        body = response.json()
        assert isinstance(body.get("message") or body.get("Message"), str)


# --- a fixed corpus through the HTTP API -------------------------------------------------------

DEEP = "[" * 100_000 + "]" * 100_000
PREDICT = f"/locations/{CITY}/predictions"
API_CORPUS: list[tuple[str, str, dict[str, Any]]] = [
    *(
        (method, path, {})
        for method in ("GET", "PUT", "DELETE", "PATCH", "TRACE", "OPTIONS", "HEAD")
        for path in (
            "/",
            "/health",
            PREDICT,
            "/locations",
            "/nope",
            "/%00",
            "/%0A",
            "/health%0A",
            "/locations/%0A",
            "/locations/..%2F..%2Fetc%2Fpasswd",
            "//health",
            "/health/",
            "/LOCATIONS",
        )
    ),
    *(
        ("GET", f"/locations/{city}", {})
        for city in (
            "%00",
            "%0A",
            "a%2Fb",
            "..",
            "%2E%2E",
            "x" * 65,
            "x" * 5000,
            "%F0%9F%8F%A0",
            "%FF%FE",
            "Chicago_IL%0D%0AX: y",
            "Chicago_IL;drop",
            "%25",
            "Atlantis_XX",
            "_leading",
            "1City",
        )
    ),
    *(
        ("POST", PREDICT, {"content": body})
        for body in (
            b"",
            b" ",
            b"null",
            b"true",
            b"0",
            b"[]",
            b"{}",
            b'"house"',
            b"not json",
            b"\xff\xfe\x00",
            b"\x00" * 64,
            DEEP.encode(),
            b'{"a":' * 5000,
            b"1" * 5000,
            b"1e999",
            b'{"houses": null}',
            b'{"houses": {}}',
            b'{"houses": []}',
            b'{"houses": [null]}',
            b'{"houses": "x"}',
            b'{"houses": [[]]}',
            b"\xef\xbb\xbf{}",
            b'{"YEAR_BUILT": NaN}',
            b'{"YEAR_BUILT": Infinity}',
            b'{"YEAR_BUILT": -Infinity}',
            b'{"\\ud800": 1}',
            json.dumps({**VALID, "YEAR_BUILT": 10**400}).encode(),
            json.dumps({**VALID, "LOT_ACRES": 1e308}).encode(),
            json.dumps({**VALID, "NUM_BATHROOMS": 2.25}).encode(),
            json.dumps({**VALID, "YEAR_BUILT": True}).encode(),
            json.dumps({**VALID, "YEAR_BUILT": "2005"}).encode(),
            json.dumps({**VALID, "x" * 10_000: 1}).encode(),
            json.dumps({**{f"k{i}": i for i in range(5000)}}).encode(),
            json.dumps({"houses": [VALID] * 1001}).encode(),
            json.dumps({"houses": [VALID], "extra": 1}).encode(),
            json.dumps({"houses": [{**VALID, "X": 1}] * 300}).encode(),
            b"x" * (6 * 1024 * 1024 + 1),
            b'{"YEAR_BUILT": 1' + b"0" * 5000 + b"}",
        )
    ),
    *(
        ("POST", PREDICT, {"content": json.dumps(VALID).encode(), "headers": {"content-type": ctype}})
        for ctype in (
            "text/plain",
            "application/octet-stream",
            "image/png",
            "application/json; charset=utf-16",
            "x" * 2000,
            "",
        )
    ),
    *(
        ("POST", f"{PREDICT}?version={version}", {"json": VALID})
        for version in (
            "latest",
            "",
            "%00",
            "20200101T000000Z-deadbeef",
            "20200101T000000Z-DEADBEEF",
            "x" * 5000,
            "..%2F",
            "1&version=2",
        )
    ),
    ("POST", PREDICT, {"content": json.dumps(VALID).encode(), "headers": {"content-encoding": "gzip"}}),
    ("POST", "/locations/%00/predictions", {"json": VALID}),
    ("POST", "/locations/a%2Fb/predictions", {"json": VALID}),
    ("GET", "/health?deep=true&deep=1&" + "x=1&" * 500, {}),
    ("GET", "/locations", {"headers": {"cookie": "a=" + "b" * 4000, "x-amzn-trace-id": "%00"}}),
]


def test_api_corpus_gets_no_5xx_and_json_errors(api: httpx.Client) -> None:
    # Given the fixed corpus of hostile requests  When each is sent through the HTTP API
    for method, path, options in API_CORPUS:
        response = api.request(method, f"{api.base_url}{path}", **options)
        # Then no 5xx, and every answer is JSON that names the problem
        assert_clean_api_answer(response)
    assert len(API_CORPUS) >= 150


# --- generated requests through the HTTP API ---------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)
feature_values = st.one_of(
    st.integers(min_value=-(10**20), max_value=10**20), st.floats(), st.text(max_size=5), st.none(), st.booleans()
)
near_valid_houses = st.fixed_dictionaries(
    {},
    optional={**{name: feature_values for name in schema.FEATURE_NAMES}, "EXTRA": feature_values},
)
bodies = st.one_of(
    json_values.map(lambda value: json.dumps(value).encode()),
    near_valid_houses.map(lambda house: json.dumps(house).encode()),
    st.lists(near_valid_houses, max_size=3).map(lambda houses: json.dumps({"houses": houses}).encode()),
    st.binary(max_size=200),
)
path_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=30)


@settings(LIVE, max_examples=250)
@given(city=path_text, body=bodies)
def test_generated_predictions_get_no_5xx_and_json_errors(api: httpx.Client, city: str, body: bytes) -> None:
    from urllib.parse import quote

    response = api.post(f"/locations/{quote(city, safe='')}/predictions", content=body)
    assert_clean_api_answer(response)


@settings(LIVE, max_examples=150)
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"]),
    segments=st.lists(path_text, max_size=4),
    query=st.dictionaries(st.text(max_size=8), st.text(max_size=20), max_size=3),
)
def test_generated_paths_get_no_5xx_and_json_errors(
    api: httpx.Client, method: str, segments: list[str], query: dict[str, str]
) -> None:
    from urllib.parse import quote, urlencode

    path = "/" + "/".join(quote(segment, safe="") for segment in segments)
    url = f"{api.base_url}{path}"
    response = api.request(method, f"{url}?{urlencode(query)}" if query else url)
    assert_clean_api_answer(response)


# --- straight at the endpoint's invocations route ---------------------------------------------


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _invoke(
    client: httpx.Client, name: str, target: str | None, body: bytes, ctype: str = "text/csv"
) -> httpx.Response:
    headers: dict[str, str | bytes] = {"content-type": ctype, "accept": "application/json"}
    if target is not None:
        headers["X-Amzn-SageMaker-Target-Model"] = target.encode("latin-1")  # HTTP/1.1 carries Latin-1
    return client.post(f"/endpoints/{name}/invocations", content=body, headers=headers)


ENDPOINT_BODIES: list[tuple[bytes, str]] = [
    (b"", "text/csv"),
    (b"1,2,3\n", "text/csv"),
    (b"a,b,c,d,e,f\n", "text/csv"),
    (b"nan,nan,nan,nan,nan,nan\n", "text/csv"),
    (b"1e999,1,1,1,1,1\n", "text/csv"),
    (b"\xff\xfe\x00\x00", "text/csv"),
    (b"1,2,3,4,5,6\n" * 100_000, "text/csv"),
    (b'"' * 1000, "text/csv"),
    (b"[[1,2,3,4,5,6]]", "application/json"),
    (b'{"instances": 1}', "application/json"),
    (DEEP.encode(), "application/json"),
    (b"not npy", "application/x-npy"),
    (_npy(np.array([["a"] * 6])), "application/x-npy"),
    (_npy(np.ones((1, 3))), "application/x-npy"),
    (_npy(np.ones((2, 2, 6))), "application/x-npy"),
    (
        b"\x93NUMPY\x01\x00v\x00{'descr': '|O', 'fortran_order': False, 'shape': (1,), }" + b" " * 50 + b"\n",
        "application/x-npy",
    ),
    (b"1,2,3,4,5,6\n", "application/x-unknown"),
    (b"1,2,3,4,5,6\n", ""),
]


def test_endpoint_corpus_gets_sagemaker_errors_never_5xx(
    endpoint: httpx.Client, stack: LocalStack, target_model: str
) -> None:
    name = stack.info.endpoint_name
    cases = [
        *((name, target_model, body, ctype) for body, ctype in ENDPOINT_BODIES),
        *(
            (name, target, b"1,2,3,4,5,6\n", "text/csv")
            for target in (
                None,
                "",
                "x y",
                "../../etc/passwd",
                "/abs.tar.gz",
                "x" * 1025,
                "a%00b",
                "Atlantis.20200101T000000Z-deadbeef.tar.gz",
                "caf\xe9.tar.gz",
                "x/../../y",
            )
        ),
        *(
            (other, target_model, b"1,2,3,4,5,6\n", "text/csv")
            for other in ("other-endpoint", "x" * 300, "a b", "%C3%A9")
        ),
    ]
    for endpoint_name, target, body, ctype in cases:
        assert_clean_endpoint_answer(_invoke(endpoint, endpoint_name, target, body, ctype))


@settings(LIVE, max_examples=100)
@given(
    body=st.binary(max_size=300) | st.text(max_size=100).map(str.encode),
    ctype=st.sampled_from(["text/csv", "application/json", "application/x-npy", "text/plain"]),
)
def test_generated_endpoint_bodies_get_sagemaker_errors_never_5xx(
    endpoint: httpx.Client, stack: LocalStack, target_model: str, body: bytes, ctype: str
) -> None:
    assert_clean_endpoint_answer(_invoke(endpoint, stack.info.endpoint_name, target_model, body, ctype))


def test_endpoint_name_with_an_encoded_slash_is_a_sagemaker_error(endpoint: httpx.Client, target_model: str) -> None:
    response = _invoke(endpoint, "a%2Fb", target_model, b"2005,3100,4,2.5,1.1,2\n")
    assert response.status_code == 400
    assert response.headers.get("x-amzn-ErrorType") == "ValidationError"
    assert "at 'endpointName' failed to satisfy constraint" in response.json()["Message"]


def test_complex_npy_bodies_are_refused(endpoint: httpx.Client, stack: LocalStack, target_model: str) -> None:
    # These were once answered 200 with the imaginary part dropped; the packed-forest serving path refuses them.
    body = _npy(np.array([[2005, 3100, 4, 2.5, 1.1, 2]], dtype=complex) + 1j)
    response = _invoke(endpoint, stack.info.endpoint_name, target_model, body, "application/x-npy")
    assert 400 <= response.status_code < 500
    assert response.headers.get("x-amzn-ErrorType")


# --- and the stack still serves ------------------------------------------------------------------


def test_the_stack_is_healthy_after_the_hostile_suites(
    api: httpx.Client, endpoint: httpx.Client, stack: LocalStack, trained: dict, pids_before: dict[str, int]
) -> None:
    # Runs after the suites above (file order): at least 500 hostile requests were answered cleanly
    if CHECKED["api"]:  # (not when this test runs on its own)
        assert CHECKED["api"] + CHECKED["endpoint"] >= 500, CHECKED
        print(f"hostile requests answered without a 5xx: {CHECKED}")
    # And every component is up and answers correctly
    # No process died (and was restarted by the supervisor) on the way
    assert stack.failure is None
    assert {child.name: child.pid for child in stack.children} == pids_before
    assert api.get("/health", params={"deep": "true"}).status_code == 200
    predicted = api.post(PREDICT, json={"houses": [VALID, VALID]})
    assert predicted.status_code == 200
    assert predicted.json()["model"]["version"] == trained["live"][CITY].version
    assert len(predicted.json()["predictions"]) == 2
    assert endpoint.get("/ping").status_code == 200
