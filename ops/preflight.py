"""``python -m ops preflight``: would ``make deploy`` work in this account and region? Each problem with its fix.

``make deploy`` runs the same checks first (``scripts/deploy.py``; ``SKIP_PREFLIGHT=1`` skips them) and
stops when one fails. In order:

1. **credentials**: ``sts:GetCallerIdentity`` (``AWS_PROFILE`` or the usual credential chain).
2. **region** and the **serving image** there: the managed scikit-learn image exists in the regions
   ``ops/images.json`` lists; a dense-container image must be an ECR image in the stack's region,
   and is looked up (``ecr:DescribeImages``).
3. **stack**: absent (created), updatable, or in a state no update can leave (``ROLLBACK_COMPLETE``
   after a failed first creation, an operation in progress, a failed rollback).
4. **instances**: ``MinInstanceCount`` ≤ ``MaxInstanceCount``; SageMaker's quotas
   ``<InstanceType> for endpoint usage`` (at least the floor; blue/green updates and auto scaling want
   2 × ``MaxInstanceCount``) and ``<type> for training job usage`` (Service Quotas; an account that may
   not read them gets a warning, not a failure).
5. **log groups**: every fixed-name group of the template that exists outside the stack makes
   CloudFormation fail with ``AlreadyExists``; ``/aws/sagemaker/TrainingJobs`` decides
   ``ManageTrainingJobsLogGroup`` (below).
6. **buckets**: the artifact bucket ``{BucketNamePrefix}-{account}-{region}`` must not be left over
   from a deleted stack (it is ``Retain``); the deployment bucket (``DEPLOY_BUCKET`` or SAM's managed
   one) must be usable and in the stack's region.

``ManageTrainingJobsLogGroup``: the group is shared by every training job of the account and region and
survives the stack (``Retain``), so CloudFormation may create it only where it does not exist yet. The
preflight answers ``true`` when this stack already owns it or it does not exist, ``false`` otherwise
(the template's default, which never fails); ``make deploy`` passes the answer unless the parameter is
given explicitly, and an explicit ``true`` over an existing group is a failure.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any, Protocol

from house_prices.errors import DomainError
from ops.adapters.cloudformation import StackInfo
from ops.adapters.identity import CallerIdentity
from ops.adapters.logs import LogGroupInfo
from ops.adapters.quotas import Quota
from ops.adapters.s3 import BucketState
from ops.deployment import (
    DEFAULT_CONFIG_ENV,
    DEFAULT_STACK_NAME,
    DEFAULT_TRAINING_INSTANCE_TYPE,
    DeployTarget,
    as_list,
    effective_parameters,
    parse_overrides,
    read_samconfig,
    resolve_region,
    template_defaults,
)
from ops.errors import AccessDenied, NoCredentials

COMMAND = "preflight"
OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"
TRAINING_JOBS_LOG_GROUP = "/aws/sagemaker/TrainingJobs"
TRAINING_JOBS_LOG_GROUP_ID = "TrainingJobsLogGroup"
MANAGE_PARAMETER = "ManageTrainingJobsLogGroup"
SAM_MANAGED_STACK = "aws-sam-cli-managed-default"
SAM_MANAGED_OUTPUT = "SourceBucket"
QUOTAS_CONSOLE = "https://console.aws.amazon.com/servicequotas/home/services/sagemaker/quotas"
# A stack in one of these takes no update: the deploy would fail at once.
_STUCK = {
    "ROLLBACK_COMPLETE": "its first creation failed and rolled back; such a stack can only be deleted",
    "ROLLBACK_FAILED": "its first creation failed and the rollback too",
    "DELETE_FAILED": "a deletion failed",
    "UPDATE_ROLLBACK_FAILED": "an update failed and so did its rollback",
}


class IdentityPort(Protocol):
    def caller(self) -> CallerIdentity: ...


class StacksPort(Protocol):
    def describe(self, name: str) -> StackInfo | None: ...
    def physical_ids(self, name: str) -> dict[str, str]: ...


class QuotasPort(Protocol):
    def find(self, name: str) -> Quota | None: ...


class LogGroupsPort(Protocol):
    def find(self, name: str) -> LogGroupInfo | None: ...


class BucketsPort(Protocol):
    def state(self, name: str) -> BucketState: ...


class ImagesPort(Protocol):
    def exists(self, uri: str) -> bool: ...


@dataclass(frozen=True)
class Services:
    identity: IdentityPort
    stacks: StacksPort
    quotas: QuotasPort
    log_groups: LogGroupsPort
    buckets: BucketsPort
    images: ImagesPort

    @classmethod
    def from_session(cls, session: Any) -> Services:
        """Adapters on one boto3 session, whose region is the stack's (quotas are per region too)."""
        from ops.adapters.cloudformation import Stacks
        from ops.adapters.ecr import Images
        from ops.adapters.identity import Identity
        from ops.adapters.logs import LogGroups
        from ops.adapters.quotas import ServiceQuotas
        from ops.adapters.s3 import Buckets

        return cls(
            identity=Identity(session.client("sts")),
            stacks=Stacks(session.client("cloudformation")),
            quotas=ServiceQuotas(session.client("service-quotas"), "sagemaker"),
            log_groups=LogGroups(session.client("logs")),
            buckets=Buckets(session.client("s3")),
            images=Images(session.client("ecr")),
        )


@dataclass(frozen=True)
class Finding:
    check: str
    status: str
    detail: str
    fix: str | None = None


@dataclass(frozen=True)
class Request:
    """What is about to be deployed, before the stack's previous values are known."""

    stack_name: str
    region: str
    overrides: Mapping[str, str]
    region_source: str = ""
    config_env: str = DEFAULT_CONFIG_ENV
    deploy_bucket: str | None = None
    training_instance_type: str = DEFAULT_TRAINING_INSTANCE_TYPE


@dataclass(frozen=True)
class Report:
    target: DeployTarget
    findings: tuple[Finding, ...]
    account: str | None = None
    # The ManageTrainingJobsLogGroup value make deploy passes (None: leave it to the template/stack).
    manage_training_jobs_log_group: bool | None = None
    sam_managed_bucket: str | None = None

    @property
    def failed(self) -> bool:
        return any(finding.status == FAIL for finding in self.findings)

    @property
    def decided_overrides(self) -> dict[str, str]:
        """Overrides the preflight adds to the deploy (never one the caller gave)."""
        if self.manage_training_jobs_log_group is None or MANAGE_PARAMETER in self.target.overridden:
            return {}
        return {MANAGE_PARAMETER: "true" if self.manage_training_jobs_log_group else "false"}

    def as_dict(self) -> dict[str, Any]:
        return {
            "stack": self.target.stack_name,
            "region": self.target.region,
            "region_source": self.target.region_source,
            "config_env": self.target.config_env,
            "account": self.account,
            "ok": not self.failed,
            "findings": [asdict(finding) for finding in self.findings],
            "decided_overrides": self.decided_overrides,
        }

    def render(self) -> str:
        """Plain lines (never wrapped, so every fix command can be copied)."""
        target = self.target
        where = f"account {self.account}, " if self.account else ""
        lines = [
            f"Preflight: stack {target.stack_name} in {target.region} ({where}region from {target.region_source},"
            f" samconfig.toml [{target.config_env}])"
        ]
        width = max(len(finding.check) for finding in self.findings)
        for finding in self.findings:
            label = finding.status.upper() if finding.status in (FAIL, WARN) else finding.status
            lines.append(f"  {label:<4}  {finding.check:<{width}}  {finding.detail}")
            if finding.fix:
                lines.append(f"  {'':<4}  {'':<{width}}  fix: {finding.fix}")
        failures = sum(finding.status == FAIL for finding in self.findings)
        warnings = sum(finding.status == WARN for finding in self.findings)
        if failures:
            lines.append(f"Deploying would fail: {failures} problem(s) above, each with its fix.")
        else:
            lines.append(f"Ready to deploy ({warnings} warning(s)).")
        for key, value in self.decided_overrides.items():
            lines.append(f"make deploy passes {key}={value}.")
        return "\n".join(lines)


def _quota_increase(region: str, quota: Quota, desired: int) -> str:
    return (
        f"aws service-quotas request-service-quota-increase --service-code sagemaker --quota-code {quota.code} "
        f"--desired-value {desired} --region {region}"
    )


class _Checks:
    """One preflight run: each method adds its findings; AWS failures become findings, never tracebacks."""

    def __init__(self, request: Request, services: Services, defaults: Mapping[str, str]) -> None:
        self.request = request
        self.services = services
        self.defaults = defaults
        self.findings: list[Finding] = []
        self.account: str | None = None
        self.owned: dict[str, str] = {}
        self.manage: bool | None = None
        self.sam_bucket: str | None = None
        self.target = DeployTarget(
            stack_name=request.stack_name,
            region=request.region,
            parameters=effective_parameters(defaults, {}, request.overrides),
            overridden=frozenset(request.overrides),
            region_source=request.region_source,
            config_env=request.config_env,
            deploy_bucket=request.deploy_bucket,
            training_instance_type=request.training_instance_type,
        )

    def add(self, check: str, status: str, detail: str, fix: str | None = None) -> None:
        self.findings.append(Finding(check, status, detail, fix))

    def _guarded(self, check: str, permission_fix: str, run: Callable[[], None]) -> None:
        """Run ``run``; a denied or failed call becomes a warning (it cannot tell) rather than a crash."""
        try:
            run()
        except AccessDenied as error:
            self.add(check, WARN, f"cannot check: {error.action} is denied", permission_fix)
        except DomainError as error:
            self.add(check, WARN, f"cannot check: {error.message}", permission_fix)

    # 1 -------------------------------------------------------------------------------------------
    def credentials(self) -> bool:
        try:
            caller = self.services.identity.caller()
        except NoCredentials as error:
            self.add(
                "credentials",
                FAIL,
                error.message,
                "export AWS_PROFILE=<profile> (aws configure sso; aws sso login) or set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY; docs/deploy.md 'Prerequisites'",
            )
            return False
        except DomainError as error:
            self.add("credentials", FAIL, f"cannot reach STS: {error.message}", "check the network and the region")
            return False
        self.account = caller.account
        self.add("credentials", OK, f"account {caller.account} as {caller.arn}")
        return True

    # 2 -------------------------------------------------------------------------------------------
    def region_and_image(self) -> None:
        from ops.images import load_table

        region = self.request.region
        self.add("region", OK, f"{region} (from {self.request.region_source or 'the caller'})")
        image = self.target.serving_image_uri
        table = load_table()
        if not image:
            version = self.target.parameter("SklearnImageVersion")
            if region not in table.accounts:
                self.add(
                    "serving image",
                    FAIL,
                    f"SageMaker has no scikit-learn image in {region} (ops/images.json lists "
                    f"{len(table.accounts)} regions)",
                    "deploy to a listed region (REGION=...) or serve the dense container from this region's ECR "
                    "(SERVING_IMAGE_URI=...)",
                )
                return
            if version not in table.versions["inference"]:
                self.add(
                    "serving image",
                    FAIL,
                    f"SklearnImageVersion {version!r} is no inference image",
                    f"use one of {', '.join(table.versions['inference'])}",
                )
                return
            self.add("serving image", OK, f"managed {table.image_uri(region, version, 'inference')}")
            return
        host = image.split("/", 1)[0]
        if f".dkr.ecr.{region}." not in host:
            self.add(
                "serving image",
                FAIL,
                f"{image} is not in {region}: SageMaker pulls the image from the endpoint's region only",
                f"push it to ECR in {region} (make image-push) and pass that URI",
            )
            return

        def look_up() -> None:
            if self.services.images.exists(image):
                self.add("serving image", OK, f"dense container {image} found in ECR")
            else:
                self.add("serving image", FAIL, f"{image} is not in ECR", "push it: make image-push")

        self._guarded("serving image", "allow ecr:DescribeImages (docs/deployer-policy.json)", look_up)

    # 3 -------------------------------------------------------------------------------------------
    def stack(self) -> None:
        name, region = self.request.stack_name, self.request.region
        try:
            stack = self.services.stacks.describe(name)
            self.owned = self.services.stacks.physical_ids(name) if stack else {}
        except AccessDenied as error:
            self.add("stack", FAIL, f"cannot read the stack: {error.action} is denied", "use docs/deployer-policy.json")
            return
        except DomainError as error:
            self.add("stack", FAIL, f"cannot read the stack: {error.message}")
            return
        if stack is None:
            self.add("stack", OK, f"{name} does not exist yet: the deploy creates it")
            return
        # sam deploy keeps a parameter's previous value when it is not given.
        self.target = replace(
            self.target,
            parameters=effective_parameters(self.defaults, stack.parameters, self.request.overrides),
            existing_stack_status=stack.status,
        )
        status = stack.status
        if status in _STUCK:
            fix = (
                f"aws cloudformation continue-update-rollback --stack-name {name} --region {region}"
                if status == "UPDATE_ROLLBACK_FAILED"
                else f"read why in its events, then aws cloudformation delete-stack --stack-name {name} "
                f"--region {region} (the bucket and the table are kept)"
            )
            self.add("stack", FAIL, f"{name} is {status}: {_STUCK[status]}", fix)
        elif status.endswith("_IN_PROGRESS"):
            self.add(
                "stack",
                FAIL,
                f"{name} is {status}",
                f"wait for it: aws cloudformation wait stack-update-complete --stack-name {name} --region {region}",
            )
        else:
            self.add("stack", OK, f"{name} exists ({status}): the deploy updates it")

    # 4 -------------------------------------------------------------------------------------------
    def instances(self) -> None:
        target, region = self.target, self.request.region
        low, high = target.min_instances, target.max_instances
        if low > high:
            self.add(
                "instances",
                FAIL,
                f"MinInstanceCount={low} > MaxInstanceCount={high}: auto scaling refuses it",
                f"set MaxInstanceCount={low} or more",
            )
        else:
            note = "" if low >= 2 else "; production wants 2 or more across Availability Zones (CONFIG_ENV=prod)"
            self.add("instances", OK, f"{low} to {high} × {target.instance_type}{note}")
        endpoint_quota = f"{target.instance_type} for endpoint usage"
        need_now = low * (2 if target.existing_stack_status else 1)  # an update runs a second (green) fleet
        peak = 2 * high

        def endpoint() -> None:
            quota = self.services.quotas.find(endpoint_quota)
            if quota is None:
                self.add(
                    "endpoint quota",
                    WARN,
                    f"Service Quotas has no quota {endpoint_quota!r} in {region}",
                    f"check that {target.instance_type} is offered for SageMaker hosting in {region}",
                )
            elif quota.value < need_now:
                self.add(
                    "endpoint quota",
                    FAIL,
                    f"{endpoint_quota!r} is {quota.value:g}, the deploy needs {need_now}",
                    _quota_increase(region, quota, peak),
                )
            elif quota.value < peak:
                self.add(
                    "endpoint quota",
                    WARN,
                    f"{endpoint_quota!r} is {quota.value:g}: enough to deploy, not for {peak} (auto scaling to "
                    f"{high} while an update runs a second fleet); other endpoints here count too",
                    _quota_increase(region, quota, peak),
                )
            else:
                self.add(
                    "endpoint quota",
                    OK,
                    f"{endpoint_quota!r} is {quota.value:g} (≥ {peak}; other endpoints in the account share it)",
                )

        quota_fix = f"allow servicequotas:ListServiceQuotas, or look the quota up in the console: {QUOTAS_CONSOLE}"
        self._guarded("endpoint quota", quota_fix, endpoint)
        training_quota = f"{target.training_instance_type} for training job usage"

        def training() -> None:
            quota = self.services.quotas.find(training_quota)
            if quota is None:
                self.add("training quota", WARN, f"Service Quotas has no quota {training_quota!r} in {region}")
            elif quota.value < 1:
                self.add(
                    "training quota",
                    WARN,
                    f"{training_quota!r} is {quota.value:g}: the stack deploys, but training.jobs --mode sagemaker "
                    f"fails (train locally and publish, or ask for 1)",
                    _quota_increase(region, quota, 1),
                )
            else:
                self.add("training quota", OK, f"{training_quota!r} is {quota.value:g}")

        self._guarded("training quota", quota_fix, training)

    # 5 -------------------------------------------------------------------------------------------
    def log_groups(self) -> None:
        from local.template import LocalResources, Template, TemplateError

        template = Template.load()
        resources = LocalResources(
            stack_name=self.request.stack_name,
            region=self.request.region,
            account_id=self.account or "000000000000",
            parameters=self.target.parameters,
        )
        region = self.request.region
        names: dict[str, str] = {}
        for logical_id in template.logical_ids("AWS::Logs::LogGroup"):
            if logical_id != TRAINING_JOBS_LOG_GROUP_ID:
                try:
                    names[logical_id] = str(template.ref(logical_id, resources, where=logical_id))
                except TemplateError:
                    continue
        clashes: list[str] = []

        def check() -> None:
            for logical_id, name in names.items():
                group = self.services.log_groups.find(name)
                if group is not None and self.owned.get(logical_id) != name:
                    clashes.append(name)
            for name in clashes:
                self.add(
                    "log groups",
                    FAIL,
                    f"{name} exists outside the stack: CloudFormation fails with AlreadyExists",
                    f"aws logs delete-log-group --log-group-name {name} --region {region} "
                    "(export what it holds first), or pick another EndpointName / stack name",
                )
            if not clashes:
                listed = ", ".join(names.values())
                self.add("log groups", OK, f"{len(names)} fixed-name groups free or the stack's: {listed}")

        self._guarded("log groups", "allow logs:DescribeLogGroups (docs/deployer-policy.json)", check)
        self.training_jobs_log_group()

    def training_jobs_log_group(self) -> None:
        check, region, name = "training log group", self.request.region, TRAINING_JOBS_LOG_GROUP
        owned = self.owned.get(TRAINING_JOBS_LOG_GROUP_ID) == name
        explicit = self.request.overrides.get(MANAGE_PARAMETER)
        try:
            group = self.services.log_groups.find(name)
        except DomainError as error:
            reason = f"{error.action} is denied" if isinstance(error, AccessDenied) else error.message
            self.manage = owned
            self.add(
                check,
                WARN,
                f"cannot tell whether {name} exists ({reason}): {MANAGE_PARAMETER}="
                f"{'true (the stack owns it)' if owned else 'false, the default that never fails'}",
            )
            return
        decided = owned or group is None
        if explicit == "true" and group is not None and not owned:
            self.manage = None
            self.add(
                check,
                FAIL,
                f"{MANAGE_PARAMETER}=true but {name} already exists: CloudFormation fails with AlreadyExists",
                "drop the override (make deploy then passes false) or import the group into the stack",
            )
            return
        self.manage = explicit == "true" if explicit in ("true", "false") else decided
        if owned:
            detail = f"{name} belongs to the stack: {MANAGE_PARAMETER}={'true' if self.manage else 'false'}"
            if not self.manage:
                detail += " (the stack lets go of it; it is kept, DeletionPolicy Retain)"
            self.add(check, OK, detail)
        elif group is None:
            self.add(
                check,
                OK,
                f"{name} does not exist: {MANAGE_PARAMETER}={'true' if self.manage else 'false'}"
                + (" (created with LogRetentionDays, kept when the stack goes)" if self.manage else ""),
            )
        elif group.retention_days is None:
            self.add(
                check,
                WARN,
                f"{name} exists outside the stack and never expires: {MANAGE_PARAMETER}=false",
                f"aws logs put-retention-policy --log-group-name {name} --retention-in-days "
                f"{self.target.parameter('LogRetentionDays') or 30} --region {region}",
            )
        else:
            self.add(
                check,
                OK,
                f"{name} exists outside the stack (retention {group.retention_days} days): {MANAGE_PARAMETER}=false",
            )

    # 6 -------------------------------------------------------------------------------------------
    def artifact_bucket(self) -> None:
        if self.account is None:
            return
        name, region = self.target.artifact_bucket(self.account), self.request.region
        if len(name) > 63:
            self.add("artifact bucket", FAIL, f"{name} is longer than 63 characters", "shorten BucketNamePrefix")
            return
        if self.owned.get("ArtifactBucket") == name:
            self.add("artifact bucket", OK, f"{name}: the stack's")
            return

        def check() -> None:
            state = self.services.buckets.state(name)
            if not state.exists:
                self.add("artifact bucket", OK, f"{name}: free, the deploy creates it")
            elif state.accessible:
                self.add(
                    "artifact bucket",
                    FAIL,
                    f"{name} exists but belongs to no stack: kept from a deleted one (DeletionPolicy Retain)",
                    f"keep its models under another name (BucketNamePrefix=...), or empty it, every version "
                    f"included, and then: aws s3api delete-bucket --bucket {name} --region {region}",
                )
            else:
                self.add(
                    "artifact bucket",
                    FAIL,
                    f"{name} exists and refuses HeadBucket (another account's, or s3:ListBucket is denied)",
                    "choose another BucketNamePrefix",
                )

        self._guarded("artifact bucket", "allow s3:ListBucket on the bucket (docs/deployer-policy.json)", check)

    def deployment_bucket(self) -> None:
        region, explicit = self.request.region, self.request.deploy_bucket
        if explicit:

            def check() -> None:
                state = self.services.buckets.state(explicit)
                if not state.exists:
                    self.add(
                        "deployment bucket",
                        FAIL,
                        f"{explicit} does not exist",
                        f"aws s3 mb s3://{explicit} --region {region}, or unset DEPLOY_BUCKET (SAM's managed bucket)",
                    )
                elif not state.accessible:
                    self.add("deployment bucket", FAIL, f"{explicit} refuses HeadBucket", "use a bucket of yours")
                elif state.region and state.region != region:
                    self.add(
                        "deployment bucket",
                        FAIL,
                        f"{explicit} is in {state.region}, the stack in {region}",
                        f"use a bucket in {region}, or unset DEPLOY_BUCKET (SAM's managed bucket, per region)",
                    )
                else:
                    self.add("deployment bucket", OK, f"{explicit} ({state.region or region})")

            self._guarded("deployment bucket", "allow s3:ListBucket on it (docs/deployer-policy.json)", check)
            return

        def managed() -> None:
            stack = self.services.stacks.describe(SAM_MANAGED_STACK)
            if stack is None:
                self.add(
                    "deployment bucket",
                    OK,
                    f"SAM's managed bucket does not exist in {region} yet: the deploy creates it first "
                    f"(stack {SAM_MANAGED_STACK}, as sam deploy --resolve-s3 does)",
                )
            elif stack.status in _STUCK or SAM_MANAGED_OUTPUT not in stack.outputs:
                self.add(
                    "deployment bucket",
                    FAIL,
                    f"stack {SAM_MANAGED_STACK} is {stack.status} without a {SAM_MANAGED_OUTPUT} output",
                    f"aws cloudformation delete-stack --stack-name {SAM_MANAGED_STACK} --region {region} "
                    "(the deploy creates it again), or set DEPLOY_BUCKET",
                )
            else:
                self.sam_bucket = stack.outputs[SAM_MANAGED_OUTPUT]
                self.add("deployment bucket", OK, f"SAM's managed bucket {self.sam_bucket}")

        self._guarded("deployment bucket", "allow cloudformation:DescribeStacks (docs/deployer-policy.json)", managed)

    def run(self) -> Report:
        if not self.credentials():
            self.add("everything else", SKIP, "needs credentials")
        else:
            self.region_and_image()
            self.stack()
            self.instances()
            self.log_groups()
            self.artifact_bucket()
            self.deployment_bucket()
        return Report(
            target=self.target,
            findings=tuple(self.findings),
            account=self.account,
            manage_training_jobs_log_group=self.manage,
            sam_managed_bucket=self.sam_bucket,
        )


def preflight(request: Request, services: Services, defaults: Mapping[str, str] | None = None) -> Report:
    """Every check, against the template's parameter defaults (template.yaml unless given)."""
    return _Checks(request, services, template_defaults() if defaults is None else defaults).run()


# --- CLI -----------------------------------------------------------------------------------------


def add_command(commands: Any) -> None:
    command = commands.add_parser(COMMAND, help="check that make deploy would work here; each problem with its fix")
    command.add_argument("--config-env", help="samconfig.toml environment [CONFIG_ENV, default 'default'; or prod]")
    # SUPPRESS: a global --region (if the CLI gains one) is not overwritten by this default.
    command.add_argument("--region", default=argparse.SUPPRESS, help="[REGION, AWS_REGION, the profile's]")
    command.add_argument(
        "--parameter-override", action="append", default=[], metavar="KEY=VALUE", help="as make deploy's"
    )
    command.add_argument("--deploy-bucket", help="deployment bucket [DEPLOY_BUCKET; default SAM's managed bucket]")
    command.add_argument("--serving-image-uri", help="[SERVING_IMAGE_URI]; 'managed' for the scikit-learn image")
    command.add_argument("--training-instance-type", default=DEFAULT_TRAINING_INSTANCE_TYPE)


def request_from(
    *,
    stack: str | None,
    config_env: str,
    region: str | None,
    overrides: Sequence[str],
    environ: Mapping[str, str],
    deploy_bucket: str | None = None,
    serving_image_uri: str | None = None,
    training_instance_type: str = DEFAULT_TRAINING_INSTANCE_TYPE,
) -> Request:
    """samconfig.toml's environment, then the serving image, then explicit overrides (later wins)."""
    samconfig = read_samconfig(env=config_env)
    image = serving_image_uri or environ.get("SERVING_IMAGE_URI") or None
    image_override = [f"ServingImageUri={'' if image == 'managed' else image}"] if image else []
    choice = resolve_region(region or environ.get("REGION") or None, environ)
    return Request(
        stack_name=stack or str(samconfig.get("stack_name") or DEFAULT_STACK_NAME),
        region=choice.region,
        region_source=choice.source,
        overrides=parse_overrides([*as_list(samconfig.get("parameter_overrides")), *image_override, *overrides]),
        config_env=config_env,
        deploy_bucket=deploy_bucket or environ.get("DEPLOY_BUCKET") or None,
        training_instance_type=training_instance_type,
    )


def run(args: argparse.Namespace, environ: Mapping[str, str], stack: str | None = None) -> tuple[Report, int]:
    import boto3

    request = request_from(
        stack=stack,
        config_env=args.config_env or environ.get("CONFIG_ENV") or DEFAULT_CONFIG_ENV,
        region=getattr(args, "region", None),
        overrides=args.parameter_override,
        environ=environ,
        deploy_bucket=args.deploy_bucket,
        serving_image_uri=args.serving_image_uri,
        training_instance_type=args.training_instance_type,
    )
    report = preflight(request, Services.from_session(boto3.Session(region_name=request.region)))
    return report, 1 if report.failed else 0


def print_report(report: Report, as_json: bool) -> None:
    print(json.dumps(report.as_dict(), indent=2) if as_json else report.render())
