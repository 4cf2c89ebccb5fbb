"""Durable state for the local moto server: a write-ahead journal of S3, DynamoDB and SQS changes.

moto keeps everything in memory, so a crash of its process (or the next ``make up``) would lose
every object, registry item and pending event. This module makes that state survive:

* **S3 and DynamoDB**: a WSGI middleware in front of moto appends each *successful, mutating*
  request (S3 ``PUT``/``POST``/``DELETE``, DynamoDB operations other than reads) to the journal
  before the client gets its answer, so an acknowledged write is never lost. Replay sends the same
  requests to the restarted server, over HTTP, through moto's own handlers.
* **SQS**: requests cannot be replayed (receipt handles are random, and S3 → SQS notifications
  are sent inside moto, not over HTTP), so the journal records messages instead: every message a
  queue gains (``SendMessage``, S3 event notifications, redrive) and every message deleted or
  purged. Replay puts back the messages that were never deleted, with their original ids and sent
  timestamps; their receive counts start again at zero (SQS's at-least-once delivery: an event in
  flight during a crash is delivered again).

Why not moto's own recorder (``/moto-api/recorder/``, moto 5.2.5)? It records *every* request
(each dispatcher long-poll, every read) *before* moto answers it, so failed writes are replayed
too; it cannot replay receipt handles or multipart upload ids; replayed ``PutObject`` calls fire
S3 notifications again; and its file is written without a lock, so concurrent or killed writers
leave torn lines that break the whole replay. moto has no state snapshot for server mode.

Replay writes a fresh journal next to the old one and swaps it in only when complete, so a crash
during replay loses nothing either. A torn last line (a write cut short by SIGKILL, never
acknowledged to its client) is dropped. Bucket notifications are not journaled: the stack applies
them from the template after replay, so replayed uploads never fire duplicate events.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import http.client
import json
import logging
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

log = logging.getLogger("local.journal")

JOURNAL_NAME = "journal.jsonl"
LOCK_NAME = "journal.lock"
# DynamoDB operations that change nothing; every other operation is journaled.
_DYNAMODB_READS = frozenset(
    {
        "GetItem",
        "BatchGetItem",
        "Query",
        "Scan",
        "TransactGetItems",
        "DescribeTable",
        "ListTables",
        "DescribeTimeToLive",
        "DescribeContinuousBackups",
        "ListTagsOfResource",
        "DescribeEndpoints",
        "DescribeLimits",
    }
)
_MUTATING_METHODS = frozenset({"PUT", "POST", "DELETE"})
# Marks the stack's own start-up requests (provisioning, replay): they pass the StartupGate.
INTERNAL_HEADER = "x-local-stack-internal"
# On a replayed S3 write: the object's original LastModified, which moto would otherwise set to "now"
# (model-sync derives version names from it, so a replay must not change it).
LAST_MODIFIED_HEADER = "x-local-stack-last-modified"
# Hop-by-hop or recomputed on replay.
_DROPPED_HEADERS = frozenset(
    {"content-length", "transfer-encoding", "connection", "keep-alive", INTERNAL_HEADER, LAST_MODIFIED_HEADER}
)

_UPLOAD_ID = re.compile(rb"<UploadId>([^<]+)</UploadId>")
_UPLOAD_ID_PARAM = re.compile(r"(?<=[?&]uploadId=)[^&]+")


class JournalLocked(RuntimeError):
    """Another process (a second ``make up`` on the same state directory) owns the journal."""


def service_of(environ: dict[str, Any]) -> str:
    """The signing service of a request (``s3``, ``dynamodb``, ``sqs``…), as moto itself infers it."""
    auth = environ.get("HTTP_AUTHORIZATION", "")
    with contextlib.suppress(IndexError, ValueError):
        _, _, _, service, _ = auth.split(",")[0].split()[1].split("/")
        return service.lower()
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if target.startswith("DynamoDB"):
        return "dynamodb"
    if target.startswith("AmazonSQS"):
        return "sqs"
    return ""


def is_journaled(environ: dict[str, Any]) -> bool:
    """Whether a request changes S3 or DynamoDB state that must survive a restart."""
    method = environ.get("REQUEST_METHOD", "GET")
    service = service_of(environ)
    if service == "s3":
        # The stack re-applies notifications from the template after replay (see module doc).
        return method in _MUTATING_METHODS and "notification" not in environ.get("QUERY_STRING", "")
    if service == "dynamodb":
        operation = environ.get("HTTP_X_AMZ_TARGET", "").rpartition(".")[2]
        return bool(operation) and operation not in _DYNAMODB_READS
    return False


def _raw_target(environ: dict[str, Any]) -> str:
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if raw:
        return str(raw)
    query = environ.get("QUERY_STRING", "")
    return quote(environ.get("PATH_INFO", "/")) + (f"?{query}" if query else "")


def _request_headers(environ: dict[str, Any]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            headers[key[5:].replace("_", "-").lower()] = value
    if environ.get("CONTENT_TYPE"):
        headers["content-type"] = environ["CONTENT_TYPE"]
    return {k: v for k, v in headers.items() if k not in _DROPPED_HEADERS}


def _read_body(environ: dict[str, Any]) -> bytes:
    stream = environ["wsgi.input"]
    length = environ.get("CONTENT_LENGTH")
    if length:
        return bytes(stream.read(int(length)))
    if environ.get("wsgi.input_terminated") or environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked":
        return bytes(stream.read())
    return b""


@dataclass
class Journal:
    """An append-only JSON-lines file; one ``os.write`` per entry, under a lock."""

    directory: Path
    _fd: int | None = None
    _lock: threading.RLock = field(default_factory=threading.RLock)
    _lock_fd: int | None = None
    recording: bool = False

    @property
    def path(self) -> Path:
        return self.directory / JOURNAL_NAME

    @property
    def lock(self) -> threading.RLock:
        return self._lock

    def acquire(self) -> None:
        """Own the state directory for this process's life (the OS frees the lock if it dies)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise JournalLocked(f"{self.directory} is in use by pid {holder}; stop that stack first") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd

    def entries(self) -> Iterator[dict[str, Any]]:
        """The entries of the current journal; a torn (never acknowledged) last line is skipped."""
        if not self.path.is_file():
            return
        with self.path.open("rb") as handle:
            for number, line in enumerate(handle, start=1):
                try:
                    yield json.loads(line)
                except ValueError:
                    log.warning("journal line %d is incomplete (a write cut short by a crash); skipped", number)

    def begin_rewrite(self) -> Path:
        """Start recording into a fresh file that replaces the journal at :meth:`commit_rewrite`."""
        fresh = self.path.with_suffix(".next")
        self._fd = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
        self.recording = True
        return fresh

    def commit_rewrite(self, fresh: Path) -> None:
        # The rewritten journal must be on disk before it replaces the old one: a rename that reaches
        # the disk before the data would leave an empty journal after a power loss. Appends are not
        # synced (a killed process loses nothing; only the machine crashing could cut the last lines).
        if self._fd is not None:
            os.fsync(self._fd)
        # The open descriptor follows the file through the rename: appends go on without a gap.
        os.replace(fresh, self.path)
        directory = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    def append(self, entry: dict[str, Any]) -> None:
        if not self.recording or self._fd is None:
            return
        line = json.dumps(entry, separators=(",", ":")).encode() + b"\n"
        with self._lock:
            os.write(self._fd, line)

    def close(self) -> None:
        self.recording = False
        for fd in (self._fd, self._lock_fd):
            if fd is not None:
                os.close(fd)
        self._fd = self._lock_fd = None


def ensure_unused(directory: Path) -> None:
    """Raise :class:`JournalLocked` if a running moto owns ``directory`` (e.g. before wiping it)."""
    if not (directory / LOCK_NAME).is_file():
        return
    probe = Journal(directory)
    probe.acquire()
    probe.close()


class StartupGate:
    """WSGI middleware: clients wait until the state is restored, instead of seeing it half-replayed.

    A restarted moto must serve its own start-up requests (provisioning, replay) before anyone
    else; clients that reconnect meanwhile (their requests queued in the socket the supervisor
    holds) are answered only after :meth:`open`, with the whole state in place.
    """

    def __init__(self, app: Callable[..., Iterable[bytes]], wait_seconds: float = 300.0) -> None:
        self._app = app
        self._open = threading.Event()
        self._wait_seconds = wait_seconds

    def open(self) -> None:
        self._open.set()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if not self._open.is_set() and "HTTP_X_LOCAL_STACK_INTERNAL" not in environ:
            self._open.wait(self._wait_seconds)
        return self._app(environ, start_response)


class JournalingMiddleware:
    """WSGI middleware: journal each successful S3/DynamoDB write before answering it.

    Writes are serialised (reads are not), so the journal's order is the order moto applied them.
    """

    def __init__(self, app: Callable[..., Iterable[bytes]], journal: Journal) -> None:
        self._app = app
        self._journal = journal

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if not self._journal.recording or not is_journaled(environ):
            return self._app(environ, start_response)
        import io

        body = _read_body(environ)
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured["status"], captured["headers"], captured["exc_info"] = status, headers, exc_info
            return lambda data: captured.setdefault("written", []).append(data)

        with self._journal.lock:
            result = self._app(environ, capture)
            try:
                response = b"".join([*captured.get("written", []), *result])
            finally:
                close = getattr(result, "close", None)
                if close:
                    close()
            if captured["status"][:1] == "2":
                last_modified = _keep_last_modified(environ)
                entry: dict[str, Any] = {
                    "kind": "http",
                    "method": environ["REQUEST_METHOD"],
                    "target": _raw_target(environ),
                    "headers": _request_headers(environ),
                    "body": base64.b64encode(body).decode("ascii"),
                }
                upload = _UPLOAD_ID.search(response) if environ["REQUEST_METHOD"] == "POST" else None
                if upload and "uploads" in environ.get("QUERY_STRING", ""):
                    entry["upload_id"] = upload.group(1).decode()
                if last_modified:
                    entry["last_modified"] = last_modified
                self._journal.append(entry)
        start_response(captured["status"], captured["headers"], captured["exc_info"])
        return [response]


def _keep_last_modified(environ: dict[str, Any]) -> str | None:
    """The LastModified of the S3 object a write touched, restored first if this is a replay."""
    if service_of(environ) != "s3":
        return None
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    bucket, _, key = environ.get("PATH_INFO", "").lstrip("/").partition("/")
    if not key:
        return None
    try:
        found = s3_backends[DEFAULT_ACCOUNT_ID]["aws"].get_object(bucket, key)
    except Exception:  # no such bucket/key (e.g. a delete): nothing to keep
        return None
    if found is None:
        return None
    original = environ.get("HTTP_" + LAST_MODIFIED_HEADER.upper().replace("-", "_"))
    if original:
        found.last_modified = datetime.fromisoformat(original)
    return str(found.last_modified.isoformat())


# --- SQS: messages, not requests ---------------------------------------------------------------


def install_sqs_hooks(journal: Journal) -> None:
    """Journal every message any queue gains or loses (moto 5.2.5's ``Queue``/``SQSBackend``)."""
    from moto.sqs import models

    queue_cls = models.Queue
    backend_cls = models.SQSBackend
    if getattr(queue_cls, "_journal_hooked", False):
        return
    add_message, delete_message = queue_cls.add_message, queue_cls.delete_message
    purge_queue, delete_queue = backend_cls.purge_queue, backend_cls.delete_queue

    def where(queue: Any) -> dict[str, str]:
        return {"account": queue.account_id, "region": queue.region, "queue": queue.name}

    def hooked_add(self: Any, message: Any) -> None:
        with journal.lock:
            add_message(self, message)
            journal.append(
                {
                    "kind": "sqs-add",
                    **where(self),
                    "id": message.id,
                    "body": message.body,
                    "message_attributes": message.message_attributes,
                    "sent": message.sent_timestamp,
                    "group_id": message.group_id,
                    "deduplication_id": message.deduplication_id,
                }
            )

    def hooked_delete(self: Any, receipt_handle: str) -> None:
        with journal.lock:
            ids = [m.id for m in self._messages if m.had_receipt_handle(receipt_handle)]
            delete_message(self, receipt_handle)
            for message_id in ids:
                journal.append({"kind": "sqs-delete", **where(self), "id": message_id})

    def hooked_purge(self: Any, queue_name: str) -> None:
        with journal.lock:
            purge_queue(self, queue_name)
            journal.append({"kind": "sqs-purge", **where(self.get_queue(queue_name))})

    def hooked_delete_queue(self: Any, queue_name: str) -> None:
        with journal.lock:
            queue = self.get_queue(queue_name)
            delete_queue(self, queue_name)
            journal.append({"kind": "sqs-purge", **where(queue)})

    # Patching moto's classes is the only way in: it offers no hook for queue changes.
    patches = {
        (queue_cls, "add_message"): hooked_add,
        (queue_cls, "delete_message"): hooked_delete,
        (backend_cls, "purge_queue"): hooked_purge,
        (backend_cls, "delete_queue"): hooked_delete_queue,
        (queue_cls, "_journal_hooked"): True,
    }
    for (owner, name), replacement in patches.items():
        setattr(owner, name, replacement)


def surviving_messages(entries: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages added and never deleted or purged, each in the queue it was in last, oldest first."""
    alive: dict[str, dict[str, Any]] = {}
    for entry in entries:
        kind = entry.get("kind")
        if kind == "sqs-add":
            alive.pop(entry["id"], None)  # a redrive moves the message: its last queue wins
            alive[entry["id"]] = entry
        elif kind == "sqs-delete":
            alive.pop(entry["id"], None)
        elif kind == "sqs-purge":
            for message_id in [i for i, e in alive.items() if _same_queue(e, entry)]:
                del alive[message_id]
    return list(alive.values())


def _same_queue(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return (a["account"], a["region"], a["queue"]) == (b["account"], b["region"], b["queue"])


def restore_message(entry: dict[str, Any]) -> bool:
    """Put one journaled message back into its queue (in this process's moto); False if the queue is gone."""
    from moto.sqs.exceptions import QueueDoesNotExist
    from moto.sqs.models import Message, sqs_backends

    try:
        queue = sqs_backends[entry["account"]][entry["region"]].get_queue(entry["queue"])
    except QueueDoesNotExist:
        return False
    message = Message(entry["id"], entry["body"])
    message.message_attributes = entry.get("message_attributes") or {}
    message.group_id = entry.get("group_id")
    message.deduplication_id = entry.get("deduplication_id")
    message.mark_sent()
    if entry.get("sent"):
        message.sent_timestamp = entry["sent"]
    queue.add_message(message)
    return True


# --- replay ------------------------------------------------------------------------------------


@dataclass
class ReplayReport:
    requests: int = 0
    failed_requests: int = 0
    messages: int = 0
    lost_messages: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def replay(journal: Journal, server_url: str) -> ReplayReport:
    """Re-apply the journal to a fresh moto at ``server_url`` (this process), recording a new journal.

    Call with the server serving and the journal acquired; queues must exist (the stack provisions
    them from the template first). The new journal replaces the old one only once complete.
    """
    report = ReplayReport()
    host, _, port = server_url.removeprefix("http://").partition(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    fresh = journal.begin_rewrite()
    upload_ids: dict[str, str] = {}
    sqs_entries: list[dict[str, Any]] = []
    try:
        for entry in journal.entries():
            if entry.get("kind") != "http":
                sqs_entries.append(entry)
                continue
            report.requests += 1
            target = _UPLOAD_ID_PARAM.sub(lambda m: upload_ids.get(m.group(0), m.group(0)), entry["target"])
            headers = {**entry["headers"], INTERNAL_HEADER: "replay"}
            if entry.get("last_modified"):
                headers[LAST_MODIFIED_HEADER] = entry["last_modified"]
            connection.request(entry["method"], target, body=base64.b64decode(entry["body"]), headers=headers)
            response = connection.getresponse()
            payload = response.read()
            if response.status >= 300:
                report.failed_requests += 1
                log.warning("replay of %s %s answered %d: %s", entry["method"], target, response.status, payload[:300])
            elif "upload_id" in entry and (match := _UPLOAD_ID.search(payload)):
                upload_ids[entry["upload_id"]] = match.group(1).decode()
        for message in surviving_messages(sqs_entries):
            if restore_message(message):
                report.messages += 1
            else:
                report.lost_messages += 1
                log.error("journaled message %s: queue %s no longer exists", message["id"], message["queue"])
    finally:
        connection.close()
    journal.commit_rewrite(fresh)
    return report
