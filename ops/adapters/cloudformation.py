"""CloudFormation: a stack's status, parameters and outputs, and which physical resources it owns."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ops.errors import StackNotFound, aws_error, error_code


@dataclass(frozen=True)
class StackInfo:
    name: str
    status: str
    parameters: Mapping[str, str] = field(default_factory=dict)
    outputs: Mapping[str, str] = field(default_factory=dict)
    output_descriptions: Mapping[str, str] = field(default_factory=dict)


def _missing(error: ClientError) -> bool:
    # CloudFormation answers a missing stack with a ValidationError "Stack with id X does not exist".
    return error_code(error) == "ValidationError" and "does not exist" in str(error)


class Stacks:
    def __init__(self, cloudformation_client: Any) -> None:
        self._cloudformation = cloudformation_client

    @property
    def region(self) -> str | None:
        return getattr(getattr(self._cloudformation, "meta", None), "region_name", None)

    def describe(self, name: str) -> StackInfo | None:
        """The stack, or None if it does not exist."""
        try:
            stacks = self._cloudformation.describe_stacks(StackName=name)["Stacks"]
        except ClientError as error:
            if _missing(error):
                return None
            raise aws_error("cloudformation:DescribeStacks", error) from error
        except BotoCoreError as error:
            raise aws_error("cloudformation:DescribeStacks", error) from error
        stack = stacks[0]
        outputs = stack.get("Outputs", [])
        return StackInfo(
            name=str(stack["StackName"]),
            status=str(stack["StackStatus"]),
            parameters={p["ParameterKey"]: str(p.get("ParameterValue", "")) for p in stack.get("Parameters", [])},
            outputs={o["OutputKey"]: str(o["OutputValue"]) for o in outputs},
            output_descriptions={o["OutputKey"]: str(o.get("Description", "")) for o in outputs},
        )

    def require(self, name: str) -> StackInfo:
        stack = self.describe(name)
        if stack is None:
            raise StackNotFound(name, self.region)
        return stack

    def physical_ids(self, name: str) -> dict[str, str]:
        """Logical id -> physical id of every resource the stack holds ({} for a missing stack)."""
        found: dict[str, str] = {}
        try:
            for page in self._cloudformation.get_paginator("list_stack_resources").paginate(StackName=name):
                for resource in page.get("StackResourceSummaries", []):
                    if resource.get("PhysicalResourceId"):
                        found[str(resource["LogicalResourceId"])] = str(resource["PhysicalResourceId"])
        except ClientError as error:
            if _missing(error):
                return {}
            raise aws_error("cloudformation:ListStackResources", error) from error
        except BotoCoreError as error:
            raise aws_error("cloudformation:ListStackResources", error) from error
        return found
