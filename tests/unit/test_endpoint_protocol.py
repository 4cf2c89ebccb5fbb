"""InvokeEndpoint header validation, error bodies and settings parsing (pure functions, no sockets)."""

from __future__ import annotations

from pathlib import Path

import pytest

from endpoint import protocol
from endpoint.config import EndpointConfig, ModelDataUrl
from endpoint.errors import ArtifactMissing, ModelError, ValidationError

CONFIG = EndpointConfig(model_data_url=ModelDataUrl.parse("s3://bucket/PREFIX/multi_model_artifacts/"))


@pytest.mark.parametrize(
    "name",
    ["Chicago_IL.tar.gz", "Chicago_IL.20261125T040000Z-1a2b3c4d.tar.gz", "a", "x" * 1024, "sub/dir/model.tar.gz"],
)
def test_valid_target_models_pass(name: str) -> None:
    assert protocol.validate_target_model(name) == name


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        (None, "required"),
        ("", "1 to 1024"),
        ("x" * 1025, "1 to 1024"),
        (" leading-space.tar.gz", "printable"),
        ("tab\there.tar.gz", "printable"),
        ("new\nline", "printable"),
        ("../escape.tar.gz", "relative"),
        ("a/../../b.tar.gz", "relative"),
        ("/absolute.tar.gz", "relative"),
    ],
)
def test_invalid_target_models_are_validation_errors(name: str | None, fragment: str) -> None:
    # When the TargetModel header is absent or unsafe, Then a ValidationError says why
    with pytest.raises(ValidationError, match=fragment):
        protocol.validate_target_model(name)


def test_custom_attributes_and_inference_id_limits() -> None:
    assert protocol.validate_custom_attributes("trace=1") == "trace=1"
    assert protocol.validate_custom_attributes(None) is None
    with pytest.raises(ValidationError, match="US-ASCII"):
        protocol.validate_custom_attributes("é")
    with pytest.raises(ValidationError, match="1024"):
        protocol.validate_custom_attributes("a" * 1025)
    assert protocol.validate_inference_id("req-1") == "req-1"
    with pytest.raises(ValidationError, match="InferenceId"):
        protocol.validate_inference_id("x" * 65)


def test_unknown_endpoint_name_is_a_validation_error() -> None:
    protocol.validate_endpoint_name(CONFIG.endpoint_name, CONFIG)
    with pytest.raises(ValidationError, match="Endpoint other of account"):
        protocol.validate_endpoint_name("other", CONFIG)


def test_missing_artifact_message_names_bucket_and_key() -> None:
    error = protocol.missing_artifact(ArtifactMissing("bucket", "PREFIX/multi_model_artifacts/x.tar.gz", "404"))
    assert error.status == 400
    assert "Failed to download model data (bucket: bucket, key: PREFIX/multi_model_artifacts/x.tar.gz)" in error.message


def test_model_error_body_carries_the_original_status_and_message() -> None:
    # Given a container failure with status 415
    error = protocol.model_error(415, "bad content type", CONFIG)
    body = error.body()
    # Then the wire body has SageMaker's ModelError members and a client-error message
    assert isinstance(error, ModelError)
    assert error.status == 424
    assert body["OriginalStatusCode"] == 415
    assert body["OriginalMessage"] == "bad content type"
    assert body["LogStreamArn"].startswith("arn:aws:logs:us-east-1:")
    assert body["Message"].startswith('Received client error (415) from primary with message "bad content type"')
    assert body["message"] == body["Message"]


def test_model_error_message_respects_the_2048_limit() -> None:
    error = protocol.model_error(500, "x" * 10_000, CONFIG)
    assert len(error.message) <= 2048
    assert len(error.original_message) <= 2048


@pytest.mark.parametrize(
    ("url", "bucket", "prefix"),
    [
        ("s3://bucket/PREFIX/multi_model_artifacts/", "bucket", "PREFIX/multi_model_artifacts/"),
        ("s3://bucket/PREFIX/multi_model_artifacts", "bucket", "PREFIX/multi_model_artifacts/"),
        ("s3://bucket/", "bucket", ""),
    ],
)
def test_model_data_url_parsing(url: str, bucket: str, prefix: str) -> None:
    parsed = ModelDataUrl.parse(url)
    assert (parsed.bucket, parsed.prefix) == (bucket, prefix)
    assert parsed.key_for("m.tar.gz") == f"{prefix}m.tar.gz"


@pytest.mark.parametrize("url", ["http://bucket/x/", "s3://", "s3://B/x/", "s3://bucket/../x/"])
def test_bad_model_data_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="model data URL"):
        ModelDataUrl.parse(url)


def test_config_from_env_with_cli_overrides() -> None:
    # Given env vars and CLI values (CLI wins where given)
    environ = {
        "MODEL_DATA_URL": "s3://bucket/p/",
        "ENDPOINT_NAME": "from-env",
        "ENDPOINT_MAX_MODELS": "3",
        "SAGEMAKER_PROGRAM": "serve.py",
        "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/code",
        "MODEL_CACHE_SETTING": "Disabled",
        "AWS_DEFAULT_REGION": "eu-west-1",
    }
    config = EndpointConfig.from_env(environ, endpoint_name="from-cli", port=0, max_memory_bytes=None)
    assert config.endpoint_name == "from-cli"
    assert config.max_models == 3
    assert config.program_path == Path("/opt/code/serve.py")
    assert config.model_cache_setting == "Disabled"
    assert config.region == "eu-west-1"
    assert config.max_memory_bytes == EndpointConfig.max_memory_bytes
    assert config.host == "127.0.0.1"


@pytest.mark.parametrize(
    ("environ", "workers"),
    [
        ({}, 1),
        ({"SAGEMAKER_NUM_MODEL_WORKERS": "3"}, 3),
        ({"SAGEMAKER_NUM_MODEL_WORKERS": "3", "ENDPOINT_WORKERS": "2"}, 2),
        ({"SAGEMAKER_MODEL_SERVER_WORKERS": "3"}, 1),
    ],
    ids=["default", "image-variable", "endpoint-variable-wins", "ignored-in-multi-model-mode"],
)
def test_worker_processes_follow_the_images_workers_per_model_unless_the_endpoints_is_set(
    environ: dict[str, str], workers: int
) -> None:
    # Given the image's per-model worker variable, the endpoint's own, neither, or the variable the image's
    # multi-model server does not read (SAGEMAKER_MODEL_SERVER_WORKERS: serving_mms.py writes MMS's config
    # from SAGEMAKER_NUM_MODEL_WORKERS)
    config = EndpointConfig.from_env({"MODEL_DATA_URL": "s3://bucket/p/", **environ})
    # Then the endpoint runs that many worker processes
    assert config.workers == workers


@pytest.mark.parametrize(
    ("environ", "fragment"),
    [
        ({}, "model data URL is required"),
        ({"MODEL_DATA_URL": "s3://bucket/p/", "ENDPOINT_MAX_MODELS": "many"}, "ENDPOINT_MAX_MODELS"),
        (
            {"MODEL_DATA_URL": "s3://bucket/p/", "SAGEMAKER_NUM_MODEL_WORKERS": "all"},
            "SAGEMAKER_NUM_MODEL_WORKERS",
        ),
        ({"MODEL_DATA_URL": "s3://bucket/p/", "MODEL_CACHE_SETTING": "Sometimes"}, "Enabled or Disabled"),
        ({"MODEL_DATA_URL": "s3://bucket/p/", "ENDPOINT_MAX_MODELS": "0"}, "at least 1"),
        ({"MODEL_DATA_URL": "s3://bucket/p/", "ENDPOINT_NAME": "bad_name"}, "endpoint name"),
        ({"MODEL_DATA_URL": "s3://bucket/p/", "ENDPOINT_SERVING": "docker"}, "managed or dense"),
        (
            {"MODEL_DATA_URL": "s3://bucket/p/", "ENDPOINT_SERVING": "dense", "SAGEMAKER_NUM_MODEL_WORKERS": "2"},
            "--container-workers",
        ),
        ({"MODEL_DATA_URL": "s3://bucket/p/", "ENDPOINT_CONTAINER_WORKERS": "0"}, "container workers"),
    ],
)
def test_bad_settings_name_the_problem(environ: dict[str, str], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        EndpointConfig.from_env(environ)


def test_dense_serving_is_chosen_by_the_environment_with_the_containers_workers() -> None:
    # Given the endpoint told to front the dense container, with 3 container workers
    environ = {"MODEL_DATA_URL": "s3://bucket/p/", "ENDPOINT_SERVING": "dense", "ENDPOINT_CONTAINER_WORKERS": "3"}
    config = EndpointConfig.from_env(environ)
    # Then it is the SageMaker side, and the container gets those workers (the side itself is one process)
    assert (config.serving, config.container_workers, config.workers) == ("dense", 3, 1)
    # And by default it emulates the managed image
    assert EndpointConfig.from_env({"MODEL_DATA_URL": "s3://bucket/p/"}).serving == "managed"


def test_a_client_hanging_up_mid_body_is_not_an_internal_failure() -> None:
    # Given the app called directly over ASGI (no sockets) and a body that never completes
    import asyncio
    import shutil
    from typing import Any

    from endpoint.app import create_app

    app = create_app(EndpointConfig(model_data_url=ModelDataUrl.parse("s3://bucket-x/models/")), s3_client=object())
    messages: list[dict[str, Any]] = [
        {"type": "http.request", "body": b"1,2", "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    path = "/endpoints/local-mme/invocations"
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "", "state": {},
        "headers": [(b"x-amzn-sagemaker-target-model", b"a.tar.gz"), (b"transfer-encoding", b"chunked")],
        "server": ("127.0.0.1", 1), "client": ("127.0.0.1", 2), "app": app,
    }  # fmt: skip
    # When the client disconnects before the body ends
    try:
        asyncio.run(app(scope, receive, send))
    finally:
        shutil.rmtree(app.state.runtime.cache_dir, ignore_errors=True)  # lifespan never ran
    # Then it is counted as a disconnect, never as our InternalFailure
    metrics = app.state.runtime.metrics.render().decode()
    assert 'code="ClientDisconnect"' in metrics
    assert 'code="InternalFailure"' not in metrics
    starts = [message for message in sent if message["type"] == "http.response.start"]
    assert [message["status"] for message in starts] == [400]
