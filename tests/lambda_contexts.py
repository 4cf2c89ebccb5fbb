"""The context object the Lambda runtime passes a handler, for tests that call handlers directly.

It is the local runtime's own ``LambdaContext``, sized from template.yaml (name, memory, timeout),
so handler tests see what a deployed function would, and there is one fake instead of one per file.
"""

from __future__ import annotations

from functools import cache

from local.lambda_runtime import LambdaContext
from local.template import FunctionSpec, Template

REGION = "us-east-1"
ACCOUNT_ID = "123456789012"


@cache
def _function(logical_id: str) -> FunctionSpec:
    return Template.load().function(logical_id)


def lambda_context(logical_id: str) -> LambdaContext:
    """A fresh context (new request id, full remaining time) for the template's function ``logical_id``."""
    return LambdaContext.for_function(_function(logical_id), REGION, ACCOUNT_ID)
