"""A Lambda sandbox for one function per process: its context object, environment and handler.

``load_handler`` does what the Lambda runtime does at cold start: it puts the function's
environment (from ``template.yaml``) into ``os.environ``, puts its CodeUri and layers on
``sys.path`` and imports ``module.attr``. The process then hosts exactly that function, so two
functions never share an environment — the stack runs each in its own process.

``python -m local.lambda_runtime FUNCTION EVENT.json`` (``make invoke``) runs a handler in process,
like ``sam local invoke`` without Docker. When a local stack is up it reads ``.local/stack.json``
and points the function at it; otherwise the function talks to real AWS with your credentials.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from local.template import REPO_ROOT, FunctionSpec, LocalResources, Template, TemplateError

Handler = Callable[[Any, Any], Any]

DEFAULT_STACK_FILE = REPO_ROOT / ".local" / "stack.json"
DEFAULT_ENV_FILE = REPO_ROOT / "env.json"
# Fake credentials for the local services; moto accepts any.
LOCAL_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",
    "AWS_SESSION_TOKEN": "local",
}


@dataclass
class LambdaContext:
    """The attributes and method of the Python runtime's context object."""

    function_name: str
    memory_limit_in_mb: int
    timeout_seconds: int
    invoked_function_arn: str
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = ""
    log_stream_name: str = ""
    identity: Any = None
    client_context: Any = None
    _deadline: float = field(default=0.0, repr=False)

    def __post_init__(self) -> None:
        self.log_group_name = self.log_group_name or f"/aws/lambda/{self.function_name}"
        if not self.log_stream_name:
            day = datetime.now(UTC).strftime("%Y/%m/%d")
            self.log_stream_name = f"{day}/[{self.function_version}]{uuid.uuid4().hex}"
        self._deadline = self._deadline or time.monotonic() + self.timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))

    @classmethod
    def for_function(cls, function: FunctionSpec, region: str, account_id: str) -> LambdaContext:
        """A fresh context per invocation: new request id, deadline from the template's Timeout."""
        return cls(
            function_name=function.function_name,
            memory_limit_in_mb=function.memory_size,
            timeout_seconds=function.timeout,
            invoked_function_arn=f"arn:aws:lambda:{region}:{account_id}:function:{function.function_name}",
        )


def function_environment(function: FunctionSpec, region: str) -> dict[str, str]:
    """The variables Lambda sets for a function (as ``sam local`` does) plus the template's own."""
    return {
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "AWS_LAMBDA_FUNCTION_NAME": function.function_name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory_size),
        "AWS_LAMBDA_FUNCTION_TIMEOUT": str(function.timeout),
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_HANDLER": function.handler,
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{function.function_name}",
        # Powertools treats this as "Lambda emulator": tracing off, no X-Ray daemon expected.
        "AWS_SAM_LOCAL": "true",
        **function.environment,
    }


def load_handler(
    function: FunctionSpec,
    region: str,
    extra_environment: Mapping[str, str] | None = None,
) -> Handler:
    """Set the function's environment, put its code on ``sys.path`` and import its handler.

    ``extra_environment`` carries what the sandbox adds around the template (local endpoint URLs,
    fake credentials); the template's own variables win over it.
    """
    os.environ.update(extra_environment or {})
    os.environ.update(function_environment(function, region))
    for path in (*function.layer_paths, function.code_uri):
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))
    try:
        module = importlib.import_module(function.module)
    except ImportError as error:
        raise TemplateError(
            f"{function.logical_id}: cannot import handler module {function.module!r} from {function.code_uri}: {error}"
        ) from error
    handler = getattr(module, function.attribute, None)
    if not callable(handler):
        raise TemplateError(f"{function.logical_id}: {function.handler!r} is not a callable in {function.code_uri}")
    return handler


# --- the running local stack, as seen from a client --------------------------------------------


def read_stack_file(path: Path = DEFAULT_STACK_FILE) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def stack_resources(stack: Mapping[str, Any] | None) -> LocalResources:
    """Template resolution for a running local stack (or, without one, plain template defaults)."""
    return LocalResources(**(stack or {}).get("resources", {}))


def stack_client_environment(stack: Mapping[str, Any]) -> dict[str, str]:
    """Point every boto3 client in this process at the local stack."""
    return {
        **LOCAL_CREDENTIALS,
        "AWS_ENDPOINT_URL_S3": stack["s3_endpoint_url"],
        "AWS_ENDPOINT_URL_DYNAMODB": stack.get("dynamodb_endpoint_url", stack["s3_endpoint_url"]),
        "AWS_ENDPOINT_URL_SQS": stack.get("sqs_endpoint_url", stack["s3_endpoint_url"]),
        "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": stack["endpoint_url"],
        "AWS_REGION": stack["region"],
        "AWS_DEFAULT_REGION": stack["region"],
    }


def env_file_overrides(path: Path, logical_id: str) -> dict[str, str]:
    """``sam local invoke --env-vars`` semantics: per-function values, then ``Parameters`` for all."""
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    merged = {**(data.get("Parameters") or {}), **(data.get(logical_id) or {})}
    return {name: str(value) for name, value in merged.items()}


def invoke(
    function_id: str,
    event: Any,
    template: Template,
    stack: Mapping[str, Any] | None,
    env_file: Path | None = None,
) -> Any:
    """Run one function's handler in this process, the way ``sam local invoke`` would."""
    resources = stack_resources(stack)
    region = (
        stack["region"] if stack else os.environ.get("AWS_REGION", os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))
    )
    function = template.function(function_id, resources)
    # Against the local stack the template's values stand (only endpoints differ); otherwise env.json's.
    overrides = {} if stack else env_file_overrides(env_file or DEFAULT_ENV_FILE, function_id)
    if overrides:
        function = with_environment(function, overrides)
    handler = load_handler(function, region, stack_client_environment(stack) if stack else None)
    context = LambdaContext.for_function(function, region, resources.account_id)
    return handler(event, context)


def add_function_arguments(parser: argparse.ArgumentParser) -> None:
    """The options by which the stack tells a child which function to run, and how (``load_function``)."""
    parser.add_argument("--function", required=True, help="logical id in template.yaml")
    parser.add_argument("--resources", default="{}", help="LocalResources as JSON")
    parser.add_argument("--template", type=Path, default=None)
    parser.add_argument("--environment", default="{}", help="JSON overrides of the template's variables")


def load_function(args: argparse.Namespace) -> tuple[LocalResources, FunctionSpec, Callable[[Any, Any], Any]]:
    """A stack child's function: the template's spec with ``--environment`` overrides, and its handler."""
    resources = LocalResources(**json.loads(args.resources))
    template_spec = Template.load(args.template).function(args.function, resources)
    function = with_environment(template_spec, json.loads(args.environment))
    return resources, function, load_handler(function, resources.region)


def with_environment(function: FunctionSpec, overrides: Mapping[str, str]) -> FunctionSpec:
    """The function with some of its template variables overridden (``sam local --env-vars``)."""
    return replace(function, environment={**function.environment, **overrides})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make invoke", description=__doc__.split("\n\n")[0])
    parser.add_argument("function", help="logical id in template.yaml, e.g. RouterFunction")
    parser.add_argument("event", type=Path, help="event JSON file, e.g. events/x.json")
    parser.add_argument("--template", type=Path, default=None)
    parser.add_argument("--stack-file", type=Path, default=DEFAULT_STACK_FILE)
    parser.add_argument("--env-vars", type=Path, default=DEFAULT_ENV_FILE, help="used only when no stack is up")
    args = parser.parse_args(argv)
    try:
        event = json.loads(args.event.read_text())
    except (OSError, ValueError) as error:
        parser.error(f"cannot read event {args.event}: {error}")
    stack = read_stack_file(args.stack_file)
    print(
        f"invoking {args.function} against {'the local stack (' + str(args.stack_file) + ')' if stack else 'real AWS'}",
        file=sys.stderr,
    )
    try:
        result = invoke(args.function, event, Template.load(args.template), stack, args.env_vars)
    except TemplateError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
