"""tests/iam.py: operations -> IAM permissions, and statement evaluation (the parts IAM defines)."""

from __future__ import annotations

import pytest

from tests.iam import Call, Permission, UnmappedOperation, grants, is_allowed, required_permissions

BUCKET_ARN = "arn:aws:s3:::b"
LIST_ONLY_PREFIX = {
    "Effect": "Allow",
    "Action": "s3:ListBucket",
    "Resource": BUCKET_ARN,
    "Condition": {"StringLike": {"s3:prefix": ["P/model_artifacts/*"]}},
}


@pytest.mark.parametrize(
    ("prefix", "allowed"), [("P/model_artifacts/Chicago_IL/", True), ("P/other/", False), ("", False)]
)
def test_list_bucket_honours_the_prefix_condition(prefix: str, allowed: bool) -> None:
    [permission] = required_permissions("s3", "ListObjectsV2", {"Bucket": "b", "Prefix": prefix})
    assert is_allowed([LIST_ONLY_PREFIX], permission) is allowed


def test_explicit_deny_beats_allow_and_actions_ignore_case() -> None:
    permission = Permission("s3:GetObject", f"{BUCKET_ARN}/k")
    allow = {"Effect": "Allow", "Action": "S3:Get*", "Resource": f"{BUCKET_ARN}/*"}
    deny = {"Effect": "Deny", "Action": "s3:*", "Resource": "*"}
    assert is_allowed([allow], permission)
    assert not is_allowed([allow, deny], permission)
    assert not is_allowed([], permission)


def test_transactions_need_each_items_action() -> None:
    needed = required_permissions(
        "dynamodb",
        "TransactWriteItems",
        {"TransactItems": [{"ConditionCheck": {"TableName": "t"}}, {"Put": {"TableName": "t"}}]},
    )
    assert [p.action for p in needed] == ["dynamodb:ConditionCheckItem", "dynamodb:PutItem"]


def test_an_unmapped_operation_is_reported_not_assumed_allowed() -> None:
    with pytest.raises(UnmappedOperation, match=r"s3\.DeleteObject has no IAM mapping"):
        required_permissions("s3", "DeleteObject", {"Bucket": "b", "Key": "k"})


def test_router_may_query_the_live_index_of_its_table_but_not_scan_it() -> None:
    # Given the router's role resolved from the transformed template, and a test environment
    router = grants("RouterFunction")
    environ = {"REGISTRY_TABLE": "test-table", "ENDPOINT_NAME": "test-endpoint"}

    def call(service: str, operation: str, **params: object) -> Call:
        return Call("RouterFunction", service, operation, params, environ)

    # Then the test's names are the template's, and only what the role grants passes
    assert router.denied(call("dynamodb", "Query", TableName="test-table", IndexName="live-models")) == []
    assert router.denied(call("sagemaker-runtime", "InvokeEndpoint", EndpointName="test-endpoint")) == []
    assert router.denied(call("dynamodb", "Scan", TableName="test-table"))
    assert router.denied(call("sagemaker-runtime", "InvokeEndpoint", EndpointName="someone-elses"))
