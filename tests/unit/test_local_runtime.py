"""local.lambda_runtime, local.dispatcher helpers and local.stack planning (no sockets, no processes)."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from unittest.mock import patch

import pytest

from local.dispatcher import backoff_seconds, is_test_event
from local.lambda_runtime import LambdaContext, env_file_overrides, load_handler, stack_client_environment
from local.stack import StackConfig, plan_stack
from local.template import DEFAULT_TEMPLATE, FunctionSpec, Template, TemplateError


def _function(tmp_path: Path, handler: str = "fake_fn.handler") -> FunctionSpec:
    return FunctionSpec(
        logical_id="Fake",
        function_name="stack-Fake",
        code_uri=tmp_path,
        handler=handler,
        runtime="python3.13",
        timeout=3,
        memory_size=256,
        environment={"TABLE": "t1", "AWS_REGION": "eu-west-1"},
    )


def test_context_has_the_lambda_attributes() -> None:
    # Given a context for a function with a 2 s timeout
    context = LambdaContext(
        function_name="fn",
        memory_limit_in_mb=512,
        timeout_seconds=2,
        invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:fn",
    )
    # Then it carries what handlers and Powertools read
    assert context.function_version == "$LATEST"
    assert context.log_group_name == "/aws/lambda/fn"
    assert "[$LATEST]" in context.log_stream_name
    assert len(context.aws_request_id) == 36
    remaining = context.get_remaining_time_in_millis()
    assert 1900 < remaining <= 2000
    time.sleep(0.05)
    assert context.get_remaining_time_in_millis() < remaining


def test_each_invocation_gets_a_new_request_id(tmp_path: Path) -> None:
    function = _function(tmp_path)
    first = LambdaContext.for_function(function, "us-east-1", "123456789012")
    second = LambdaContext.for_function(function, "us-east-1", "123456789012")
    assert first.aws_request_id != second.aws_request_id
    assert first.invoked_function_arn == "arn:aws:lambda:us-east-1:123456789012:function:stack-Fake"
    assert first.memory_limit_in_mb == 256


def test_load_handler_sets_the_environment_before_import(tmp_path: Path) -> None:
    # Given a handler module that reads its environment at import time, like real handlers do
    (tmp_path / "fake_fn.py").write_text(
        "import os\nTABLE = os.environ['TABLE']\ndef handler(e, c):\n    return TABLE\n"
    )
    sys.modules.pop("fake_fn", None)
    try:
        with patch.dict(os.environ):
            handler = load_handler(_function(tmp_path), "us-east-1", {"AWS_ENDPOINT_URL_S3": "http://x"})
            environ = dict(os.environ)
        # Then the template's variables, Lambda's own and the sandbox extras are all set
        assert handler({}, None) == "t1"
        assert environ["AWS_LAMBDA_FUNCTION_NAME"] == "stack-Fake"
        assert environ["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"
        assert environ["AWS_SAM_LOCAL"] == "true"
        assert environ["AWS_ENDPOINT_URL_S3"] == "http://x"
        # and the template's value wins over the region the sandbox would set
        assert environ["AWS_REGION"] == "eu-west-1"
    finally:
        sys.modules.pop("fake_fn", None)
        sys.path.remove(str(tmp_path))


def test_missing_handler_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "fake_fn2.py").write_text("VALUE = 1\n")
    try:
        with patch.dict(os.environ), pytest.raises(TemplateError, match=r"'fake_fn2\.nope' is not a callable"):
            load_handler(_function(tmp_path, "fake_fn2.nope"), "us-east-1")
        with patch.dict(os.environ), pytest.raises(TemplateError, match="cannot import handler module 'absent_mod'"):
            load_handler(_function(tmp_path, "absent_mod.handler"), "us-east-1")
    finally:
        sys.modules.pop("fake_fn2", None)
        sys.path.remove(str(tmp_path))


def test_env_file_overrides_follow_sam_semantics(tmp_path: Path) -> None:
    path = tmp_path / "env.json"
    path.write_text(json.dumps({"Parameters": {"A": "all", "B": "all"}, "Fake": {"B": "mine", "N": 3}}))
    assert env_file_overrides(path, "Fake") == {"A": "all", "B": "mine", "N": "3"}
    assert env_file_overrides(tmp_path / "absent.json", "Fake") == {}


def test_stack_file_points_boto3_at_the_local_services() -> None:
    stack = {"s3_endpoint_url": "http://127.0.0.1:1", "endpoint_url": "http://127.0.0.1:2", "region": "us-east-1"}
    env = stack_client_environment(stack)
    assert env["AWS_ENDPOINT_URL_S3"] == env["AWS_ENDPOINT_URL_DYNAMODB"] == "http://127.0.0.1:1"
    assert env["AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME"] == "http://127.0.0.1:2"


@pytest.mark.parametrize(("count", "expected"), [(1, 2), (2, 4), (3, 8), (10, 30)])
def test_backoff_doubles_up_to_the_cap(count: int, expected: int) -> None:
    assert backoff_seconds(count, base=2, cap=30) == expected


def test_s3_test_event_is_recognised() -> None:
    assert is_test_event({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "b"})
    assert not is_test_event({"Records": []})
    assert not is_test_event(["s3:TestEvent"])


def test_stack_plan_from_the_real_template() -> None:
    if not DEFAULT_TEMPLATE.is_file():
        pytest.skip("template.yaml not written yet")
    # Given the project's template and the default local stack
    plan = plan_stack(Template.load(), StackConfig())
    # Then every name the stack needs is resolved from it
    assert plan.api_function.logical_id == "RouterFunction"
    assert [f.logical_id for f in plan.event_functions] == ["ModelSyncFunction", "QualityFunction"]
    # QualityFunction also reads FeedbackQueue (an SQS event), whose !Ref is its URL as on AWS
    assert [f.logical_id for f in plan.queue_functions] == ["QualityFunction"]
    assert plan.queue_urls["FeedbackQueue"].endswith("/123456789012/house-prices-local-FeedbackQueue")
    assert plan.bucket == plan.event_functions[0].environment["ARTIFACT_BUCKET"]
    assert plan.registry_table in plan.tables
    assert plan.model_data_url == f"s3://{plan.bucket}/{plan.prefix}/multi_model_artifacts/"
    assert plan.endpoint_environment["SAGEMAKER_PROGRAM"] == "inference.py"
    # And the endpoint emulates the serving stack of the image tag the template deploys
    assert (
        plan.endpoint_environment["SAGEMAKER_SKLEARN_VERSION"]
        == Template.load().parameter_defaults["SklearnImageVersion"]
    )


def test_stack_plan_follows_the_templates_image_version() -> None:
    # Given the template deployed with the older inference image
    plan = plan_stack(Template.load(), StackConfig(parameters={"SklearnImageVersion": "1.2-1"}))
    # Then the local endpoint is told to emulate that tag
    assert plan.endpoint_environment["SAGEMAKER_SKLEARN_VERSION"] == "1.2-1"


def test_the_template_parameter_sets_the_managed_images_workers_per_model() -> None:
    # Given the template deployed with two model-server workers per model
    plan = plan_stack(Template.load(), StackConfig(parameters={"ModelWorkersPerModel": "2"}))
    # Then the local endpoint gets the variable the image's multi-model server reads, as the image would
    assert plan.endpoint_environment["SAGEMAKER_NUM_MODEL_WORKERS"] == "2"
    # And by default one, the image's own default
    assert plan_stack(Template.load(), StackConfig()).endpoint_environment["SAGEMAKER_NUM_MODEL_WORKERS"] == "1"


def test_the_variable_the_image_ignores_in_multi_model_mode_does_not_reach_the_endpoint(tmp_path: Path) -> None:
    # Given the template with SAGEMAKER_MODEL_SERVER_WORKERS on the Model (the single-model servers' variable)
    source = DEFAULT_TEMPLATE.read_text()
    anchor = "          SAGEMAKER_PROGRAM: inference.py\n"
    assert anchor in source
    template = tmp_path / "template.yaml"
    template.write_text(source.replace(anchor, anchor + '          SAGEMAKER_MODEL_SERVER_WORKERS: "4"\n'))
    # When the local stack is planned from it
    plan = plan_stack(Template.load(template), StackConfig(template_path=template))
    # Then the endpoint does not see it: in multi-model mode the image does not read it either
    assert "SAGEMAKER_MODEL_SERVER_WORKERS" not in plan.endpoint_environment
    assert plan.endpoint_environment["SAGEMAKER_NUM_MODEL_WORKERS"] == "1"


@pytest.mark.parametrize(("reserved", "cpus", "size"), [(None, 2, 4), (None, 1, 2), (3, 8, 3), (100, 2, 4)])
def test_the_sandbox_pool_is_sized_to_the_machine_and_capped_by_reserved_concurrency(
    reserved: int | None, cpus: int, size: int
) -> None:
    from dataclasses import replace

    from local.sandboxes import default_pool_size

    function = replace(_function(Path(".")), reserved_concurrency=reserved)
    assert default_pool_size(function, cpus=cpus) == size
