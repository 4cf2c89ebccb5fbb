"""template.yaml through the real SAM transform (what CloudFormation runs), for each AuthType.

cfn-lint and `sam validate --lint` accept some templates the transform rejects (an intrinsic in
HttpApi Auth.DefaultAuthorizer is one), so the transform itself is exercised here.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from house_prices import http_api
from tests.graphs import find_cycle
from tests.sam_transform import source_template as load_source_template
from tests.sam_transform import transform


def _without_intrinsics(value: Any, conditions: dict[str, bool]) -> Any:
    """Resolve Fn::If / AWS::NoValue the way CloudFormation does for known condition values."""
    if isinstance(value, dict):
        if set(value) == {"Fn::If"}:
            name, if_true, if_false = value["Fn::If"]
            return _without_intrinsics(if_true if conditions[name] else if_false, conditions)
        resolved = {k: _without_intrinsics(v, conditions) for k, v in value.items()}
        return {k: v for k, v in resolved.items() if v != {"Ref": "AWS::NoValue"}}
    if isinstance(value, list):
        return [_without_intrinsics(v, conditions) for v in value if v != {"Ref": "AWS::NoValue"}]
    return value


@pytest.fixture(scope="module")
def source_template() -> dict[str, Any]:
    return load_source_template()


@pytest.fixture(scope="module")
def transformed(source_template: dict[str, Any]) -> dict[str, Any]:
    return transform(source_template)


def _references(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref" and isinstance(value, str):
                yield value
            elif key == "Fn::GetAtt":
                yield (value[0] if isinstance(value, list) else value.split(".")[0])
            elif key == "Fn::Sub":
                text = value if isinstance(value, str) else value[0]
                yield from (m.split(".")[0] for m in re.findall(r"\$\{([^}!]+)\}", text))
                if not isinstance(value, str):
                    yield from _references(value[1])
            else:
                yield from _references(value)
    elif isinstance(node, list):
        for item in node:
            yield from _references(item)


def test_transform_has_no_circular_dependency(transformed: dict[str, Any]) -> None:
    """Given the transformed template, when following Ref/GetAtt/Sub/DependsOn, then no resource
    depends on itself (the bucket -> notification -> function -> policy -> bucket trap)."""
    resources = transformed["Resources"]
    graph: dict[str, set[str]] = {}
    for name, resource in resources.items():
        depends = resource.get("DependsOn", [])
        depends = [depends] if isinstance(depends, str) else list(depends)
        refs = set(_references(resource.get("Properties", {}))) | set(depends)
        graph[name] = {r for r in refs if r in resources and r != name}
    assert find_cycle(graph) is None, find_cycle(graph)
    # Sanity check of the checker itself: the bucket's notification does point at the function.
    assert "ModelSyncFunction" in graph["ArtifactBucket"]


@pytest.mark.parametrize(("auth_type", "use_iam"), [("AWS_IAM", True), ("NONE", False)])
def test_every_route_is_iam_protected_exactly_when_auth_type_is_aws_iam(
    transformed: dict[str, Any], auth_type: str, use_iam: bool
) -> None:
    """Given AuthType, when CloudFormation resolves UseIamAuth in the API body, then every route carries
    SigV4 security (what SAM emits for DefaultAuthorizer AWS_IAM) or none at all."""
    condition = transformed["Conditions"]["UseIamAuth"]
    assert condition == {"Fn::Equals": [{"Ref": "AuthType"}, "AWS_IAM"]}
    api = next(r for r in transformed["Resources"].values() if r["Type"] == "AWS::ApiGatewayV2::Api")
    body = _without_intrinsics(api["Properties"]["Body"], {"UseIamAuth": auth_type == "AWS_IAM"})
    seen = set()
    for path, operations in body["paths"].items():
        for method, operation in operations.items():
            seen.add((method.upper(), path))
            integration = operation["x-amazon-apigateway-integration"]
            assert integration["payloadFormatVersion"] == "2.0"
            assert "${RouterFunction.Arn}" in integration["uri"]["Fn::Sub"]
            if use_iam:
                assert operation["security"] == [{"AWS_IAM": []}]
                assert body["components"]["securitySchemes"]["AWS_IAM"]["x-amazon-apigateway-authtype"] == "awsSigv4"
            else:
                assert "security" not in operation
    assert seen == {(route.method, route.path) for route in http_api.ROUTES}


def test_sam_generates_invoke_permissions_and_the_throttled_default_stage(transformed: dict[str, Any]) -> None:
    resources = transformed["Resources"]
    permissions = [r for r in resources.values() if r["Type"] == "AWS::Lambda::Permission"]
    principals = sorted(p["Properties"]["Principal"] for p in permissions)
    # S3 invokes model-sync (training outputs) and the quality function (label files, capture objects);
    # EventBridge's schedule invokes the rollout decider.
    assert principals == (
        ["apigateway.amazonaws.com"] * len(http_api.ROUTES) + ["events.amazonaws.com"] + ["s3.amazonaws.com"] * 3
    )
    stage = next(r for r in resources.values() if r["Type"] == "AWS::ApiGatewayV2::Stage")
    assert stage["Properties"]["StageName"] == "$default"
    assert stage["Properties"]["DefaultRouteSettings"]["ThrottlingBurstLimit"] == {"Ref": "ApiThrottlingBurstLimit"}
    assert stage["Properties"]["AccessLogSettings"]["DestinationArn"] == {"Fn::GetAtt": ["HttpApiAccessLogs", "Arn"]}


def test_functions_use_their_own_log_groups_and_the_layer(transformed: dict[str, Any]) -> None:
    resources = transformed["Resources"]
    layer = next(name for name, r in resources.items() if r["Type"] == "AWS::Lambda::LayerVersion")
    for name, group in (("RouterFunction", "RouterLogGroup"), ("ModelSyncFunction", "ModelSyncLogGroup")):
        function = resources[name]["Properties"]
        assert function["LoggingConfig"] == {"LogFormat": "JSON", "LogGroup": {"Ref": group}}
        assert function["Layers"] == [{"Ref": layer}]
        assert function["Runtime"] == "python3.13"
        assert function["TracingConfig"] == {"Mode": "Active"}


def test_browser_preflights_are_answered_by_api_gateway(transformed: dict[str, Any]) -> None:
    """Given the transformed API, then its body carries a CORS configuration, so OPTIONS preflights are
    answered by API Gateway (they never reach the router, and IAM auth would reject them there)."""
    api = next(r for r in transformed["Resources"].values() if r["Type"] == "AWS::ApiGatewayV2::Api")
    cors = api["Properties"]["Body"]["x-amazon-apigateway-cors"]
    assert cors["allowOrigins"] == ["*"]
    assert {"GET", "POST", "OPTIONS"} <= set(cors["allowMethods"])
    assert "authorization" in cors["allowHeaders"]


def test_functions_run_with_their_own_roles_without_account_wide_log_rights(transformed: dict[str, Any]) -> None:
    """Given the transformed template, then each function runs with its declared role, no role carries a
    managed policy (AWSLambdaBasicExecutionRole grants logs:* on *), and a function's log rights name
    only its own log group."""
    resources = transformed["Resources"]
    roles = {name: r for name, r in resources.items() if r["Type"] == "AWS::IAM::Role"}
    assert not [name for name, role in roles.items() if role["Properties"].get("ManagedPolicyArns")]
    for function, role, group in (
        ("RouterFunction", "RouterFunctionRole", "RouterLogGroup"),
        ("ModelSyncFunction", "ModelSyncFunctionRole", "ModelSyncLogGroup"),
    ):
        assert resources[function]["Properties"]["Role"] == {"Fn::GetAtt": [role, "Arn"]}
        statements = [s for p in roles[role]["Properties"]["Policies"] for s in p["PolicyDocument"]["Statement"]]
        log_statements = [s for s in statements if any(str(a).startswith("logs:") for a in _as_list(s["Action"]))]
        assert log_statements, role
        for statement in log_statements:
            assert set(_as_list(statement["Action"])) == {"logs:CreateLogStream", "logs:PutLogEvents"}
            assert statement["Resource"] == {"Fn::GetAtt": [group, "Arn"]}


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]
