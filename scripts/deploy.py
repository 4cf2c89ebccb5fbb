"""Deploy the stack: package the inference code, upload it, then `sam build` and `sam deploy`.

    python scripts/deploy.py [--region us-east-1] [--bucket NAME] [--serving-image-uri URI] [--dry-run]
                             [-- extra sam deploy args]

The SageMaker container downloads ``sourcedir.tar.gz`` (``SAGEMAKER_SUBMIT_DIRECTORY``) at start-up,
so it must be in S3 before CloudFormation creates the endpoint. The artifact bucket belongs to the
stack and does not exist before the first deploy, so the archive goes to a deployment bucket:
``--bucket`` / ``DEPLOY_BUCKET`` or, by default, the bucket SAM itself creates for ``resolve_s3``.
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
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "layers" / "common"))
from house_prices.naming import KeyLayout  # noqa: E402  (the script runs without the venv's .pth too)

SOURCEDIR = Path("build/sourcedir.tar.gz")
SAMCONFIG = ROOT / "samconfig.toml"
# The stack `sam deploy --resolve-s3` creates once per account and region; its SourceBucket output.
SAM_MANAGED_STACK = "aws-sam-cli-managed-default"
SAM_MANAGED_OUTPUT = "SourceBucket"
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


def read_samconfig(path: Path = SAMCONFIG, env: str = "default") -> dict[str, Any]:
    with path.open("rb") as handle:
        config = tomllib.load(handle)
    section = config.get(env, {})
    merged: dict[str, Any] = {}
    for command in ("global", "deploy"):
        merged.update(section.get(command, {}).get("parameters", {}))
    return merged


def _as_list(value: str | Sequence[str] | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return shlex.split(value)
    return list(value)


def merge_overrides(base: Sequence[str], *extra: str) -> tuple[str, ...]:
    """Later ``Key=Value`` entries replace earlier ones with the same key; order is kept otherwise."""
    merged: dict[str, str] = {}
    for item in (*base, *extra):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise DeployError(f"parameter override {item!r} is not Key=Value")
        merged.pop(key, None)
        merged[key] = value
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


def make_plan(config: DeployConfig, bucket: str, digest: str) -> Plan:
    key = sourcedir_key(config.s3_prefix, digest)
    overrides = merge_overrides(config.parameter_overrides, f"SourceDirS3Uri=s3://{bucket}/{key}")
    return Plan(
        package=(config.python, "-m", "training.packaging", "sourcedir", "--out", str(SOURCEDIR)),
        bucket=bucket,
        key=key,
        build=(config.sam, "build", "--region", config.region),
        deploy=(
            config.sam,
            "deploy",
            "--region",
            config.region,
            "--stack-name",
            config.stack_name,
            "--parameter-overrides",
            *(sam_override(item) for item in overrides),
            *config.extra_deploy_args,
        ),
    )


def sam_managed_bucket(cloudformation: Any) -> str:
    """The SAM CLI's own artifact bucket in this account and region."""
    from botocore.exceptions import ClientError

    try:
        stacks = cloudformation.describe_stacks(StackName=SAM_MANAGED_STACK)["Stacks"]
    except ClientError as error:
        raise DeployError(
            f"no deployment bucket: set DEPLOY_BUCKET (or --bucket), or create SAM's managed bucket once "
            f"with `sam deploy --guided` ({SAM_MANAGED_STACK}: {error})"
        ) from error
    for output in stacks[0].get("Outputs", []):
        if output["OutputKey"] == SAM_MANAGED_OUTPUT:
            return str(output["OutputValue"])
    raise DeployError(f"stack {SAM_MANAGED_STACK} has no {SAM_MANAGED_OUTPUT} output; set DEPLOY_BUCKET")


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


def parse_args(argv: Sequence[str] | None, environ: Mapping[str, str]) -> tuple[argparse.Namespace, DeployConfig]:
    samconfig = read_samconfig()
    parser = argparse.ArgumentParser(prog="scripts/deploy.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--region", default=environ.get("REGION") or samconfig.get("region") or "us-east-1")
    parser.add_argument("--bucket", default=environ.get("DEPLOY_BUCKET") or None, help="deployment bucket")
    parser.add_argument("--stack-name", default=samconfig.get("stack_name", "house-prices-mme"))
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
    config = DeployConfig(
        region=args.region,
        bucket=args.bucket,
        stack_name=args.stack_name,
        s3_prefix=str(samconfig.get("s3_prefix") or args.stack_name),
        # samconfig.toml, then the serving image, then explicit --parameter-override entries win.
        parameter_overrides=merge_overrides(
            _as_list(samconfig.get("parameter_overrides")),
            *serving_image_override(args.serving_image_uri),
            *args.parameter_override,
        ),
        extra_deploy_args=tuple(args.sam_deploy_args),
    )
    return args, config


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    environ = os.environ if environ is None else environ
    try:
        args, config = parse_args(argv, environ)
        check_serving_image(config.parameter_overrides, config.region)
        if args.dry_run:
            bucket = config.bucket or f"<{SAM_MANAGED_STACK} {SAM_MANAGED_OUTPUT}>"
            print(make_plan(config, bucket, PLACEHOLDER_DIGEST).render())
            return 0
        return deploy(config, environ)
    except DeployError as error:
        print(f"deploy: {error}", file=sys.stderr)
        return 2
    except subprocess.CalledProcessError as error:
        print(f"deploy: {shlex.join(error.cmd)} exited with {error.returncode}", file=sys.stderr)
        return 1


def deploy(config: DeployConfig, environ: Mapping[str, str]) -> int:
    import boto3

    env = tool_environment(environ)
    session = boto3.Session(region_name=config.region)
    bucket = config.bucket or sam_managed_bucket(session.client("cloudformation"))
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
