"""docs/deployer-policy.json: the IAM rights `make deploy` needs, against what CloudFormation will call.

Each resource type of the transformed template (what CloudFormation receives) has a resource provider whose
create/read/update/delete handlers call AWS with the deployer's credentials; their permissions are listed in the
type's registry schema, which cfn-lint ships. Every one of them must be granted, except those a table below names
with the template feature that would need it and is not used.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from cfnlint.schema.manager import PROVIDER_SCHEMA_MANAGER

from local.template import LocalResources, Template
from tests.iam import Permission, is_allowed
from tests.sam_transform import source_template, transformed_template

ROOT = Path(__file__).resolve().parents[2]
POLICY = ROOT / "docs" / "deployer-policy.json"
REGION, ACCOUNT = "us-east-1", "123456789012"
# An IAM managed policy holds at most 6,144 characters, whitespace excluded.
MANAGED_POLICY_LIMIT = 6144
HANDLERS = ("create", "read", "update", "delete")
# Handler permissions this stack never needs: resource type ("*": any) -> action pattern -> why.
NOT_NEEDED: dict[str, dict[str, str]] = {
    "*": {
        "ec2:*": "no VpcConfig",
        "elasticfilesystem:*": "no FileSystemConfigs",
        "s3files:*": "no file systems",
        "kinesis:*": "no Kinesis streams",
        "s3tables:*": "no S3 metadata tables",
        "s3:REST.PUT.OBJECT": "not an IAM action",
        "kms:ListAliases": "no customer managed key (AWS managed keys, through their services)",
        "kms:RevokeGrant": "no customer managed key",
    },
    "AWS::ApplicationAutoScaling::ScalableTarget": {
        "lambda:*ProvisionedConcurrencyConfig": "the scalable target is a SageMaker variant, not a Lambda alias",
    },
    "AWS::DynamoDB::Table": {
        "dynamodb:ImportTable": "no ImportSourceSpecification",
        "dynamodb:DescribeImport": "no ImportSourceSpecification",
        "dynamodb:Scan": "data plane: imports only",
        "dynamodb:Query": "data plane: imports only",
        "dynamodb:GetItem": "data plane: imports only",
        "dynamodb:PutItem": "data plane: imports only",
        "dynamodb:UpdateItem": "data plane: imports only",
        "dynamodb:DeleteItem": "data plane: imports only",
        "dynamodb:BatchWriteItem": "data plane: imports only",
        "dynamodb:EnableKinesisStreamingDestination": "no KinesisStreamSpecification",
        "dynamodb:DisableKinesisStreamingDestination": "no KinesisStreamSpecification",
        "dynamodb:UpdateKinesisStreamingDestination": "no KinesisStreamSpecification",
        "dynamodb:CreateTableReplica": "no replicas",
        "dynamodb:AssociateTableReplica": "no replicas",
        "dynamodb:PutResourcePolicy": "no ResourcePolicy",
        "dynamodb:DeleteResourcePolicy": "no ResourcePolicy",
        "logs:CreateLogStream": "import logs only",
        "logs:PutLogEvents": "import logs only",
        "logs:DescribeLogStreams": "import logs only",
        "s3:GetObjectMetadata": "imports only",
    },
    "AWS::IAM::Role": {
        "iam:AttachRolePolicy": "no ManagedPolicyArns: every role carries inline policies only",
        "iam:PutRolePermissionsBoundary": "no PermissionsBoundary",
        "iam:DeleteRolePermissionsBoundary": "no PermissionsBoundary",
    },
    "AWS::Lambda::Function": {
        "lambda:GetCodeSigningConfig": "no CodeSigningConfigArn",
        "lambda:PutFunctionCodeSigningConfig": "no CodeSigningConfigArn",
        "lambda:DeleteFunctionCodeSigningConfig": "no CodeSigningConfigArn",
        "lambda:PutFunctionScalingConfig": "no capacity provider",
        "lambda:PassCapacityProvider": "no capacity provider",
        "lambda:AssociateRuntimeAlias": "no capacity provider",
    },
    "AWS::Logs::LogGroup": {
        "logs:AssociateKmsKey": "no KmsKeyId",
        "logs:DisassociateKmsKey": "no KmsKeyId",
    },
    "AWS::SageMaker::EndpointConfig": {"kms:DescribeKey": "no KmsKeyId"},
}


@cache
def policy() -> dict[str, Any]:
    return dict(json.loads(POLICY.read_text()))


def statements() -> list[dict[str, Any]]:
    return list(policy()["Statement"])


def resource_types() -> list[str]:
    return sorted({resource["Type"] for resource in transformed_template()["Resources"].values()})


def handler_permissions(resource_type: str) -> Iterator[tuple[str, str]]:
    handlers = PROVIDER_SCHEMA_MANAGER.get_resource_schema(REGION, resource_type).schema["handlers"]
    for handler in HANDLERS:
        for action in handlers.get(handler, {}).get("permissions", []):
            yield handler, action


def not_needed(resource_type: str, action: str) -> str | None:
    for scope in ("*", resource_type):
        for pattern, reason in NOT_NEEDED.get(scope, {}).items():
            if re.fullmatch(pattern.replace("*", ".*"), action, re.IGNORECASE):
                return reason
    return None


def action_granted(action: str) -> bool:
    """Granted by some Allow statement, on some resource (the resource checks are below)."""
    for statement in statements():
        patterns = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        if any(re.fullmatch(p.replace("*", ".*"), action, re.IGNORECASE) for p in patterns):
            return True
    return False


def test_the_policy_is_a_valid_managed_policy_document() -> None:
    document = policy()
    assert document["Version"] == "2012-10-17"
    sids = [statement["Sid"] for statement in statements()]
    assert len(sids) == len(set(sids))
    for statement in statements():
        assert statement["Effect"] == "Allow"
        assert set(statement) <= {"Sid", "Effect", "Action", "Resource", "Condition"}
        assert statement["Action"]
        assert statement["Resource"]
    assert len(json.dumps(document, separators=(",", ":"))) <= MANAGED_POLICY_LIMIT


def test_no_statement_grants_a_whole_service_on_every_resource() -> None:
    # Least privilege: "service:*" on "*" only where the developer guide's own auto scaling policy does so.
    for statement in statements():
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        assert "*" not in actions
        if statement["Resource"] == "*":
            assert [a for a in actions if a.endswith(":*")] in ([], ["application-autoscaling:*"]), statement["Sid"]


@pytest.mark.parametrize("resource_type", resource_types())
def test_every_handler_permission_of_every_resource_type_is_granted(resource_type: str) -> None:
    # Given what CloudFormation's handlers for this type call with the deployer's credentials
    missing = [
        f"{handler}: {action}"
        for handler, action in handler_permissions(resource_type)
        if not not_needed(resource_type, action) and not action_granted(action)
    ]
    # Then the policy grants each, unless the table above says why it is not needed
    assert missing == [], f"{resource_type}: add to docs/deployer-policy.json or to NOT_NEEDED with the reason"


def test_the_not_needed_table_names_only_real_handler_permissions() -> None:
    # A stale entry would hide nothing, but would claim a reason nobody checks.
    types = resource_types()
    for scope, entries in NOT_NEEDED.items():
        scoped = types if scope == "*" else [scope]
        assert scope == "*" or scope in types, scope
        for pattern in entries:
            assert any(
                re.fullmatch(pattern.replace("*", ".*"), action, re.IGNORECASE)
                for resource_type in scoped
                for _, action in handler_permissions(resource_type)
            ), f"{scope}: {pattern}"


def test_the_table_covers_the_source_templates_types_too() -> None:
    # AWS::Serverless::* types become the transformed types above; every plain type is there as itself.
    source = {r["Type"] for r in source_template()["Resources"].values()}
    assert {t for t in source if not t.startswith("AWS::Serverless::")} <= set(resource_types())


def names(stack_name: str, bucket_prefix: str, endpoint: str) -> tuple[LocalResources, Template]:
    resources = LocalResources(
        stack_name=stack_name,
        region=REGION,
        account_id=ACCOUNT,
        parameters={
            "SourceDirS3Uri": "s3://deploy/code/sourcedir.tar.gz",
            "BucketNamePrefix": bucket_prefix,
            "EndpointName": endpoint,
        },
    )
    return resources, Template.load(ROOT / "template.yaml")


@pytest.mark.parametrize(
    ("stack_name", "bucket_prefix", "endpoint"),
    [
        ("house-prices-mme", "house-prices-mme", "house-prices-mme"),
        ("house-prices-mme-prod", "house-prices-prod", "house-prices-mme-prod"),
    ],
)
def test_the_grants_reach_the_resources_each_samconfig_environment_names(
    stack_name: str, bucket_prefix: str, endpoint: str
) -> None:
    resources, template = names(stack_name, bucket_prefix, endpoint)
    arn = f"arn:aws:{{}}:{REGION}:{ACCOUNT}:{{}}"
    granted = [
        Permission("cloudformation:CreateChangeSet", arn.format("cloudformation", f"stack/{stack_name}/1")),
        Permission("cloudformation:ExecuteChangeSet", arn.format("cloudformation", f"stack/{stack_name}/1")),
        Permission(
            "cloudformation:CreateChangeSet", f"arn:aws:cloudformation:{REGION}:aws:transform/Serverless-2016-10-31"
        ),
        Permission(
            "cloudformation:CreateChangeSet", arn.format("cloudformation", "stack/aws-sam-cli-managed-default/1")
        ),
        Permission("s3:CreateBucket", f"arn:aws:s3:::{bucket_prefix}-{ACCOUNT}-{REGION}"),
        Permission("s3:PutBucketNotification", f"arn:aws:s3:::{bucket_prefix}-{ACCOUNT}-{REGION}"),
        Permission(
            "s3:PutObject", "arn:aws:s3:::aws-sam-cli-managed-default-samclisourcebucket-1a2b/x/sourcedir.tar.gz"
        ),
        Permission("sagemaker:CreateEndpoint", arn.format("sagemaker", f"endpoint/{endpoint}")),
        Permission("sagemaker:UpdateEndpoint", arn.format("sagemaker", f"endpoint/{endpoint}")),
        Permission("sagemaker:CreateModel", arn.format("sagemaker", "model/multimodel-a1b2")),
        Permission("lambda:CreateFunction", arn.format("lambda", f"function:{stack_name}-RouterFunction-A1")),
        Permission("lambda:PublishLayerVersion", arn.format("lambda", "layer:CommonLayer")),
        Permission("dynamodb:CreateTable", arn.format("dynamodb", f"table/{stack_name}-RegistryTable-A1")),
        Permission("sqs:CreateQueue", arn.format("sqs", f"{stack_name}-ModelSyncDeadLetterQueue-A1")),
        Permission("iam:CreateRole", f"arn:aws:iam::{ACCOUNT}:role/{stack_name}-RouterFunctionRole-A1"),
        Permission("iam:PutRolePolicy", f"arn:aws:iam::{ACCOUNT}:role/{stack_name}-SageMakerExecutionRole-A1"),
        Permission(
            "iam:PassRole",
            f"arn:aws:iam::{ACCOUNT}:role/{stack_name}-SageMakerExecutionRole-A1",
            {"iam:PassedToService": "sagemaker.amazonaws.com"},
        ),
        Permission("cloudwatch:PutDashboard", f"arn:aws:cloudwatch::{ACCOUNT}:dashboard/{stack_name}"),
        Permission("apigateway:POST", f"arn:aws:apigateway:{REGION}::/apis"),
    ]
    # Every alarm and every log group the template names, as it names them
    for logical_id in template.logical_ids("AWS::CloudWatch::Alarm"):
        name = template.resolve(template.resources[logical_id]["Properties"]["AlarmName"], resources)
        granted.append(Permission("cloudwatch:PutMetricAlarm", arn.format("cloudwatch", f"alarm:{name}")))
    for logical_id in template.logical_ids("AWS::Logs::LogGroup"):
        name = template.ref(logical_id, resources)
        granted.append(Permission("logs:CreateLogGroup", arn.format("logs", f"log-group:{name}")))
        granted.append(Permission("logs:PutRetentionPolicy", arn.format("logs", f"log-group:{name}:*")))
    for permission in granted:
        assert is_allowed(statements(), permission), str(permission)


def test_the_grants_stop_at_this_projects_resources() -> None:
    arn = f"arn:aws:{{}}:{REGION}:{ACCOUNT}:{{}}"
    refused = [
        Permission("cloudformation:ExecuteChangeSet", arn.format("cloudformation", "stack/payroll/1")),
        Permission("s3:DeleteBucket", "arn:aws:s3:::payroll-data"),
        Permission("s3:GetObject", "arn:aws:s3:::payroll-data/salaries.csv"),
        Permission("sagemaker:DeleteEndpoint", arn.format("sagemaker", "endpoint/fraud-model")),
        Permission("lambda:UpdateFunctionCode", arn.format("lambda", "function:payroll-run")),
        Permission("iam:PutRolePolicy", f"arn:aws:iam::{ACCOUNT}:role/Admin"),
        Permission("iam:AttachRolePolicy", f"arn:aws:iam::{ACCOUNT}:role/house-prices-mme-RouterFunctionRole-A1"),
        Permission(
            "iam:PassRole",
            f"arn:aws:iam::{ACCOUNT}:role/house-prices-mme-SageMakerExecutionRole-A1",
            {"iam:PassedToService": "ec2.amazonaws.com"},
        ),
        Permission("logs:DeleteLogGroup", arn.format("logs", "log-group:/aws/lambda/payroll-run")),
        Permission("dynamodb:DeleteTable", arn.format("dynamodb", "table/payroll")),
        Permission("kms:Decrypt", arn.format("kms", "key/1"), {"kms:ViaService": "ec2.us-east-1.amazonaws.com"}),
    ]
    for permission in refused:
        assert not is_allowed(statements(), permission), str(permission)
