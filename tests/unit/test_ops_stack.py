"""A deployed stack's outputs: `python -m ops outputs` and `training.jobs --stack NAME` (moto CloudFormation)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws

from ops.cli import main as ops_main
from ops.errors import StackNotFound
from ops.stack import DeployedStack, StackOutputsError, apply_stack, deployed_stack
from training import jobs

REGION = "eu-west-1"
STACK = "house-prices-mme"
BUCKET = f"house-prices-mme-123456789012-{REGION}"
ROLE = "arn:aws:iam::123456789012:role/house-prices-mme-SageMakerTrainingRole-A1"
OUTPUTS = {
    "ArtifactBucketName": BUCKET,
    "TrainingOutputPrefix": f"s3://{BUCKET}/CUSTOM_PREFIX/model_artifacts/",
    "TrainingRoleArn": ROLE,
    "EndpointName": "house-prices-mme",
}


@pytest.fixture
def deployed(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A stack in eu-west-1 whose outputs are template.yaml's (values fixed), the shell's region elsewhere."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_REGION", raising=False)
    with mock_aws():
        boto3.client("cloudformation", region_name=REGION).create_stack(
            StackName=STACK,
            TemplateBody=json.dumps(
                {
                    "Resources": {"Queue": {"Type": "AWS::SQS::Queue"}},
                    "Outputs": {k: {"Value": v, "Description": f"the {k}"} for k, v in OUTPUTS.items()},
                }
            ),
        )
        yield


def test_the_stacks_outputs_name_bucket_prefix_and_training_role(deployed: None) -> None:
    stack = deployed_stack(STACK, region=REGION)
    assert (stack.bucket, stack.prefix, stack.training_role_arn, stack.region) == (
        BUCKET,
        "CUSTOM_PREFIX",
        ROLE,
        REGION,
    )
    with pytest.raises(StackNotFound, match="does not exist in us-east-1"):
        deployed_stack(STACK)  # the shell's region, where it is not


def test_a_malformed_or_missing_output_is_named() -> None:
    stack = DeployedStack("s", REGION, {"ArtifactBucketName": "b", "TrainingOutputPrefix": "s3://other/x/"}, {})
    with pytest.raises(StackOutputsError, match="is not s3://b/PREFIX/model_artifacts/"):
        _ = stack.prefix
    with pytest.raises(StackOutputsError, match="has no output TrainingRoleArn"):
        _ = stack.training_role_arn


def test_training_jobs_takes_bucket_prefix_role_and_region_from_the_stack(deployed: None) -> None:
    # Given --stack and --region only
    arguments = ["--all-notebook-cities", "--mode", "sagemaker", "--stack", STACK, "--region", REGION]
    args = jobs._parser().parse_args(arguments)
    apply_stack(args)
    # Then everything a SageMaker run needs comes from the outputs
    assert (args.bucket, args.prefix, args.role_arn, args.region) == (BUCKET, "CUSTOM_PREFIX", ROLE, REGION)


def test_flags_given_explicitly_win_over_the_stack(deployed: None) -> None:
    argv = ["--cities", "Chicago_IL", "--stack", STACK, "--region", REGION, "--bucket", "mine", "--prefix", "MINE"]
    args = jobs._parser().parse_args(argv)
    apply_stack(args)
    assert (args.bucket, args.prefix, args.role_arn) == ("mine", "MINE", ROLE)


def test_without_a_stack_only_the_prefix_default_is_filled() -> None:
    args = jobs._parser().parse_args(["--cities", "Chicago_IL"])
    apply_stack(args)
    assert (args.bucket, args.prefix, args.role_arn, args.region) == (None, "DEMO_MME_SCIKIT_V1", None, None)


def test_training_jobs_with_an_unknown_stack_is_one_line_not_a_traceback(
    deployed: None, capsys: pytest.CaptureFixture[str]
) -> None:
    code = jobs.main(["--cities", "Chicago_IL", "--mode", "sagemaker", "--stack", "nope", "--region", REGION])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1
    assert "stack nope does not exist in eu-west-1" in err


def test_ops_outputs_prints_every_output_or_one_value(deployed: None, capsys: pytest.CaptureFixture[str]) -> None:
    # Given the stack, when the outputs are asked for by name of the stack
    assert ops_main(["--stack", STACK, "outputs", "--region", REGION]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"Outputs of {STACK} ({REGION}):"
    assert f"  TrainingRoleArn       {ROLE}" in lines
    # One value, bare, for $(python -m ops outputs KEY)
    assert ops_main(["--stack", STACK, "outputs", "ArtifactBucketName", "--region", REGION]) == 0
    assert capsys.readouterr().out == f"{BUCKET}\n"
    # JSON for scripts
    assert ops_main(["--json", "--stack", STACK, "outputs", "--region", REGION]) == 0
    assert json.loads(capsys.readouterr().out)["outputs"] == OUTPUTS


def test_ops_outputs_defaults_to_samconfigs_stack_and_explains_a_missing_one(
    deployed: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert ops_main(["outputs", "--region", REGION]) == 0  # samconfig.toml [default]: house-prices-mme
    capsys.readouterr()
    assert ops_main(["outputs", "--config-env", "prod", "--region", REGION]) == 1
    assert "stack house-prices-mme-prod does not exist in eu-west-1" in capsys.readouterr().err
    assert ops_main(["--stack", STACK, "outputs", "NoSuchOutput", "--region", REGION]) == 1
    assert "has no output NoSuchOutput" in capsys.readouterr().err
