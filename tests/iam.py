"""Is an AWS API call allowed by the IAM statements template.yaml grants a function? One home for:

- the statements: the function's execution role in the *transformed* template (SAM's generated role,
  policy templates and destination policies included; a managed policy cannot be read offline and is
  an error), with intrinsics resolved by local.template against a stand-in stack;
- the IAM actions and resource ARNs a botocore operation needs (a table of the operations the
  handlers use; an operation missing from it is reported, never assumed allowed);
- evaluation: explicit Deny wins, then any Allow whose Action, Resource and Condition match.

Names in recorded requests are the test's; they are translated to the template's through the
function's environment (the test's ``REGISTRY_TABLE`` value is the template's ``!Ref RegistryTable``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from local.template import LocalResources, Template
from tests.sam_transform import transformed_template

REGION = "us-east-1"
ACCOUNT = "123456789012"
STACK = "house-prices-local"
# Variables whose value is a key prefix rather than a whole name.
PREFIX_VARIABLES = ("MODEL_PREFIX",)


@dataclass(frozen=True)
class Permission:
    action: str
    resource: str
    context: Mapping[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        context = f" with {dict(self.context)}" if self.context else ""
        return f"{self.action} on {self.resource}{context}"


@dataclass(frozen=True)
class Call:
    """One botocore operation a handler made, with the environment it ran in."""

    function: str
    service: str  # botocore's service name, e.g. "s3", "sagemaker-runtime"
    operation: str
    params: Mapping[str, Any]
    environ: Mapping[str, str]

    def __str__(self) -> str:
        return f"{self.function}: {self.service}.{self.operation}"


class UnmappedOperation(LookupError):
    pass


# --- what an operation needs --------------------------------------------------------------------


def _s3_object(bucket: str, key: str) -> str:
    return f"arn:aws:s3:::{bucket}/{key}"


def _copy_source(params: Mapping[str, Any]) -> tuple[str, str]:
    source = params["CopySource"]
    if isinstance(source, str):
        bucket, _, key = source.lstrip("/").partition("/")
        return bucket, key.split("?versionId=")[0]
    return source["Bucket"], source["Key"]


def _s3_copy(params: Mapping[str, Any]) -> list[Permission]:
    bucket, key = _copy_source(params)
    needed = [
        Permission("s3:GetObject", _s3_object(bucket, key)),
        Permission("s3:PutObject", _s3_object(params["Bucket"], params["Key"])),
    ]
    if params.get("TaggingDirective", "COPY") == "COPY":
        # Copying tags reads them from the source and writes them to the destination.
        needed += [
            Permission("s3:GetObjectTagging", _s3_object(bucket, key)),
            Permission("s3:PutObjectTagging", _s3_object(params["Bucket"], params["Key"])),
        ]
    return needed


def _s3_put(params: Mapping[str, Any]) -> list[Permission]:
    needed = [Permission("s3:PutObject", _s3_object(params["Bucket"], params["Key"]))]
    if params.get("Tagging"):
        needed.append(Permission("s3:PutObjectTagging", _s3_object(params["Bucket"], params["Key"])))
    return needed


def _table(params: Mapping[str, Any]) -> str:
    return f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{params['TableName']}"


def _dynamodb_query(params: Mapping[str, Any]) -> list[Permission]:
    index = params.get("IndexName")
    resource = _table(params) + (f"/index/{index}" if index else "")
    return [Permission("dynamodb:Query", resource)]


_TRANSACT_ACTIONS = {
    "ConditionCheck": "dynamodb:ConditionCheckItem",
    "Put": "dynamodb:PutItem",
    "Update": "dynamodb:UpdateItem",
    "Delete": "dynamodb:DeleteItem",
}


def _dynamodb_transact_write(params: Mapping[str, Any]) -> list[Permission]:
    # IAM authorises each item's action on its table; TransactWriteItems is no IAM action itself.
    return [
        Permission(_TRANSACT_ACTIONS[kind], _table(body))
        for item in params["TransactItems"]
        for kind, body in item.items()
    ]


def _dynamodb_batch_write(params: Mapping[str, Any]) -> list[Permission]:
    # IAM authorises BatchWriteItem once per table of the request.
    return [Permission("dynamodb:BatchWriteItem", _table({"TableName": name})) for name in params["RequestItems"]]


def _dynamodb_item(action: str) -> Callable[[Mapping[str, Any]], list[Permission]]:
    return lambda params: [Permission(action, _table(params))]


_OPERATIONS: dict[tuple[str, str], Callable[[Mapping[str, Any]], list[Permission]]] = {
    ("s3", "HeadObject"): lambda p: [Permission("s3:GetObject", _s3_object(p["Bucket"], p["Key"]))],
    ("s3", "GetObject"): lambda p: [Permission("s3:GetObject", _s3_object(p["Bucket"], p["Key"]))],
    ("s3", "GetObjectTagging"): lambda p: [Permission("s3:GetObjectTagging", _s3_object(p["Bucket"], p["Key"]))],
    ("s3", "PutObject"): _s3_put,
    ("s3", "CopyObject"): _s3_copy,
    ("s3", "CreateMultipartUpload"): _s3_put,
    ("s3", "UploadPart"): lambda p: [Permission("s3:PutObject", _s3_object(p["Bucket"], p["Key"]))],
    ("s3", "UploadPartCopy"): lambda p: _s3_copy({**p, "TaggingDirective": "REPLACE"}),
    ("s3", "CompleteMultipartUpload"): lambda p: [Permission("s3:PutObject", _s3_object(p["Bucket"], p["Key"]))],
    ("s3", "AbortMultipartUpload"): lambda p: [
        Permission("s3:AbortMultipartUpload", _s3_object(p["Bucket"], p["Key"]))
    ],
    ("s3", "ListObjectsV2"): lambda p: [
        Permission("s3:ListBucket", f"arn:aws:s3:::{p['Bucket']}", {"s3:prefix": p.get("Prefix", "")})
    ],
    ("dynamodb", "GetItem"): _dynamodb_item("dynamodb:GetItem"),
    ("dynamodb", "PutItem"): _dynamodb_item("dynamodb:PutItem"),
    ("dynamodb", "UpdateItem"): _dynamodb_item("dynamodb:UpdateItem"),
    ("dynamodb", "DeleteItem"): _dynamodb_item("dynamodb:DeleteItem"),
    ("dynamodb", "Scan"): _dynamodb_item("dynamodb:Scan"),
    ("dynamodb", "Query"): _dynamodb_query,
    # IAM authorises BatchGetItem on each table it reads.
    ("dynamodb", "BatchGetItem"): lambda p: [
        Permission("dynamodb:BatchGetItem", _table({"TableName": table})) for table in p["RequestItems"]
    ],
    ("dynamodb", "TransactWriteItems"): _dynamodb_transact_write,
    ("dynamodb", "BatchWriteItem"): _dynamodb_batch_write,
    # A queue URL ends in the queue's name (locally the template's Ref of a queue is that name).
    ("sqs", "SendMessage"): lambda p: [
        Permission("sqs:SendMessage", f"arn:aws:sqs:{REGION}:{ACCOUNT}:{p['QueueUrl'].rsplit('/', 1)[-1]}")
    ],
    ("sagemaker-runtime", "InvokeEndpoint"): lambda p: [
        # SageMaker lower-cases names inside ARNs.
        Permission(
            "sagemaker:InvokeEndpoint", f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/{p['EndpointName'].lower()}"
        )
    ],
}
_NAME_PARAMETERS = ("Bucket", "TableName", "EndpointName", "QueueUrl")


def required_permissions(service: str, operation: str, params: Mapping[str, Any]) -> list[Permission]:
    try:
        needs = _OPERATIONS[(service, operation)]
    except KeyError:
        raise UnmappedOperation(f"{service}.{operation} has no IAM mapping in tests/iam.py; add it") from None
    return needs(params)


# --- the template's grants -----------------------------------------------------------------------


@dataclass(frozen=True)
class FunctionGrants:
    logical_id: str
    statements: tuple[Mapping[str, Any], ...]
    environment: Mapping[str, str]

    def translate(self, call: Call) -> dict[str, Any]:
        """The call's parameters with the test's names replaced by the template's (via the environment)."""
        names = {
            call.environ[name]: value
            for name, value in self.environment.items()
            if name in call.environ and name not in PREFIX_VARIABLES
        }
        prefixes = [
            (call.environ[name], self.environment[name])
            for name in PREFIX_VARIABLES
            if name in call.environ and name in self.environment
        ]

        def rename(value: Any) -> Any:
            if isinstance(value, dict):
                renamed = {
                    k: (names.get(v, v) if k in _NAME_PARAMETERS and isinstance(v, str) else rename(v))
                    for k, v in value.items()
                }
                items = renamed.get("RequestItems")
                if isinstance(items, dict):  # BatchWriteItem: the tables are its keys
                    renamed["RequestItems"] = {names.get(k, k): v for k, v in items.items()}
                return renamed
            if isinstance(value, list):
                return [rename(item) for item in value]
            if isinstance(value, str):
                for ours, theirs in prefixes:
                    if value.startswith(f"{ours}/"):
                        return theirs + value[len(ours) :]
            return value

        renamed = rename(dict(call.params))
        assert isinstance(renamed, dict)
        return renamed

    def denied(self, call: Call) -> list[Permission]:
        """The permissions ``call`` needs that these statements do not grant."""
        needed = required_permissions(call.service, call.operation, self.translate(call))
        return [permission for permission in needed if not is_allowed(self.statements, permission)]


@cache
def grants(logical_id: str) -> FunctionGrants:
    """``logical_id``'s effective statements, from its role in the transformed template."""
    document = transformed_template()
    template = Template(document)
    resources = LocalResources(
        stack_name=STACK,
        region=REGION,
        account_id=ACCOUNT,
        parameters={"SourceDirS3Uri": "s3://deploy-bucket/code/sourcedir.tar.gz"},
    )
    endpoint_name = template.parameter("EndpointName", resources)
    resources = LocalResources(
        stack_name=STACK,
        region=REGION,
        account_id=ACCOUNT,
        parameters=dict(resources.parameters),
        # Ref of an AWS::SageMaker::Endpoint is its ARN.
        refs={"Endpoint": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/{endpoint_name}"},
    )
    function = document["Resources"][logical_id]["Properties"]
    role_id = function["Role"]["Fn::GetAtt"][0]
    role = document["Resources"][role_id]["Properties"]
    managed = role.get("ManagedPolicyArns") or []
    if managed:
        raise AssertionError(f"{role_id} has managed policies {managed}: their statements cannot be checked offline")
    statements: list[Mapping[str, Any]] = []
    for policy in role.get("Policies") or []:
        resolved = template.resolve(policy["PolicyDocument"], resources, where=f"{role_id}.Policies")
        statements.extend(_as_list(resolved["Statement"]))
    # The source template: the transformed function has no CodeUri, and the environment is the same.
    environment = Template.load().function(logical_id, resources).environment
    return FunctionGrants(logical_id, tuple(statements), environment)


# --- evaluation ----------------------------------------------------------------------------------


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _wildcard(pattern: str, value: str, ignore_case: bool = False) -> bool:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, re.IGNORECASE if ignore_case else 0) is not None


def _matches_any(patterns: Iterable[str], value: str, ignore_case: bool = False) -> bool:
    return any(_wildcard(str(pattern), value, ignore_case) for pattern in patterns)


_CONDITIONS: dict[str, Callable[[Sequence[str], str], bool]] = {
    "StringEquals": lambda expected, actual: actual in expected,
    "StringLike": lambda expected, actual: _matches_any(expected, actual),
}


def _condition_holds(condition: Mapping[str, Any], context: Mapping[str, str]) -> bool:
    for operator, tests in condition.items():
        if operator not in _CONDITIONS:
            raise ValueError(f"condition operator {operator} is not supported by tests/iam.py")
        for key, expected in tests.items():
            # A key the request does not carry fails the test (IAM's rule without ...IfExists).
            if key not in context or not _CONDITIONS[operator]([str(e) for e in _as_list(expected)], context[key]):
                return False
    return True


def _statement_matches(statement: Mapping[str, Any], permission: Permission) -> bool:
    if "Action" in statement:
        action_ok = _matches_any(_as_list(statement["Action"]), permission.action, ignore_case=True)
    else:
        action_ok = not _matches_any(_as_list(statement["NotAction"]), permission.action, ignore_case=True)
    if "Resource" in statement:
        resource_ok = _matches_any(_as_list(statement["Resource"]), permission.resource)
    else:
        resource_ok = not _matches_any(_as_list(statement["NotResource"]), permission.resource)
    return action_ok and resource_ok and _condition_holds(statement.get("Condition") or {}, permission.context)


def is_allowed(statements: Iterable[Mapping[str, Any]], permission: Permission) -> bool:
    matching = [s for s in statements if _statement_matches(s, permission)]
    if any(s.get("Effect") == "Deny" for s in matching):
        return False
    return any(s.get("Effect") == "Allow" for s in matching)


# --- recording the calls handlers make -----------------------------------------------------------


class CallRecorder:
    """Records every botocore operation made while a template function's handler runs in this process.

    Each client gets a ``before-parameter-build`` hook (it sees the API parameters) when it is created
    (hooks do not reach existing clients); the handler entry points named by template.yaml are wrapped
    to say which function is running. Stubbed calls (botocore's Stubber) build parameters too, so they
    are checked like real ones.
    """

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.running: str | None = None

    def hook(self, model: Any, params: Mapping[str, Any], **_: Any) -> None:
        if self.running is None:
            return
        import os

        self.calls.append(
            Call(
                function=self.running,
                service=model.service_model.service_name,
                operation=model.name,
                params=dict(params),
                environ=dict(os.environ),
            )
        )

    def wrap(self, logical_id: str, handler: Callable[..., Any]) -> Callable[..., Any]:
        def recorded(*args: Any, **kwargs: Any) -> Any:
            outer, self.running = self.running, logical_id
            try:
                return handler(*args, **kwargs)
            finally:
                self.running = outer

        return recorded

    def denials(self) -> list[str]:
        problems = []
        for call in self.calls:
            try:
                denied = grants(call.function).denied(call)
            except UnmappedOperation as error:
                problems.append(f"{call}: {error}")
                continue
            problems.extend(f"{call} needs {permission}, which template.yaml does not grant" for permission in denied)
        return problems
