"""scripts/deploy.py (`make deploy`): the plan it prints, the overrides it merges, the region it picks, the preflight
that gates it, the deployment bucket it gets, and a full run against moto."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from moto import mock_aws

from ops.adapters.s3 import BucketState
from ops.deployment import as_list
from ops.preflight import Services
from tests.unit.test_ops_preflight import FakeAccount, retained_from_a_teardown

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


def steps(printed: str) -> list[str]:
    """The plan's commands and upload line, without its leading notes."""
    return [line for line in printed.splitlines() if not line.startswith("# ") or line.startswith("# upload")]


def test_merge_overrides_later_values_win_and_keep_order(deploy: ModuleType) -> None:
    merged = deploy.merge_overrides(["A=1", "B=2", "C=x=y"], "B=3", "D=4")
    assert merged == ("A=1", "C=x=y", "B=3", "D=4")
    with pytest.raises(deploy.DeployError, match="not Key=Value"):
        deploy.merge_overrides(["A"])


def test_samconfig_overrides_are_read_and_never_set_the_source_dir(deploy: ModuleType) -> None:
    config = deploy.read_samconfig()
    overrides = as_list(config["parameter_overrides"])
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
    out = steps(capsys.readouterr().out)
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


@pytest.fixture
def account(monkeypatch: pytest.MonkeyPatch) -> FakeAccount:
    """The account the preflight sees (moto has no Service Quotas): clean, with the deployment bucket."""
    fake = FakeAccount()
    fake.buckets["deploy-bucket"] = BucketState("deploy-bucket", exists=True, accessible=True, region="us-east-1")
    monkeypatch.setattr(Services, "from_session", classmethod(lambda cls, session: fake.services()))
    return fake


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


def test_sams_managed_bucket_is_got_or_created_by_the_sam_clis_own_code(
    deploy: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given no DEPLOY_BUCKET: the SAM CLI's manage_stack (what `sam deploy --resolve-s3` calls) gets or creates it
    from samcli.lib.bootstrap import bootstrap

    calls: list[tuple[str | None, str]] = []

    def manage_stack(profile: str | None, region: str) -> str:
        calls.append((profile, region))
        return "aws-sam-cli-managed-default-samclisourcebucket-1a2b"

    monkeypatch.setattr(bootstrap, "manage_stack", manage_stack)
    assert deploy.sam_managed_bucket("eu-west-1") == "aws-sam-cli-managed-default-samclisourcebucket-1a2b"
    assert calls == [(None, "eu-west-1")]  # the profile comes from AWS_PROFILE, as for sam itself

    # When it cannot, the deploy stops with the alternative, and never suggests `sam deploy --guided` (it would
    # deploy this stack without SourceDirS3Uri)
    def broken(profile: str | None, region: str) -> str:
        raise RuntimeError("Failed to create managed resources: AccessDenied")

    with pytest.raises(deploy.DeployError, match="DEPLOY_BUCKET") as error:
        deploy.sam_managed_bucket("eu-west-1", broken)
    assert "--guided" not in str(error.value)


def test_full_run_packages_uploads_then_builds_and_deploys_that_archive(
    deploy: ModuleType, aws: boto3.Session, account: FakeAccount, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
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
    # And the preflight's decision for the account-wide training log group reaches sam deploy
    assert "ManageTrainingJobsLogGroup=true" in overrides_of(commands[-1])


def test_failed_command_is_reported_with_a_nonzero_exit(
    deploy: ModuleType,
    aws: boto3.Session,
    account: FakeAccount,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
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


# --- the preflight gates the deploy ------------------------------------------------------------------


def recording_runner(deploy: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[tuple[str, ...]]:
    monkeypatch.setattr(deploy, "ROOT", tmp_path)
    commands: list[tuple[str, ...]] = []

    def fake_run(command: Sequence[str], env: dict[str, str]) -> None:
        commands.append(tuple(command))
        if "training.packaging" in command:
            out = tmp_path / command[command.index("--out") + 1]
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(b"archive")

    monkeypatch.setattr(deploy, "run", fake_run)
    return commands


def test_a_failed_preflight_stops_the_deploy_before_anything_changes(
    deploy: ModuleType,
    aws: boto3.Session,
    account: FakeAccount,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given the artifact bucket a deleted stack left behind
    retained_from_a_teardown(account)
    account.buckets["house-prices-mme-123456789012-us-east-1"] = account.buckets.pop(
        "house-prices-mme-123456789012-eu-west-1"
    )
    commands = recording_runner(deploy, monkeypatch, tmp_path)
    # When make deploy runs
    code = deploy.main(["--region", "us-east-1", "--bucket", "deploy-bucket"], {})
    # Then it stops with the problem and its fix, and ran, uploaded and deployed nothing
    captured = capsys.readouterr()
    assert code == 2
    assert commands == []
    assert "FAIL  artifact bucket" in captured.out
    assert "fix: keep its models" in captured.out
    assert "the preflight failed" in captured.err


def test_an_explicit_log_group_choice_reaches_sam_unchanged(
    deploy: ModuleType, aws: boto3.Session, account: FakeAccount, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    aws.client("s3").create_bucket(Bucket="deploy-bucket")
    commands = recording_runner(deploy, monkeypatch, tmp_path)
    argv = ["--region", "us-east-1", "--bucket", "deploy-bucket", "--parameter-override"]
    assert deploy.main([*argv, "ManageTrainingJobsLogGroup=false"], {}) == 0
    assert [o for o in overrides_of(commands[-1]) if o.startswith("Manage")] == ["ManageTrainingJobsLogGroup=false"]


def test_skipping_the_preflight_leaves_the_log_group_parameter_to_the_stack(
    deploy: ModuleType, aws: boto3.Session, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def forbidden(cls: Any, session: Any) -> Any:
        raise AssertionError("SKIP_PREFLIGHT=1 must not check anything")

    monkeypatch.setattr(Services, "from_session", classmethod(forbidden))
    aws.client("s3").create_bucket(Bucket="deploy-bucket")
    commands = recording_runner(deploy, monkeypatch, tmp_path)
    assert deploy.main(["--region", "us-east-1", "--bucket", "deploy-bucket"], {"SKIP_PREFLIGHT": "1"}) == 0
    # Not passed: a new stack gets the template default (false, never fails), an existing one its previous value
    assert not any(o.startswith("ManageTrainingJobsLogGroup") for o in overrides_of(commands[-1]))


def test_without_a_deployment_bucket_sams_managed_one_is_used_or_created(
    deploy: ModuleType, aws: boto3.Session, account: FakeAccount, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from ops.adapters.cloudformation import StackInfo

    recording_runner(deploy, monkeypatch, tmp_path)
    created: list[str] = []
    sam_bucket = "aws-sam-cli-managed-default-samclisourcebucket-1a2b"
    aws.client("s3").create_bucket(Bucket=sam_bucket)

    def manage_stack(profile: str | None, region: str) -> str:
        created.append(region)
        return sam_bucket

    config = deploy.parse_args(["--region", "us-east-1"], {})[1]
    # Given no SAM stack yet: the deploy has the SAM CLI create it (not `sam deploy --guided`)
    assert deploy.deploy(config, {}, manage_stack=manage_stack) == 0
    assert created == ["us-east-1"]
    # Given the stack: the preflight found its bucket, nothing is created
    account.stacks["aws-sam-cli-managed-default"] = StackInfo(
        "aws-sam-cli-managed-default", "CREATE_COMPLETE", outputs={"SourceBucket": sam_bucket}
    )
    assert deploy.deploy(config, {}, manage_stack=manage_stack) == 0
    assert created == ["us-east-1"]


# --- the region ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "environ", "profile", "region"),
    [
        ([], {"AWS_PROFILE": "dev"}, "eu-central-1", "eu-central-1"),  # the profile's region
        ([], {"AWS_DEFAULT_REGION": "eu-west-3"}, "eu-central-1", "eu-west-3"),
        ([], {"AWS_REGION": "ap-south-1", "AWS_DEFAULT_REGION": "eu-west-3"}, None, "ap-south-1"),
        ([], {"REGION": "sa-east-1", "AWS_REGION": "ap-south-1"}, None, "sa-east-1"),  # make deploy REGION=
        (["--region", "ca-central-1"], {"REGION": "sa-east-1"}, None, "ca-central-1"),
    ],
)
def test_the_deploy_goes_to_the_users_region(
    deploy: ModuleType, argv: list[str], environ: dict[str, str], profile: str | None, region: str
) -> None:
    _, config = deploy.parse_args(argv, environ, lambda: profile)
    plan = deploy.make_plan(config, "b", "abc123")
    assert plan.build[plan.build.index("--region") + 1] == region
    assert plan.deploy[plan.deploy.index("--region") + 1] == region


def test_no_region_anywhere_stops_the_deploy(deploy: ModuleType) -> None:
    with pytest.raises(deploy.DeployError, match="no region"):
        deploy.parse_args([], {}, lambda: None)


def test_samconfig_pins_no_region_and_has_a_dev_and_a_prod_environment(deploy: ModuleType) -> None:
    config = tomllib.loads((ROOT / "samconfig.toml").read_text())
    assert set(config) - {"version"} == {"default", "prod"}
    for env, section in config.items():
        if env == "version":
            continue
        for command in section.values():
            assert "region" not in command.get("parameters", {}), env
        # every command section of dev exists for prod too (build_in_source is needed by model-sync's build)
        assert set(section) - {"local_invoke"} == set(config["default"]) - {"local_invoke"}, env
    _, prod = deploy.parse_args(["--region", "eu-west-1", "--config-env", "prod"], {})
    plan = deploy.make_plan(prod, "b", "abc123")
    assert plan.build[-2:] == ("--config-env", "prod")
    assert plan.deploy[2:4] == ("--config-env", "prod")
    assert "MinInstanceCount=2" in overrides_of(plan.deploy)
    assert prod.stack_name == "house-prices-mme-prod"


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
@pytest.mark.parametrize(
    ("variables", "environ", "region"),
    [
        ([], {"AWS_PROFILE": "dev"}, "eu-central-1"),  # the Makefile's own AWS_DEFAULT_REGION must not win
        (["REGION=eu-west-2"], {"AWS_PROFILE": "dev"}, "eu-west-2"),
        ([], {"AWS_PROFILE": "dev", "AWS_REGION": "ap-south-1"}, "ap-south-1"),
        ([], {"AWS_DEFAULT_REGION": "us-west-2"}, "us-west-2"),
    ],
)
def test_make_deploy_respects_the_profiles_or_environments_region(
    tmp_path: Path, variables: list[str], environ: dict[str, str], region: str
) -> None:
    # Given a profile with its own region and none of the region variables set unless the case says so
    config = tmp_path / "config"
    config.write_text("[profile dev]\nregion = eu-central-1\n")
    env = {k: v for k, v in os.environ.items() if k not in {"AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"}}
    env.update(AWS_CONFIG_FILE=str(config), **environ)
    # When make deploy prints its plan (STAMP= : no venv rebuild; this interpreter runs the script)
    result = subprocess.run(
        ["make", "-s", "--no-print-directory", "deploy", "DRY_RUN=1", "STAMP=", f"PYTHON={sys.executable}", *variables],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    # Then sam builds and deploys in the user's region
    assert result.returncode == 0, result.stderr
    build = next(line for line in result.stdout.splitlines() if " build " in line)
    assert build.endswith(f"sam build --region {region}")
