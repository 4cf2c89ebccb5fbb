"""A deployed stack's outputs: ``python -m ops outputs``, and ``--stack NAME`` for ``training.jobs``.

The outputs (template.yaml ``Outputs``) name what a deployed stack made: the artifact bucket, the
training role, the endpoint. ``python -m ops outputs`` prints them (``python -m ops outputs KEY`` prints
one value, for ``$(...)`` in a shell); ``training.jobs --stack NAME`` takes its bucket, key prefix,
training role and region from them, as ``python -m ops --stack NAME`` does for ops' own commands.
Flags given explicitly always win over the stack's values.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError

from house_prices.naming import DEFAULT_PREFIX, TRAINING_OUTPUT_DIR
from ops.deployment import DEFAULT_STACK_NAME, read_samconfig
from ops.errors import aws_error

OUTPUTS_COMMAND = "outputs"


class StackOutputsError(ValueError):
    """The stack lacks an output this needs, or holds one in an unexpected shape."""


@dataclass(frozen=True)
class DeployedStack:
    name: str
    region: str | None
    outputs: Mapping[str, str]
    descriptions: Mapping[str, str]

    def output(self, key: str) -> str:
        if key not in self.outputs:
            raise StackOutputsError(
                f"stack {self.name} has no output {key} (known: {', '.join(sorted(self.outputs)) or 'none'})"
            )
        return self.outputs[key]

    @property
    def bucket(self) -> str:
        return self.output("ArtifactBucketName")

    @property
    def prefix(self) -> str:
        """The ArtifactPrefix, read back from ``TrainingOutputPrefix`` (``s3://BUCKET/PREFIX/model_artifacts/``)."""
        uri = self.output("TrainingOutputPrefix")
        head = f"s3://{self.bucket}/"
        tail = f"/{TRAINING_OUTPUT_DIR}/"
        if not (uri.startswith(head) and uri.endswith(tail) and len(uri) > len(head) + len(tail)):
            raise StackOutputsError(f"stack {self.name}: TrainingOutputPrefix {uri!r} is not {head}PREFIX{tail}")
        return uri[len(head) : -len(tail)]

    @property
    def training_role_arn(self) -> str:
        return self.output("TrainingRoleArn")


def deployed_stack(name: str, region: str | None = None, session: Any = None) -> DeployedStack:
    """The stack ``name`` in ``region`` (default: the session's). Raises StackNotFound, NoRegion, AccessDenied…"""
    import boto3

    from ops.adapters.cloudformation import Stacks

    session = session or boto3.Session(region_name=region)
    try:
        stacks = Stacks(session.client("cloudformation"))
    except BotoCoreError as error:  # no region anywhere, an unknown profile
        raise aws_error("cloudformation:DescribeStacks", error) from error
    info = stacks.require(name)
    return DeployedStack(info.name, stacks.region, info.outputs, info.output_descriptions)


def apply_stack(args: argparse.Namespace) -> None:
    """``training.jobs``' flags: with ``args.stack``, fill ``bucket``, ``prefix``, ``role_arn`` and ``region``
    that were not given from the stack's outputs; without, only the prefix default."""
    if getattr(args, "stack", None):
        stack = deployed_stack(args.stack, region=args.region)
        args.bucket = args.bucket or stack.bucket
        args.prefix = args.prefix or stack.prefix
        args.role_arn = args.role_arn or stack.training_role_arn
        args.region = args.region or stack.region
    args.prefix = args.prefix or DEFAULT_PREFIX


# --- CLI -----------------------------------------------------------------------------------------


def add_command(commands: Any) -> None:
    command = commands.add_parser(OUTPUTS_COMMAND, help="a deployed stack's outputs (--stack; default samconfig's)")
    command.add_argument("key", nargs="?", help="print only this output's value (for $(...) in a shell)")
    command.add_argument("--config-env", help="samconfig.toml environment naming the default stack [CONFIG_ENV]")
    command.add_argument("--region", default=argparse.SUPPRESS, help="the stack's region [AWS_REGION, profile's]")


def default_stack_name(config_env: str) -> str:
    return str(read_samconfig(env=config_env).get("stack_name") or DEFAULT_STACK_NAME)


def run(args: argparse.Namespace, environ: Mapping[str, str], stack: str | None) -> DeployedStack:
    name = stack or default_stack_name(args.config_env or environ.get("CONFIG_ENV") or "default")
    return deployed_stack(name, region=getattr(args, "region", None) or environ.get("REGION") or None)
