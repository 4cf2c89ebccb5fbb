"""DynamoDB transactions in moto at the cost DynamoDB charges: the items they name, not the whole table.

moto 5.2.5's ``transact_write_items`` deep-copies every table a transaction names before it starts,
to roll back on failure. The registry's promotion is one transaction, so each promotion copied every
version of every city: 3 ms on an empty table, 700 ms at 1,000 cities (measured with the real
``ModelRegistry.promote``), and the local stack slowed down as it filled. DynamoDB itself touches
only the named items. This keeps moto's transaction logic and its rollback semantics, but snapshots
only the partitions (hash keys) the transaction names and restores those on failure; the whole-table
copy becomes the live table (no copy), which the rollback then reassigns unchanged.

It also makes writes isolated, as DynamoDB's are: moto's threaded server runs requests concurrently, and
a transaction interleaved with another write to the same items could commit half (its ledger claim
without its aggregate update, seen in the quality demo). One lock serialises every write and read of
the backend's items; DynamoDB on AWS needs none of this.
"""

from __future__ import annotations

import contextvars
import copy
import functools
import threading
from collections.abc import Callable
from typing import Any

_SKIP_TABLE_COPY: contextvars.ContextVar[bool] = contextvars.ContextVar("skip_table_copy", default=False)
_ABSENT = object()
_installed = False
# Reentrant: a transaction calls the backend's own put_item/update_item/delete_item inside the lock.
_ITEMS_LOCK = threading.RLock()
_SERIALISED = ("put_item", "update_item", "delete_item", "get_item", "query", "scan", "batch_write_item")


def _serialised(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def locked(*args: Any, **kwargs: Any) -> Any:
        with _ITEMS_LOCK:
            return method(*args, **kwargs)

    return locked


def install() -> None:
    """Patch moto's DynamoDB backend (idempotent); call before the server handles requests."""
    global _installed
    if _installed:
        return
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.table import Table

    original = DynamoDBBackend.transact_write_items

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        with _ITEMS_LOCK:
            snapshots = _partition_snapshots(self, transact_items)
            token = _SKIP_TABLE_COPY.set(True)
            try:
                original(self, transact_items)
            except Exception:
                _restore(snapshots)
                raise
            finally:
                _SKIP_TABLE_COPY.reset(token)

    def table_deepcopy(self: Any, memo: dict[int, Any]) -> Any:
        if _SKIP_TABLE_COPY.get():
            return self
        # Python's default deep copy of an instance, for every other caller (backups, moto's own uses).
        clone = object.__new__(type(self))
        memo[id(self)] = clone
        clone.__dict__.update(copy.deepcopy(self.__dict__, memo))
        return clone

    for name in _SERIALISED:
        setattr(DynamoDBBackend, name, _serialised(getattr(DynamoDBBackend, name)))
    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]
    Table.__deepcopy__ = table_deepcopy  # type: ignore[attr-defined]
    _installed = True


def _partition_snapshots(backend: Any, transact_items: list[dict[str, Any]]) -> list[tuple[Any, Any, Any]]:
    from moto.dynamodb.models.dynamo_type import DynamoType

    snapshots = []
    seen: set[tuple[str, str]] = set()
    for entry in transact_items:
        _, operation = next(iter(entry.items()))
        table = backend.tables.get(operation.get("TableName"))
        if table is None:
            continue
        attributes = operation.get("Item") or operation.get("Key") or {}
        if table.hash_key_attr not in attributes:
            continue  # moto rejects it before writing anything
        hash_value = DynamoType(attributes[table.hash_key_attr])
        marker = (table.name, repr(hash_value))
        if marker in seen:
            continue
        seen.add(marker)
        saved = copy.deepcopy(table.items[hash_value]) if hash_value in table.items else _ABSENT
        snapshots.append((table, hash_value, saved))
    return snapshots


def _restore(snapshots: list[tuple[Any, Any, Any]]) -> None:
    for table, hash_value, saved in snapshots:
        if saved is _ABSENT:
            table.items.pop(hash_value, None)
        else:
            table.items[hash_value] = saved
