"""Deploy the stack: preflight, package the inference code, upload it, then `sam build` and `sam deploy`.

    python scripts/deploy.py [--region R] [--config-env default|prod] [--bucket NAME] [--serving-image-uri URI]
                             [--skip-preflight] [--dry-run] [-- extra sam deploy args]

The region is ``--region`` / ``REGION``, else ``AWS_REGION``, ``AWS_DEFAULT_REGION``, the profile's
(ops/deployment.py); samconfig.toml pins none. ``--config-env`` / ``CONFIG_ENV`` picks samconfig.toml's
environment (``default``: dev, one instance; ``prod``: two) and is passed on to ``sam build``/``sam deploy``.

First the preflight (``python -m ops preflight``: credentials, region, quotas, log groups, buckets,
serving image) runs; a failed check stops the deploy before anything changes (``--skip-preflight`` /
``SKIP_PREFLIGHT=1`` skips it). It also decides ``ManageTrainingJobsLogGroup`` (whether the stack may
create ``/aws/sagemaker/TrainingJobs``), unless that parameter is given explicitly.

The SageMaker container downloads ``sourcedir.tar.gz`` (``SAGEMAKER_SUBMIT_DIRECTORY``) at start-up,
so it must be in S3 before CloudFormation creates the endpoint. The artifact bucket belongs to the
stack and does not exist before the first deploy, so the archive goes to a deployment bucket:
``--bucket`` / ``DEPLOY_BUCKET`` or, by default, SAM's managed bucket (stack ``aws-sam-cli-managed-default``),
created first if missing by the SAM CLI's own code, exactly as ``sam deploy --resolve-s3`` would
(samconfig.toml sets ``resolve_s3 = true``, so ``sam deploy`` then uses the same bucket). Never by
``sam deploy --guided``, which would deploy this stack without its required parameters.
The key holds the archive's sha256: an unchanged archive is neither uploaded again nor does it change
the SageMaker model, and a changed one always gives the endpoint a new model.

``--serving-image-uri`` / ``SERVING_IMAGE_URI`` (``make deploy SERVING_IMAGE_URI=...``) serves with the dense
container image instead of the managed scikit-learn one: the template's ``ServingImageUri`` parameter.
``sam deploy`` keeps a deployed stack's previous value of any parameter it is not given, so going back
takes ``SERVING_IMAGE_URI=managed``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shlex
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# The script runs without the venv's .pth too: the layer (house_prices) and the repository root (ops).
for _path in (ROOT / "layers" / "common", ROOT):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))
from house_prices.errors import DomainError  # noqa: E402
from house_prices.naming import KeyLayout  # noqa: E402
from ops.deployment import (  # noqa: E402
    DEFAULT_CONFIG_ENV,
    ConfigEnvError,
    as_list,
    parse_overrides,
    read_samconfig,
    resolve_region,
)
from ops.deployment import profile_region as default_profile_region  # noqa: E402
from ops.preflight import MANAGE_PARAMETER, SAM_MANAGED_STACK, Report, Request, Services, preflight  # noqa: E402

SOURCEDIR = Path("build/sourcedir.tar.gz")
PLACEHOLDER_DIGEST = "<sha256 of sourcedir.tar.gz>"
SERVING_IMAGE_PARAMETER = "ServingImageUri"
# --serving-image-uri value that selects the managed scikit-learn image (the parameter's empty default).
MANAGED_IMAGE = "managed"


class DeployError(RuntimeError):
    """Deployment cannot go on; the message says what to do."""


@dataclass(frozen=True)
class DeployConfig:
    region: str
    bucket: str | None
    stack_name: str
    s3_prefix: str
    parameter_overrides: tuple[str, ...]
    extra_deploy_args: tuple[str, ...] = ()
    python: str = sys.executable
    sam: str = str(Path(sys.executable).with_name("sam"))
    config_env: str = DEFAULT_CONFIG_ENV
    region_source: str = "--region"
    preflight: bool = True


@dataclass(frozen=True)
class Plan:
    package: tuple[str, ...]
    bucket: str
    key: str
    build: tuple[str, ...]
    deploy: tuple[str, ...]
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def source_dir_uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def render(self) -> str:
        lines = [*(f"# {note}" for note in self.notes)]
        lines.append(shlex.join(self.package))
        lines.append(f"# upload {SOURCEDIR} -> {self.source_dir_uri} (skipped when the key exists)")
        lines.append(shlex.join(self.build))
        lines.append(shlex.join(self.deploy))
        return "\n".join(lines)


def merge_overrides(base: Sequence[str], *extra: str) -> tuple[str, ...]:
    """Later ``Key=Value`` entries replace earlier ones with the same key; order is kept otherwise."""
    try:
        merged = parse_overrides((*base, *extra))
    except ConfigEnvError as error:
        raise DeployError(str(error)) from error
    return tuple(f"{key}={value}" for key, value in merged.items())


def sam_override(item: str) -> str:
    """``Key=`` as ``Key=""``: the SAM CLI refuses an empty unquoted value but reads a quoted one as empty."""
    return f'{item}""' if item.endswith("=") else item


def serving_image_override(uri: str | None) -> tuple[str, ...]:
    if not uri:
        return ()
    return (f"{SERVING_IMAGE_PARAMETER}={'' if uri == MANAGED_IMAGE else uri}",)


def check_serving_image(overrides: Sequence[str], region: str) -> None:
    """SageMaker pulls a model's image from the endpoint's region only; CloudFormation cannot check that."""
    for item in overrides:
        key, _, uri = item.partition("=")
        if key != SERVING_IMAGE_PARAMETER or not uri:
            continue
        host = uri.split("/", 1)[0]
        if f".dkr.ecr.{region}." not in host:
            raise DeployError(
                f"{SERVING_IMAGE_PARAMETER} {uri!r} is not an ECR image in {region}: SageMaker pulls the "
                f"serving image from the endpoint's region (push it there: make image-push)"
            )


def sourcedir_key(s3_prefix: str, digest: str) -> str:
    layout = KeyLayout(s3_prefix.strip("/"))
    if digest == PLACEHOLDER_DIGEST:  # a dry run shows the key before the archive exists
        return layout.sourcedir_key("0" * 12).replace("0" * 12, "<sha256[:12]>")
    return layout.sourcedir_key(digest)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def make_plan(config: DeployConfig, bucket: str, digest: str, notes: Sequence[str] = ()) -> Plan:
    key = sourcedir_key(config.s3_prefix, digest)
    overrides = merge_overrides(config.parameter_overrides, f"SourceDirS3Uri=s3://{bucket}/{key}")
    # sam reads the same samconfig.toml environment (capabilities, resolve_s3, s3_prefix, build options).
    config_env = ("--config-env", config.config_env) if config.config_env != DEFAULT_CONFIG_ENV else ()
    return Plan(
        package=(config.python, "-m", "training.packaging", "sourcedir", "--out", str(SOURCEDIR)),
        bucket=bucket,
        key=key,
        build=(config.sam, "build", "--region", config.region, *config_env),
        deploy=(
            config.sam,
            "deploy",
            *config_env,
            "--region",
            config.region,
            "--stack-name",
            config.stack_name,
            "--parameter-overrides",
            *(sam_override(item) for item in overrides),
            *config.extra_deploy_args,
        ),
        notes=tuple(notes),
    )


ManageStack = Callable[[str | None, str], str]


def sam_managed_bucket(region: str, manage_stack: ManageStack | None = None) -> str:
    """SAM's managed bucket in this account and region (``SourceBucket`` of ``aws-sam-cli-managed-default``).

    The SAM CLI's own ``manage_stack`` gets it, creating the stack first if it does not exist: the same
    call ``sam deploy --resolve-s3`` makes, idempotent, and it deploys nothing of this project.
    """
    if manage_stack is None:
        from samcli.lib.bootstrap.bootstrap import manage_stack as sam_manage_stack

        manage_stack = sam_manage_stack
    try:
        return str(manage_stack(None, region))  # (profile, region): the profile comes from AWS_PROFILE
    except Exception as error:  # samcli's UserException family, botocore's errors: all end the deploy here
        raise DeployError(
            f"cannot get or create SAM's managed bucket (stack {SAM_MANAGED_STACK}) in {region}: {error}; "
            "or set DEPLOY_BUCKET to a bucket of yours in that region"
        ) from error


def upload_if_missing(s3: Any, path: Path, bucket: str, key: str) -> bool:
    """Upload ``path`` unless ``key`` already holds it (the key is content-addressed). True if uploaded."""
    from botocore.exceptions import ClientError

    try:
        s3.head_object(Bucket=bucket, Key=key)
        return False
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") not in {"404", "NoSuchKey", "NotFound"}:
            raise
    s3.upload_file(str(path), bucket, key, ExtraArgs={"ServerSideEncryption": "AES256"})
    return True


def tool_environment(base: Mapping[str, str]) -> dict[str, str]:
    """`sam build` for python3.13 needs python3.13 on PATH; the venv's bin dir goes first, as in the Makefile."""
    env = dict(base)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.setdefault("SAM_CLI_TELEMETRY", "0")
    return env


def run(command: Sequence[str], env: Mapping[str, str]) -> None:
    print(f"$ {shlex.join(command)}", flush=True)
    subprocess.run(list(command), cwd=ROOT, env=dict(env), check=True)


def parse_args(
    argv: Sequence[str] | None,
    environ: Mapping[str, str],
    profile_region: Callable[[], str | None] | None = None,
) -> tuple[argparse.Namespace, DeployConfig]:
    parser = argparse.ArgumentParser(prog="scripts/deploy.py", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--region",
        default=environ.get("REGION") or None,
        help="[REGION] else AWS_REGION, AWS_DEFAULT_REGION, the profile's region",
    )
    parser.add_argument(
        "--config-env",
        default=environ.get("CONFIG_ENV") or DEFAULT_CONFIG_ENV,
        help="samconfig.toml environment: default (dev) or prod [CONFIG_ENV]",
    )
    parser.add_argument("--bucket", default=environ.get("DEPLOY_BUCKET") or None, help="deployment bucket")
    parser.add_argument("--stack-name", default=None, help="default: samconfig.toml's stack_name")
    parser.add_argument(
        "--skip-preflight",
        action="store_true",
        default=bool(environ.get("SKIP_PREFLIGHT")),
        help="do not run python -m ops preflight first [SKIP_PREFLIGHT=1]",
    )
    parser.add_argument(
        "--parameter-override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="on top of samconfig.toml's parameter_overrides (repeatable)",
    )
    parser.add_argument(
        "--serving-image-uri",
        default=environ.get("SERVING_IMAGE_URI") or None,
        metavar="URI",
        help=f"ECR image of the dense container -> {SERVING_IMAGE_PARAMETER} [SERVING_IMAGE_URI]; "
        f"'{MANAGED_IMAGE}': back to the managed scikit-learn image (default for a new stack; an existing "
        "stack keeps its previous value)",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing, touch no AWS")
    parser.add_argument("sam_deploy_args", nargs="*", help="extra `sam deploy` arguments (after --)")
    args = parser.parse_args(argv)
    try:
        samconfig = read_samconfig(env=args.config_env)
        choice = resolve_region(args.region, environ, profile_region or default_profile_region)
    except (ConfigEnvError, DomainError) as error:
        raise DeployError(getattr(error, "message", str(error))) from error
    stack_name = args.stack_name or str(samconfig.get("stack_name") or "house-prices-mme")
    config = DeployConfig(
        region=choice.region,
        region_source=choice.source,
        bucket=args.bucket,
        stack_name=stack_name,
        s3_prefix=str(samconfig.get("s3_prefix") or stack_name),
        # samconfig.toml, then the serving image, then explicit --parameter-override entries win.
        parameter_overrides=merge_overrides(
            as_list(samconfig.get("parameter_overrides")),
            *serving_image_override(args.serving_image_uri),
            *args.parameter_override,
        ),
        extra_deploy_args=tuple(args.sam_deploy_args),
        config_env=args.config_env,
        preflight=not args.skip_preflight,
    )
    return args, config


def dry_run_notes(config: DeployConfig) -> list[str]:
    notes = [
        f"stack {config.stack_name} in {config.region} (region from {config.region_source}), "
        f"samconfig.toml [{config.config_env}]"
    ]
    if config.preflight:
        notes.append(
            f"first: python -m ops preflight --config-env {config.config_env} --region {config.region} "
            f"(stops the deploy on a failed check; decides {MANAGE_PARAMETER})"
        )
    else:
        notes.append(f"preflight skipped: {MANAGE_PARAMETER} keeps the stack's value (new stack: false)")
    if not config.bucket:
        notes.append(f"deployment bucket: SAM's managed bucket (stack {SAM_MANAGED_STACK}), created if missing")
    return notes


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    environ = os.environ if environ is None else environ
    try:
        args, config = parse_args(argv, environ)
        check_serving_image(config.parameter_overrides, config.region)
        if args.dry_run:
            bucket = config.bucket or f"<{SAM_MANAGED_STACK} SourceBucket>"
            print(make_plan(config, bucket, PLACEHOLDER_DIGEST, dry_run_notes(config)).render())
            return 0
        return deploy(config, environ)
    except DeployError as error:
        print(f"deploy: {error}", file=sys.stderr)
        return 2
    except subprocess.CalledProcessError as error:
        print(f"deploy: {shlex.join(error.cmd)} exited with {error.returncode}", file=sys.stderr)
        return 1


def run_preflight(config: DeployConfig, services: Services) -> Report:
    """The checks of ``python -m ops preflight``; raises DeployError when deploying would fail."""
    request = Request(
        stack_name=config.stack_name,
        region=config.region,
        region_source=config.region_source,
        overrides=parse_overrides(config.parameter_overrides),
        config_env=config.config_env,
        deploy_bucket=config.bucket,
    )
    report = preflight(request, services)
    print(report.render(), flush=True)
    if report.failed:
        raise DeployError("the preflight failed (above, each problem with its fix); nothing was deployed")
    return report


def deploy(
    config: DeployConfig,
    environ: Mapping[str, str],
    services: Services | None = None,
    manage_stack: ManageStack | None = None,
) -> int:
    import boto3

    env = tool_environment(environ)
    session = boto3.Session(region_name=config.region)
    sam_bucket: str | None = None
    if config.preflight:
        report = run_preflight(config, services or Services.from_session(session))
        sam_bucket = report.sam_managed_bucket
        decided = [f"{key}={value}" for key, value in report.decided_overrides.items()]
        config = replace(config, parameter_overrides=merge_overrides(config.parameter_overrides, *decided))
    bucket = config.bucket or sam_bucket or sam_managed_bucket(config.region, manage_stack)
    # Package first: the key is the archive's digest.
    package = make_plan(config, bucket, PLACEHOLDER_DIGEST).package
    run(package, env)
    archive = ROOT / SOURCEDIR
    plan = make_plan(config, bucket, sha256_of(archive))
    uploaded = upload_if_missing(session.client("s3"), archive, plan.bucket, plan.key)
    print(f"{'uploaded' if uploaded else 'already there'}: {plan.source_dir_uri}", flush=True)
    run(plan.build, env)
    run(plan.deploy, env)
    return 0


if __name__ == "__main__":
    sys.exit(main())
