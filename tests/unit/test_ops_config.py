"""Where the operator CLI finds bucket, prefix and table (flags > env > .local/stack.json)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ops.config import ConfigError, resolve


def _stack_file(tmp_path: Path, **content: object) -> Path:
    """``.local/stack.json`` as ``make up`` writes it (``content`` replaces its fields), in ``tmp_path``."""
    path = tmp_path / "stack.json"
    fields = {
        "s3_endpoint_url": "http://127.0.0.1:4566",
        "region": "eu-west-1",
        "bucket": "stack-bucket",
        "prefix": "STACK_PREFIX",
        "registry_table": "stack-table",
    }
    path.write_text(json.dumps({**fields, **content}))
    return path


def test_stack_file_fills_gaps_and_points_boto3_at_the_local_endpoints(tmp_path: Path) -> None:
    environ: dict[str, str] = {}
    config = resolve(None, None, None, _stack_file(tmp_path), environ)
    assert (config.bucket, config.layout.prefix, config.registry_table) == (
        "stack-bucket",
        "STACK_PREFIX",
        "stack-table",
    )
    assert environ["AWS_ENDPOINT_URL_S3"] == "http://127.0.0.1:4566"
    assert environ["AWS_ENDPOINT_URL_DYNAMODB"] == "http://127.0.0.1:4566"
    assert environ["AWS_DEFAULT_REGION"] == "eu-west-1"


def test_flags_beat_env_beat_stack_file(tmp_path: Path) -> None:
    environ = {"ARTIFACT_BUCKET": "env-bucket", "REGISTRY_TABLE": "env-table", "AWS_ENDPOINT_URL_S3": "http://x:1"}
    config = resolve(None, "FLAG_PREFIX", "flag-table", _stack_file(tmp_path), environ)
    assert (config.bucket, config.layout.prefix, config.registry_table) == ("env-bucket", "FLAG_PREFIX", "flag-table")
    assert environ["AWS_ENDPOINT_URL_S3"] == "http://x:1"


def test_without_anything_the_error_says_where_to_look(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = resolve(None, None, None, None, {})
    assert config.layout.prefix == "DEMO_MME_SCIKIT_V1"
    with pytest.raises(ConfigError, match="--bucket, set ARTIFACT_BUCKET"):
        config.require_bucket()
    with pytest.raises(ConfigError, match="does not exist"):
        resolve(None, None, None, tmp_path / "missing.json", {})
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ConfigError, match="cannot read"):
        resolve(None, None, None, tmp_path / "broken.json", {})


def test_stack_file_names_the_failure_queue_alarm_prefix_and_local_endpoints(tmp_path: Path) -> None:
    path = _stack_file(
        tmp_path,
        queues={"ModelSyncFunction": {"queue_url": "q", "on_failure_url": "http://127.0.0.1:4566/1/dlq"}},
        resources={"stack_name": "house-prices-local"},
    )
    environ: dict[str, str] = {}
    config = resolve(None, None, None, path, environ)
    assert config.failure_queue_url == "http://127.0.0.1:4566/1/dlq"
    assert config.alarm_prefix == "house-prices-local-"
    assert environ["AWS_ENDPOINT_URL_SQS"] == "http://127.0.0.1:4566"
    assert environ["AWS_ENDPOINT_URL_CLOUDWATCH"] == "http://127.0.0.1:4566"


def test_deployed_stack_outputs_fill_gaps_and_keep_the_local_stack_file_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a local stack file in the working directory and a deployed stack's outputs
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".local").mkdir()
    _stack_file(tmp_path).rename(tmp_path / ".local" / "stack.json")
    outputs = {
        "ArtifactBucketName": "aws-bucket",
        "RegistryTableName": "aws-table",
        "ModelSyncDeadLetterQueueUrl": "https://sqs.us-east-1.amazonaws.com/1/dlq",
        "AlarmNamePrefix": "house-prices-",
    }
    environ: dict[str, str] = {"REGISTRY_TABLE": "env-table"}
    config = resolve(None, None, None, None, environ, stack_outputs=outputs)
    # Then the outputs fill what env leaves open, and no local endpoint leaks in
    assert (config.bucket, config.registry_table) == ("aws-bucket", "env-table")
    assert config.failure_queue_url == "https://sqs.us-east-1.amazonaws.com/1/dlq"
    assert config.alarm_prefix == "house-prices-"
    assert not [name for name in environ if name.startswith("AWS_ENDPOINT_URL")]
