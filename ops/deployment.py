"""What a deploy targets: samconfig.toml's environment, the parameter overrides, the region, the stack.

``scripts/deploy.py`` (``make deploy``) and ``python -m ops preflight`` both read them here, so the
check and the deploy agree on every value:

- **samconfig.toml** holds one section per environment (``[default]`` for dev, ``[prod]``), with the
  stack name and ``parameter_overrides``. It names no region.
- **The region** is, in this order: ``--region`` / ``REGION=`` (make), ``AWS_REGION``,
  ``AWS_DEFAULT_REGION``, then the region of the AWS profile in use (``AWS_PROFILE``, else
  ``default``). Nothing pins one: without any of them the deploy stops and says so.
- **The parameters CloudFormation will use**: the template's defaults, replaced on an existing stack
  by its current values (``sam deploy`` passes ``UsePreviousValue`` for every parameter it is not
  given), replaced by the overrides (samconfig.toml's, then the command line's).
"""

from __future__ import annotations

import shlex
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError

from ops.errors import NoRegion, aws_error

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMCONFIG = REPO_ROOT / "samconfig.toml"
TEMPLATE = REPO_ROOT / "template.yaml"
DEFAULT_CONFIG_ENV = "default"
DEFAULT_STACK_NAME = "house-prices-mme"
# training.jobs' default --instance-type: what the training quota is checked for.
DEFAULT_TRAINING_INSTANCE_TYPE = "ml.m5.large"


class ConfigEnvError(ValueError):
    """samconfig.toml has no such environment, or an override is not Key=Value."""


def read_samconfig(path: Path = SAMCONFIG, env: str = DEFAULT_CONFIG_ENV) -> dict[str, Any]:
    """The ``global`` and ``deploy`` parameters of one samconfig.toml environment, merged."""
    with path.open("rb") as handle:
        config = tomllib.load(handle)
    environments = sorted(name for name, value in config.items() if isinstance(value, dict))
    if env not in environments:
        raise ConfigEnvError(f"{path.name} has no [{env}] environment (it has: {', '.join(environments)})")
    section = config[env]
    merged: dict[str, Any] = {}
    for command in ("global", "deploy"):
        merged.update(section.get(command, {}).get("parameters", {}))
    return merged


def as_list(value: str | Sequence[str] | None) -> list[str]:
    """samconfig.toml's ``parameter_overrides``: a TOML list, or one string of space-separated items."""
    if value is None:
        return []
    if isinstance(value, str):
        return shlex.split(value)
    return list(value)


def parse_overrides(items: Iterable[str]) -> dict[str, str]:
    """``Key=Value`` items as a dict; a later key replaces an earlier one and moves to the end."""
    merged: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigEnvError(f"parameter override {item!r} is not Key=Value")
        merged.pop(key, None)
        merged[key] = value
    return merged


def template_defaults(path: Path = TEMPLATE) -> dict[str, str]:
    from local.template import Template

    return Template.load(path).parameter_defaults


@dataclass(frozen=True)
class RegionChoice:
    region: str
    source: str


def profile_region() -> str | None:
    """The region of the AWS profile in use, as the SDKs read it from the config file."""
    import botocore.session

    try:
        region = botocore.session.Session().get_config_variable("region")
    except BotoCoreError as error:
        raise aws_error("configure", error) from error
    return str(region) if region else None


def resolve_region(
    explicit: str | None,
    environ: Mapping[str, str],
    from_profile: Callable[[], str | None] = profile_region,
) -> RegionChoice:
    if explicit:
        return RegionChoice(explicit, "--region / REGION")
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        if environ.get(name):
            return RegionChoice(environ[name], name)
    region = from_profile()
    if region:
        return RegionChoice(region, f"profile {environ.get('AWS_PROFILE') or 'default'}")
    raise NoRegion(
        "no region: pass REGION=<region> to make (or --region), set AWS_REGION, or give your profile one "
        "(aws configure set region <region>). The endpoint, buckets, image and stack all live in that region."
    )


@dataclass(frozen=True)
class DeployTarget:
    """One deploy: where it goes and the parameter values CloudFormation will use."""

    stack_name: str
    region: str
    parameters: Mapping[str, str]
    # Parameters given explicitly (samconfig.toml or the command line), as opposed to defaults and
    # previous values.
    overridden: frozenset[str] = frozenset()
    region_source: str = ""
    config_env: str = DEFAULT_CONFIG_ENV
    # The bucket for sourcedir.tar.gz; None: SAM's managed bucket.
    deploy_bucket: str | None = None
    training_instance_type: str = DEFAULT_TRAINING_INSTANCE_TYPE
    existing_stack_status: str | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    def parameter(self, name: str) -> str:
        return self.parameters.get(name, "")

    @property
    def instance_type(self) -> str:
        return self.parameter("InstanceType")

    @property
    def min_instances(self) -> int:
        return int(self.parameter("MinInstanceCount") or 1)

    @property
    def max_instances(self) -> int:
        return int(self.parameter("MaxInstanceCount") or 1)

    @property
    def serving_image_uri(self) -> str:
        return self.parameter("ServingImageUri")

    def artifact_bucket(self, account: str) -> str:
        """template.yaml's ``${BucketNamePrefix}-${AWS::AccountId}-${AWS::Region}``."""
        return f"{self.parameter('BucketNamePrefix')}-{account}-{self.region}"


def effective_parameters(
    defaults: Mapping[str, str], previous: Mapping[str, str], overrides: Mapping[str, str]
) -> dict[str, str]:
    """What CloudFormation uses: an override, else the stack's previous value, else the default."""
    return {**defaults, **previous, **overrides}
