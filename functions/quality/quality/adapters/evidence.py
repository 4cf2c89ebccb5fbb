"""DynamoDB adapter of a capture object's rollout evidence: its ledger claim and its ADDs, in one transaction.

The transaction is drift's (``DynamoDriftStore.record_captures``: a ledger Put conditioned on
``attribute_not_exists`` and one ADD per item), on the rollouts' evidence items (``rollout#{candidate}``,
whose fields are all counts here); ``claimed`` reads the claim first, so a redelivered object is not
scored again.
"""

from __future__ import annotations

from botocore.exceptions import BotoCoreError, ClientError

from house_prices.errors import DependencyFailure
from quality.adapters.dynamodb import LEDGER_KEY, DynamoDriftStore


class DynamoEvidenceLedger(DynamoDriftStore):
    def claimed(self, ledger_key: str) -> bool:
        try:
            response = self._db.get_item(
                TableName=self._ledger,
                Key={LEDGER_KEY: {"S": ledger_key}},
                ConsistentRead=True,
                ProjectionExpression="#k",
                ExpressionAttributeNames={"#k": LEDGER_KEY},
            )
        except (ClientError, BotoCoreError) as error:
            raise DependencyFailure(f"DynamoDB GetItem failed: {error}") from error
        return "Item" in response
