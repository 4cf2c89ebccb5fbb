"""`python -m ops preflight`: would `make deploy` work in this account and region? The checks against a fake
account (every case the docs promise), then each adapter against botocore's Stubber or moto."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError, NoCredentialsError
from botocore.stub import Stubber
from moto import mock_aws

from house_prices.errors import DependencyFailure
from ops import preflight as preflight_module
from ops.adapters.cloudformation import StackInfo, Stacks
from ops.adapters.ecr import Images, image_id
from ops.adapters.identity import CallerIdentity, Identity
from ops.adapters.logs import LogGroupInfo, LogGroups
from ops.adapters.quotas import Quota, ServiceQuotas
from ops.adapters.s3 import Buckets, BucketState
from ops.cli import main
from ops.deployment import ConfigEnvError, parse_overrides, resolve_region, template_defaults
from ops.errors import AccessDenied, NoCredentials, NoRegion, aws_error
from ops.preflight import FAIL, OK, SKIP, WARN, Finding, Report, Request, Services, preflight

ACCOUNT = "123456789012"
REGION = "eu-west-1"
STACK = "house-prices-mme"
TRAINING_GROUP = "/aws/sagemaker/TrainingJobs"
ARTIFACT_BUCKET = f"house-prices-mme-{ACCOUNT}-{REGION}"
SAM_BUCKET = "aws-sam-cli-managed-default-samclisourcebucket-1a2b3c"
ENDPOINT_QUOTA = "ml.m5.large for endpoint usage"
TRAINING_QUOTA = "ml.m5.large for training job usage"
DEV = {"MinInstanceCount": "1", "MaxInstanceCount": "2"}


@dataclass
class FakeAccount:
    """One AWS account and region as the preflight's adapters would see it."""

    credentials: bool = True
    stacks: dict[str, StackInfo] = field(default_factory=dict)
    owned: dict[str, dict[str, str]] = field(default_factory=dict)
    quotas: dict[str, Quota] = field(
        default_factory=lambda: {
            ENDPOINT_QUOTA: Quota(ENDPOINT_QUOTA, "L-ENDPT", 8, applied=False),
            TRAINING_QUOTA: Quota(TRAINING_QUOTA, "L-TRAIN", 4, applied=False),
        }
    )
    quotas_denied: bool = False
    log_groups: dict[str, LogGroupInfo] = field(default_factory=dict)
    buckets: dict[str, BucketState] = field(default_factory=dict)
    images: set[str] = field(default_factory=set)
    asked_quotas: list[str] = field(default_factory=list)

    # the ports
    def caller(self) -> CallerIdentity:
        if not self.credentials:
            raise NoCredentials("no usable AWS credentials: Unable to locate credentials")
        return CallerIdentity(ACCOUNT, f"arn:aws:sts::{ACCOUNT}:assumed-role/Deployer/me")

    def describe(self, name: str) -> StackInfo | None:
        return self.stacks.get(name)

    def physical_ids(self, name: str) -> dict[str, str]:
        return dict(self.owned.get(name, {}))

    def find(self, name: str) -> Any:
        if name.startswith("/"):
            return self.log_groups.get(name)
        self.asked_quotas.append(name)
        if self.quotas_denied:
            raise AccessDenied("servicequotas:ListServiceQuotas", "denied")
        return self.quotas.get(name)

    def state(self, name: str) -> BucketState:
        return self.buckets.get(name, BucketState(name, exists=False, accessible=False, region=None))

    def exists(self, uri: str) -> bool:
        return uri in self.images

    def services(self) -> Services:
        return Services(self, self, self, self, self, self)


def check(account: FakeAccount, region: str = REGION, **overrides: str) -> Report:
    request = Request(stack_name=STACK, region=region, overrides={**DEV, **overrides}, region_source="AWS_REGION")
    return preflight(request, account.services())


def findings(report: Report, name: str) -> list[Finding]:
    return [finding for finding in report.findings if finding.check == name]


def only(report: Report, name: str) -> Finding:
    (found,) = findings(report, name)
    return found


def retained_from_a_teardown(account: FakeAccount) -> FakeAccount:
    """What deleting the stack leaves: the artifact bucket and the training log group (both Retain)."""
    account.buckets[ARTIFACT_BUCKET] = BucketState(ARTIFACT_BUCKET, exists=True, accessible=True, region=REGION)
    account.log_groups[TRAINING_GROUP] = LogGroupInfo(TRAINING_GROUP, 30)
    return account


# --- item 4: the training log group in every kind of account ------------------------------------------


def test_a_fresh_account_is_ready_and_the_stack_creates_the_training_log_group() -> None:
    # Given an account where nothing of this project exists and no training job ever ran
    report = check(FakeAccount())
    # Then nothing fails, and make deploy lets the stack declare the group (with retention, kept on delete)
    assert not report.failed, report.render()
    assert report.decided_overrides == {"ManageTrainingJobsLogGroup": "true"}
    assert only(report, "training log group").status == OK
    assert "creates it first" in only(report, "deployment bucket").detail


def test_an_account_that_ran_training_leaves_the_existing_group_alone() -> None:
    # Given /aws/sagemaker/TrainingJobs made by SageMaker (any account that has trained), never expiring
    account = FakeAccount(log_groups={TRAINING_GROUP: LogGroupInfo(TRAINING_GROUP, None)})
    report = check(account)
    # Then the deploy goes on without declaring it (CloudFormation would fail with AlreadyExists)
    assert not report.failed
    assert report.decided_overrides == {"ManageTrainingJobsLogGroup": "false"}
    # And the operator learns it keeps every log forever, with the command that fixes it
    finding = only(report, "training log group")
    assert finding.status == WARN
    assert (
        finding.fix
        == f"aws logs put-retention-policy --log-group-name {TRAINING_GROUP} --retention-in-days 30 --region {REGION}"
    )


def test_the_stack_that_owns_the_group_keeps_it_on_redeploy() -> None:
    # Given a deployed stack that created the group
    account = FakeAccount(
        stacks={STACK: StackInfo(STACK, "UPDATE_COMPLETE", {"ManageTrainingJobsLogGroup": "true"})},
        owned={STACK: {"TrainingJobsLogGroup": TRAINING_GROUP, "ArtifactBucket": ARTIFACT_BUCKET}},
        log_groups={TRAINING_GROUP: LogGroupInfo(TRAINING_GROUP, 30)},
        buckets={ARTIFACT_BUCKET: BucketState(ARTIFACT_BUCKET, True, True, REGION)},
    )
    report = check(account)
    # Then the update keeps declaring it (false would drop it from the stack) and the bucket is the stack's
    assert not report.failed, report.render()
    assert report.decided_overrides == {"ManageTrainingJobsLogGroup": "true"}
    assert only(report, "artifact bucket").status == OK


def test_a_redeploy_after_teardown_is_told_about_the_retained_bucket_and_skips_the_group() -> None:
    # Given the stack deleted: its bucket and the training group were retained
    report = check(retained_from_a_teardown(FakeAccount()))
    # Then the group no longer blocks the deploy
    assert report.decided_overrides == {"ManageTrainingJobsLogGroup": "false"}
    # But the retained bucket would (same name): the preflight fails, saying how to go on
    finding = only(report, "artifact bucket")
    assert report.failed
    assert finding.status == FAIL
    assert "DeletionPolicy Retain" in finding.detail
    assert finding.fix is not None
    assert f"aws s3api delete-bucket --bucket {ARTIFACT_BUCKET} --region {REGION}" in finding.fix
    assert "BucketNamePrefix=" in finding.fix
    # And another bucket prefix clears it
    assert not check(retained_from_a_teardown(FakeAccount()), BucketNamePrefix="house-prices-v2").failed


def test_an_explicit_true_over_an_existing_group_fails_before_cloudformation_does() -> None:
    account = FakeAccount(log_groups={TRAINING_GROUP: LogGroupInfo(TRAINING_GROUP, 30)})
    report = check(account, ManageTrainingJobsLogGroup="true")
    assert report.failed
    assert "AlreadyExists" in only(report, "training log group").detail
    assert report.decided_overrides == {}


def test_an_explicit_value_is_never_overridden() -> None:
    report = check(FakeAccount(), ManageTrainingJobsLogGroup="false")
    assert not report.failed
    assert report.decided_overrides == {}


def test_without_permission_to_look_the_group_stays_at_the_default_that_never_fails() -> None:
    class DeniedLogs(FakeAccount):
        def find(self, name: str) -> Any:
            if name.startswith("/"):
                raise AccessDenied("logs:DescribeLogGroups", "denied")
            return super().find(name)

    report = check(DeniedLogs())
    assert report.decided_overrides == {"ManageTrainingJobsLogGroup": "false"}
    assert only(report, "training log group").status == WARN
    assert only(report, "log groups").status == WARN


# --- the other checks -------------------------------------------------------------------------------


def test_no_credentials_fail_first_and_nothing_else_is_tried() -> None:
    report = check(FakeAccount(credentials=False))
    assert report.failed
    assert [f.status for f in report.findings] == [FAIL, SKIP]
    assert "AWS_PROFILE" in (only(report, "credentials").fix or "")


def test_a_log_group_left_outside_the_stack_fails_with_its_delete_command() -> None:
    # Given the endpoint's log group from an earlier endpoint of the same name
    name = "/aws/sagemaker/Endpoints/house-prices-mme"
    report = check(FakeAccount(log_groups={name: LogGroupInfo(name, None)}))
    finding = only(report, "log groups")
    assert finding.status == FAIL
    assert finding.fix is not None
    assert finding.fix.startswith(f"aws logs delete-log-group --log-group-name {name} --region {REGION}")


def test_every_fixed_name_log_group_of_the_template_is_checked() -> None:
    detail = only(check(FakeAccount()), "log groups").detail
    for name in (
        "/aws/sagemaker/Endpoints/house-prices-mme",
        f"/aws/lambda/{STACK}-RouterFunction",
        f"/aws/lambda/{STACK}-ModelSyncFunction",
        f"/aws/vendedlogs/{STACK}/http-api",
    ):
        assert name in detail


@pytest.mark.parametrize(
    ("status", "fix"),
    [
        ("ROLLBACK_COMPLETE", f"aws cloudformation delete-stack --stack-name {STACK} --region {REGION}"),
        ("UPDATE_ROLLBACK_FAILED", f"aws cloudformation continue-update-rollback --stack-name {STACK}"),
        ("UPDATE_IN_PROGRESS", "aws cloudformation wait"),
    ],
)
def test_a_stack_no_update_can_leave_fails_with_the_way_out(status: str, fix: str) -> None:
    report = check(FakeAccount(stacks={STACK: StackInfo(STACK, status)}))
    finding = only(report, "stack")
    assert finding.status == FAIL
    assert fix in (finding.fix or "")


def test_quotas_below_the_floor_fail_with_the_increase_request() -> None:
    account = FakeAccount()
    account.quotas[ENDPOINT_QUOTA] = Quota(ENDPOINT_QUOTA, "L-ENDPT", 0, applied=True)
    account.quotas[TRAINING_QUOTA] = Quota(TRAINING_QUOTA, "L-TRAIN", 0, applied=True)
    report = check(account)
    endpoint = only(report, "endpoint quota")
    assert report.failed
    assert endpoint.status == FAIL
    assert endpoint.fix == (
        "aws service-quotas request-service-quota-increase --service-code sagemaker --quota-code L-ENDPT "
        f"--desired-value 4 --region {REGION}"
    )
    # No training quota does not stop a deploy: training can run on a laptop
    assert only(report, "training quota").status == WARN


def test_a_quota_enough_to_deploy_but_not_to_scale_and_update_warns() -> None:
    account = FakeAccount()
    account.quotas[ENDPOINT_QUOTA] = Quota(ENDPOINT_QUOTA, "L-ENDPT", 3, applied=True)
    # Given prod's floor of 2 and ceiling of 4: blue/green runs a second fleet, so 8 at the peak
    report = check(account, MinInstanceCount="2", MaxInstanceCount="4")
    finding = only(report, "endpoint quota")
    assert not report.failed
    assert finding.status == WARN
    assert "--desired-value 8" in (finding.fix or "")


def test_quotas_that_may_not_be_read_are_a_warning_not_a_failure() -> None:
    report = check(FakeAccount(quotas_denied=True))
    assert not report.failed
    for name in ("endpoint quota", "training quota"):
        finding = only(report, name)
        assert finding.status == WARN
        assert "servicequotas:ListServiceQuotas is denied" in finding.detail
        assert "console.aws.amazon.com/servicequotas" in (finding.fix or "")


def test_an_existing_stacks_previous_values_count_when_not_overridden() -> None:
    # Given a stack deployed with another instance type, and no InstanceType override now
    account = FakeAccount(stacks={STACK: StackInfo(STACK, "CREATE_COMPLETE", {"InstanceType": "ml.c5.xlarge"})})
    check(account)
    # Then the quota checked is that type's: sam deploy keeps the previous value
    assert account.asked_quotas[0] == "ml.c5.xlarge for endpoint usage"
    account.asked_quotas.clear()
    check(account, InstanceType="ml.m5.large")
    assert account.asked_quotas[0] == ENDPOINT_QUOTA


def test_a_floor_above_the_ceiling_fails() -> None:
    report = check(FakeAccount(), MinInstanceCount="3", MaxInstanceCount="2")
    assert only(report, "instances").status == FAIL


def test_a_region_without_the_managed_image_fails() -> None:
    report = check(FakeAccount(), region="xx-nowhere-1")
    finding = only(report, "serving image")
    assert finding.status == FAIL
    assert "no scikit-learn image in xx-nowhere-1" in finding.detail


@pytest.mark.parametrize(
    ("image", "pushed", "status"),
    [
        (f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/dense:1", True, OK),
        (f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/dense:1", False, FAIL),
        (f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/dense:1", True, FAIL),  # SageMaker pulls in-region only
    ],
)
def test_the_dense_container_must_be_pushed_to_the_stacks_region(image: str, pushed: bool, status: str) -> None:
    report = check(FakeAccount(images={image} if pushed else set()), ServingImageUri=image)
    assert only(report, "serving image").status == status


def test_a_deployment_bucket_in_another_region_fails() -> None:
    bucket = BucketState("my-deploy", exists=True, accessible=True, region="us-west-2")
    request = Request(STACK, REGION, DEV, deploy_bucket="my-deploy")
    report = preflight(request, FakeAccount(buckets={"my-deploy": bucket}).services())
    finding = only(report, "deployment bucket")
    assert finding.status == FAIL
    assert "us-west-2" in finding.detail


def test_sams_managed_bucket_is_found_and_returned_for_the_deploy() -> None:
    sam = StackInfo("aws-sam-cli-managed-default", "CREATE_COMPLETE", outputs={"SourceBucket": SAM_BUCKET})
    report = check(FakeAccount(stacks={"aws-sam-cli-managed-default": sam}))
    assert report.sam_managed_bucket == SAM_BUCKET


def test_the_report_prints_each_problem_with_its_fix_on_unwrapped_lines() -> None:
    report = check(retained_from_a_teardown(FakeAccount()))
    lines = report.render().splitlines()
    failed = next(i for i, line in enumerate(lines) if "FAIL" in line)
    assert lines[failed + 1].strip().startswith("fix: keep its models")
    assert lines[-1].startswith("make deploy passes ManageTrainingJobsLogGroup=false")
    assert any(line.startswith("Deploying would fail: 1 problem") for line in lines)
    document = report.as_dict()
    assert document["ok"] is False
    assert json.dumps(document)


# --- the CLI ----------------------------------------------------------------------------------------


@pytest.fixture
def fake_aws(monkeypatch: pytest.MonkeyPatch) -> FakeAccount:
    account = FakeAccount()
    monkeypatch.setattr(Services, "from_session", classmethod(lambda cls, session: account.services()))
    return account


def test_the_cli_exits_nonzero_when_deploying_would_fail(
    fake_aws: FakeAccount, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a clean account, then the preflight passes
    assert main(["preflight", "--region", REGION]) == 0
    assert "Ready to deploy" in capsys.readouterr().out
    # Given what a teardown leaves, then it fails, naming the bucket
    retained_from_a_teardown(fake_aws)
    assert main(["--json", "preflight", "--region", REGION]) == 1
    document = json.loads(capsys.readouterr().out)
    assert document["stack"] == STACK
    assert [f["check"] for f in document["findings"] if f["status"] == FAIL] == ["artifact bucket"]


def test_the_cli_reads_the_prod_environment_and_the_stack_flag(
    fake_aws: FakeAccount, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--json", "preflight", "--config-env", "prod", "--region", REGION]) == 0
    document = json.loads(capsys.readouterr().out)
    assert (document["stack"], document["config_env"]) == ("house-prices-mme-prod", "prod")
    assert main(["--json", "--stack", "other", "preflight", "--region", REGION]) == 0
    assert json.loads(capsys.readouterr().out)["stack"] == "other"
    assert main(["preflight", "--config-env", "staging", "--region", REGION]) == 1
    assert "no [staging] environment" in capsys.readouterr().err


# --- region ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("explicit", "environ", "profile", "expected"),
    [
        ("ap-south-1", {"AWS_REGION": "eu-west-1"}, "us-west-2", ("ap-south-1", "--region / REGION")),
        (None, {"AWS_REGION": "eu-west-1", "AWS_DEFAULT_REGION": "us-east-1"}, None, ("eu-west-1", "AWS_REGION")),
        (None, {"AWS_DEFAULT_REGION": "us-east-2"}, "us-west-2", ("us-east-2", "AWS_DEFAULT_REGION")),
        (None, {"AWS_PROFILE": "dev"}, "eu-central-1", ("eu-central-1", "profile dev")),
    ],
)
def test_the_region_is_the_users_never_a_pinned_one(
    explicit: str | None, environ: dict[str, str], profile: str | None, expected: tuple[str, str]
) -> None:
    choice = resolve_region(explicit, environ, lambda: profile)
    assert (choice.region, choice.source) == expected


def test_no_region_anywhere_is_an_error_that_says_where_to_set_one() -> None:
    with pytest.raises(NoRegion, match="REGION=<region>"):
        resolve_region(None, {}, lambda: None)


def test_overrides_later_win_and_malformed_ones_are_refused() -> None:
    assert parse_overrides(["A=1", "B=2", "A=3"]) == {"B": "2", "A": "3"}
    with pytest.raises(ConfigEnvError, match="not Key=Value"):
        parse_overrides(["A"])
    assert template_defaults()["ManageTrainingJobsLogGroup"] == "false"


# --- adapters -------------------------------------------------------------------------------------


def client_error(code: str, status: int = 400, operation: str = "Op") -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, operation
    )


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (NoCredentialsError(), NoCredentials),
        (client_error("ExpiredToken"), NoCredentials),
        (client_error("AccessDeniedException"), AccessDenied),
        (client_error("ThrottlingException"), DependencyFailure),
    ],
)
def test_botocore_failures_become_domain_errors(error: Exception, expected: type[Exception]) -> None:
    translated = aws_error("service:Action", error)  # type: ignore[arg-type]
    assert isinstance(translated, expected)
    if isinstance(translated, AccessDenied):
        assert translated.action == "service:Action"


@pytest.fixture
def aws() -> Iterator[boto3.Session]:
    with mock_aws():
        yield boto3.Session(region_name=REGION)


def test_identity_names_the_account_or_refuses_expired_credentials() -> None:
    sts = boto3.client("sts", region_name=REGION)
    with Stubber(sts) as stub:
        stub.add_response("get_caller_identity", {"Account": ACCOUNT, "Arn": "arn:aws:iam::123456789012:user/me"})
        assert Identity(sts).caller() == CallerIdentity(ACCOUNT, "arn:aws:iam::123456789012:user/me")
        stub.add_client_error("get_caller_identity", "ExpiredToken", "expired")
        with pytest.raises(NoCredentials, match="refused"):
            Identity(sts).caller()


def test_quotas_use_the_applied_value_else_the_default_and_translate_denial() -> None:
    quotas_client = boto3.client("service-quotas", region_name=REGION)
    applied = {"ServiceCode": "sagemaker", "QuotaName": ENDPOINT_QUOTA, "QuotaCode": "L-1", "Value": 20.0}
    default = {"ServiceCode": "sagemaker", "QuotaName": TRAINING_QUOTA, "QuotaCode": "L-2", "Value": 0.0}
    with Stubber(quotas_client) as stub:
        stub.add_response("list_service_quotas", {"Quotas": [applied], "NextToken": "t"}, {"ServiceCode": "sagemaker"})
        stub.add_response("list_service_quotas", {"Quotas": []}, {"ServiceCode": "sagemaker", "NextToken": "t"})
        stub.add_response("list_aws_default_service_quotas", {"Quotas": [default]}, {"ServiceCode": "sagemaker"})
        quotas = ServiceQuotas(quotas_client, "sagemaker")
        assert quotas.find(ENDPOINT_QUOTA) == Quota(ENDPOINT_QUOTA, "L-1", 20.0, applied=True)
        # Not applied: the default, and both listings are read once
        assert quotas.find(TRAINING_QUOTA) == Quota(TRAINING_QUOTA, "L-2", 0.0, applied=False)
        assert quotas.find("ml.x.huge for endpoint usage") is None
        stub.assert_no_pending_responses()
    with Stubber(quotas_client) as stub:
        stub.add_client_error("list_service_quotas", "AccessDeniedException", "no")
        with pytest.raises(AccessDenied) as denied:
            ServiceQuotas(quotas_client, "sagemaker").find(ENDPOINT_QUOTA)
        assert denied.value.action == "servicequotas:ListServiceQuotas"


def test_log_groups_are_found_by_exact_name_with_their_retention(aws: boto3.Session) -> None:
    logs = aws.client("logs")
    logs.create_log_group(logGroupName=TRAINING_GROUP)
    logs.create_log_group(logGroupName=f"{TRAINING_GROUP}-other")
    logs.put_retention_policy(logGroupName=f"{TRAINING_GROUP}-other", retentionInDays=7)
    groups = LogGroups(logs)
    assert groups.find(TRAINING_GROUP) == LogGroupInfo(TRAINING_GROUP, None)
    assert groups.find(f"{TRAINING_GROUP}-other") == LogGroupInfo(f"{TRAINING_GROUP}-other", 7)
    assert groups.find("/aws/sagemaker/Endpoints/none") is None


def test_buckets_report_existence_and_region(aws: boto3.Session) -> None:
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="deploy-here", CreateBucketConfiguration={"LocationConstraint": REGION})
    aws.client("s3", region_name="us-west-2").create_bucket(
        Bucket="deploy-there", CreateBucketConfiguration={"LocationConstraint": "us-west-2"}
    )
    buckets = Buckets(s3)
    assert buckets.state("deploy-here") == BucketState("deploy-here", True, True, REGION)
    assert buckets.state("deploy-there").region == "us-west-2"
    assert buckets.state("no-such-bucket-here") == BucketState("no-such-bucket-here", False, False, None)


def test_a_bucket_that_refuses_head_is_someone_elses() -> None:
    s3 = boto3.client("s3", region_name=REGION)
    with Stubber(s3) as stub:
        stub.add_client_error("head_bucket", "403", "Forbidden", 403)
        assert Buckets(s3).state("taken") == BucketState("taken", exists=True, accessible=False, region=None)


def test_stacks_are_described_or_none_and_list_what_they_own(aws: boto3.Session) -> None:
    cloudformation = aws.client("cloudformation")
    stacks = Stacks(cloudformation)
    assert stacks.describe(STACK) is None
    assert stacks.physical_ids(STACK) == {}
    cloudformation.create_stack(
        StackName=STACK,
        TemplateBody=json.dumps(
            {
                "Parameters": {"InstanceType": {"Type": "String", "Default": "ml.m5.large"}},
                "Resources": {"Queue": {"Type": "AWS::SQS::Queue"}},
                "Outputs": {"QueueUrl": {"Value": {"Ref": "Queue"}, "Description": "the queue"}},
            }
        ),
    )
    found = stacks.describe(STACK)
    assert found is not None
    assert found.status == "CREATE_COMPLETE"
    assert found.parameters == {"InstanceType": "ml.m5.large"}
    assert found.output_descriptions == {"QueueUrl": "the queue"}
    assert stacks.physical_ids(STACK)["Queue"] == found.outputs["QueueUrl"]


def test_images_are_looked_up_by_tag_or_digest() -> None:
    digest = "sha256:" + "a" * 64
    assert image_id(f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/team/dense@{digest}") == (
        ACCOUNT,
        "team/dense",
        {"imageDigest": digest},
    )
    ecr = boto3.client("ecr", region_name=REGION)
    uri = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/team/dense:7"
    expected = {"registryId": ACCOUNT, "repositoryName": "team/dense", "imageIds": [{"imageTag": "7"}]}
    with Stubber(ecr) as stub:
        stub.add_response("describe_images", {"imageDetails": []}, expected)
        stub.add_client_error("describe_images", "ImageNotFoundException", "gone", expected_params=expected)
        stub.add_client_error("describe_images", "AccessDeniedException", "no", expected_params=expected)
        images = Images(ecr)
        assert images.exists(uri) is True
        assert images.exists(uri) is False
        with pytest.raises(AccessDenied):
            images.exists(uri)


def test_the_wiring_builds_each_adapter_on_the_stacks_region(aws: boto3.Session) -> None:
    services = Services.from_session(aws)
    assert isinstance(services.stacks, Stacks)
    assert services.stacks.region == REGION
    assert preflight_module.COMMAND == "preflight"
