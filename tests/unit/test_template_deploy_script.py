"""scripts/deploy.py: the plan it prints, the overrides it merges, and a full run against moto."""

from __future__ import annotations

import hashlib
import importlib.util
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from moto import mock_aws

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def deploy() -> ModuleType:
    spec = importlib.util.spec_from_file_location("deploy_script", ROOT / "scripts" / "deploy.py")
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def overrides_of(command: Sequence[str]) -> list[str]:
    start = command.index("--parameter-overrides") + 1
    return [item for item in command[start:] if "=" in item and not item.startswith("-")]


def test_merge_overrides_later_values_win_and_keep_order(deploy: ModuleType) -> None:
    merged = deploy.merge_overrides(["A=1", "B=2", "C=x=y"], "B=3", "D=4")
    assert merged == ("A=1", "C=x=y", "B=3", "D=4")
    with pytest.raises(deploy.DeployError, match="not Key=Value"):
        deploy.merge_overrides(["A"])


def test_samconfig_overrides_are_read_and_never_set_the_source_dir(deploy: ModuleType) -> None:
    config = deploy.read_samconfig()
    overrides = deploy._as_list(config["parameter_overrides"])
    assert "AuthType=AWS_IAM" in overrides
    assert not any(item.startswith("SourceDirS3Uri=") for item in overrides)
    assert config["stack_name"] == "house-prices-mme"
    assert config["capabilities"] == "CAPABILITY_IAM"


def test_dry_run_prints_every_step_and_runs_nothing(
    deploy: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Given --dry-run, when main runs, then it prints package/upload/build/deploy and never starts a
    process or creates an AWS client."""

    def forbidden(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("dry run must not run anything")

    monkeypatch.setattr(subprocess, "run", forbidden)
    monkeypatch.setattr(boto3, "Session", forbidden)
    code = deploy.main(
        ["--dry-run", "--region", "eu-west-1", "--parameter-override", "AuthType=NONE"], {"DEPLOY_BUCKET": "my-deploy"}
    )
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert out[0].endswith("-m training.packaging sourcedir --out build/sourcedir.tar.gz")
    assert "s3://my-deploy/house-prices-mme/code/sourcedir-" in out[1]
    assert out[2].endswith("sam build --region eu-west-1")
    assert " deploy --region eu-west-1 --stack-name house-prices-mme --parameter-overrides " in out[3]
    assert "AuthType=NONE" in out[3]
    assert "AuthType=AWS_IAM" not in out[3]
    assert "SourceDirS3Uri=s3://my-deploy/house-prices-mme/code/sourcedir-" in out[3]


def test_plan_puts_the_digest_in_the_key_and_passes_it_as_source_dir(deploy: ModuleType) -> None:
    config = deploy.DeployConfig(
        region="us-west-2",
        bucket="b",
        stack_name="s",
        s3_prefix="pre/",
        parameter_overrides=("SourceDirS3Uri=s3://stale/old.tar.gz", "AuthType=NONE"),
        extra_deploy_args=("--no-confirm-changeset",),
        python="py",
        sam="sam",
    )
    plan = deploy.make_plan(config, "b", "abc123")
    assert plan.key == "pre/code/sourcedir-abc123.tar.gz"
    assert plan.package == ("py", "-m", "training.packaging", "sourcedir", "--out", "build/sourcedir.tar.gz")
    assert plan.build == ("sam", "build", "--region", "us-west-2")
    assert overrides_of(plan.deploy) == ["AuthType=NONE", "SourceDirS3Uri=s3://b/pre/code/sourcedir-abc123.tar.gz"]
    assert plan.deploy[-1] == "--no-confirm-changeset"


@pytest.fixture
def aws() -> Iterator[boto3.Session]:
    with mock_aws():
        yield boto3.Session(region_name="us-east-1")


def test_upload_is_skipped_when_the_content_addressed_key_exists(
    deploy: ModuleType, aws: boto3.Session, tmp_path: Path
) -> None:
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="deploy-bucket")
    archive = tmp_path / "sourcedir.tar.gz"
    archive.write_bytes(b"archive bytes")
    assert deploy.upload_if_missing(s3, archive, "deploy-bucket", "k/sourcedir.tar.gz") is True
    assert deploy.upload_if_missing(s3, archive, "deploy-bucket", "k/sourcedir.tar.gz") is False
    stored = s3.get_object(Bucket="deploy-bucket", Key="k/sourcedir.tar.gz")
    assert stored["Body"].read() == b"archive bytes"
    assert stored["ServerSideEncryption"] == "AES256"


def test_sam_managed_bucket_is_found_or_explained(deploy: ModuleType, aws: boto3.Session) -> None:
    cloudformation = aws.client("cloudformation")
    with pytest.raises(deploy.DeployError, match="DEPLOY_BUCKET"):
        deploy.sam_managed_bucket(cloudformation)
    cloudformation.create_stack(
        StackName=deploy.SAM_MANAGED_STACK,
        TemplateBody=(
            '{"Resources": {"SamCliSourceBucket": {"Type": "AWS::S3::Bucket"}},'
            ' "Outputs": {"SourceBucket": {"Value": {"Ref": "SamCliSourceBucket"}}}}'
        ),
    )
    bucket = deploy.sam_managed_bucket(cloudformation)
    assert bucket in {b["Name"] for b in aws.client("s3").list_buckets()["Buckets"]}


def test_full_run_packages_uploads_then_builds_and_deploys_that_archive(
    deploy: ModuleType, aws: boto3.Session, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Given a deployment bucket, when deploy runs (processes recorded, AWS mocked), then the archive the
    package step wrote is in S3 under its sha256 and sam deploy receives exactly that S3 URI."""
    aws.client("s3").create_bucket(Bucket="deploy-bucket")
    monkeypatch.setattr(deploy, "ROOT", tmp_path)
    archive_bytes = b"\x1f\x8b fake sourcedir"
    commands: list[tuple[str, ...]] = []

    def fake_run(command: Sequence[str], env: dict[str, str]) -> None:
        commands.append(tuple(command))
        assert env["PATH"].split(":")[0] == str(Path(sys.executable).parent)
        if "training.packaging" in command:
            out = tmp_path / command[command.index("--out") + 1]
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(archive_bytes)

    monkeypatch.setattr(deploy, "run", fake_run)
    code = deploy.main(["--region", "us-east-1", "--bucket", "deploy-bucket"], {"PATH": "/usr/bin"})
    assert code == 0
    assert [c[1] if c[1] != "-m" else c[2] for c in commands] == ["training.packaging", "build", "deploy"]
    digest = hashlib.sha256(archive_bytes).hexdigest()
    key = f"house-prices-mme/code/sourcedir-{digest[:12]}.tar.gz"
    assert aws.client("s3").get_object(Bucket="deploy-bucket", Key=key)["Body"].read() == archive_bytes
    assert f"SourceDirS3Uri=s3://deploy-bucket/{key}" in overrides_of(commands[-1])


def test_failed_command_is_reported_with_a_nonzero_exit(
    deploy: ModuleType, aws: boto3.Session, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def failing_run(command: Sequence[str], env: dict[str, str]) -> None:
        raise subprocess.CalledProcessError(3, list(command))

    monkeypatch.setattr(deploy, "run", failing_run)
    assert deploy.main(["--bucket", "deploy-bucket"], {}) == 1
    assert "exited with 3" in capsys.readouterr().err


DENSE_IMAGE = "111122223333.dkr.ecr.eu-west-1.amazonaws.com/house-prices/dense-mme:1"


@pytest.mark.parametrize(
    ("argv", "environ", "expected"),
    [
        ([], {}, None),  # not passed: the default (managed) for a new stack, the previous value for an existing one
        ([], {"SERVING_IMAGE_URI": DENSE_IMAGE}, DENSE_IMAGE),  # make deploy SERVING_IMAGE_URI=...
        (["--serving-image-uri", DENSE_IMAGE], {"SERVING_IMAGE_URI": "ignored"}, DENSE_IMAGE),
        ([], {"SERVING_IMAGE_URI": "managed"}, ""),  # back to the managed scikit-learn image
        # An explicit --parameter-override wins over the serving image flag
        (["--serving-image-uri", DENSE_IMAGE, "--parameter-override", "ServingImageUri="], {}, ""),
    ],
)
def test_serving_image_uri_becomes_the_serving_image_parameter(
    deploy: ModuleType, argv: list[str], environ: dict[str, str], expected: str | None
) -> None:
    from samcli.cli.types import CfnParameterOverridesType

    # Given the serving image from the flag or the environment, when the deploy is planned
    _, config = deploy.parse_args(["--region", "eu-west-1", *argv], environ)
    deploy.check_serving_image(config.parameter_overrides, config.region)
    command = deploy.make_plan(config, "b", "abc123").deploy
    # Then the SAM CLI, parsing the arguments it is given, sees it as ServingImageUri or not at all
    parsed = CfnParameterOverridesType().convert(tuple(overrides_of(command)), None, None)
    assert parsed.get("ServingImageUri") == expected
    assert parsed["SourceDirS3Uri"] == "s3://b/house-prices-mme/code/sourcedir-abc123.tar.gz"


def test_a_serving_image_from_another_region_is_refused_before_anything_runs(
    deploy: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given an image pushed to eu-west-1 and a stack in us-east-1
    code = deploy.main(["--dry-run", "--region", "us-east-1", "--serving-image-uri", DENSE_IMAGE], {})
    # Then the deploy stops with the reason: SageMaker pulls from the endpoint's region only
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    assert "is not an ECR image in us-east-1" in captured.err
