"""moto's DynamoDB transactions snapshot only the partitions they name, and still roll back exactly."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from local import moto_transactions

TABLE = "registry"


@pytest.fixture
def dynamodb() -> Iterator[Any]:
    moto_transactions.install()
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "city", "KeyType": "HASH"}, {"AttributeName": "record", "KeyType": "RANGE"}],
            AttributeDefinitions=[
                {"AttributeName": "city", "AttributeType": "S"},
                {"AttributeName": "record", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        yield client


def put(city: str, record: str, status: str) -> dict[str, Any]:
    return {
        "Put": {"TableName": TABLE, "Item": {"city": {"S": city}, "record": {"S": record}, "status": {"S": status}}}
    }


def everything(client: Any) -> list[dict[str, Any]]:
    return sorted(client.scan(TableName=TABLE)["Items"], key=lambda item: (item["city"]["S"], item["record"]["S"]))


def test_a_cancelled_transaction_leaves_every_item_as_it_was(dynamodb: Any) -> None:
    # Given items in the transaction's partition and in others
    for city in ("A", "B", "C"):
        dynamodb.put_item(TableName=TABLE, Item={"city": {"S": city}, "record": {"S": "live"}, "status": {"S": "v1"}})
    before = everything(dynamodb)
    # When a transaction writes two items (one new, one overwritten) and its last condition fails
    failing = {
        "ConditionCheck": {
            "TableName": TABLE,
            "Key": {"city": {"S": "C"}, "record": {"S": "live"}},
            "ConditionExpression": "#s = :v",
            "ExpressionAttributeNames": {"#s": "status"},
            "ExpressionAttributeValues": {":v": {"S": "never"}},
        }
    }
    with pytest.raises(ClientError, match="TransactionCanceledException"):
        dynamodb.transact_write_items(TransactItems=[put("A", "live", "v2"), put("D", "new", "x"), failing])
    # Then nothing changed: the overwritten item is back and the new partition is gone
    assert everything(dynamodb) == before


def test_a_committed_transaction_writes_and_never_copies_a_whole_table(
    dynamodb: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from moto.dynamodb.models.table import Table

    real_deepcopy = copy.deepcopy
    table_copies: list[bool] = []

    def spy(value: Any, memo: Any = None) -> Any:
        result = real_deepcopy(value, memo)
        if isinstance(value, Table):
            table_copies.append(result is not value)
        return result

    # Given moto's deep copies being watched
    monkeypatch.setattr("moto.dynamodb.models.copy.deepcopy", spy)
    # When a transaction commits
    dynamodb.transact_write_items(TransactItems=[put("A", "live", "v2"), put("A", "v#2", "live")])
    # Then its items are written, and no whole table was copied for it
    assert [item["status"]["S"] for item in everything(dynamodb)] == ["v2", "live"]
    assert table_copies
    assert not any(table_copies)


def test_other_deep_copies_of_a_table_are_still_real_copies(dynamodb: Any) -> None:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.dynamodb.models import dynamodb_backends

    table = dynamodb_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].tables[TABLE]
    clone = copy.deepcopy(table)
    assert clone is not table
    assert clone.items is not table.items


def test_concurrent_transactions_on_one_item_never_commit_half(dynamodb: Any) -> None:
    """A claim and an ADD in one transaction, from many threads at once: every ledger claim has its count."""
    import threading

    # Given an aggregate item and many threads each claiming a distinct label and adding 1 to it
    def claim_and_add(label: int) -> None:
        dynamodb.transact_write_items(
            TransactItems=[
                put("ledger", f"label#{label}", "claimed"),
                {
                    "Update": {
                        "TableName": TABLE,
                        "Key": {"city": {"S": "A"}, "record": {"S": "aggregate"}},
                        "UpdateExpression": "ADD #n :one",
                        "ExpressionAttributeNames": {"#n": "count"},
                        "ExpressionAttributeValues": {":one": {"N": "1"}},
                    }
                },
            ]
        )

    threads = [threading.Thread(target=claim_and_add, args=(label,)) for label in range(40)]
    # When they all run at once
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then the count equals the claims
    item = dynamodb.get_item(TableName=TABLE, Key={"city": {"S": "A"}, "record": {"S": "aggregate"}})["Item"]
    claims = dynamodb.query(
        TableName=TABLE, KeyConditionExpression="city = :c", ExpressionAttributeValues={":c": {"S": "ledger"}}
    )["Items"]
    assert int(item["count"]["N"]) == len(claims) == 40
