"""A stand-in for the router inside a sandbox process: echoes what it got, or misbehaves on purpose.

Each invocation is appended as one JSON line to ``$FAKE_INVOCATIONS_FILE``, so tests see what the
sandbox received without sharing its process.
"""

from __future__ import annotations

import base64
import json
import os
import time
from typing import Any

INVOCATIONS = 0  # module state: one count per execution environment


def handler(event: dict[str, Any], context: Any) -> Any:
    global INVOCATIONS
    INVOCATIONS += 1
    with open(os.environ["FAKE_INVOCATIONS_FILE"], "a") as record:
        record.write(json.dumps({"event": event, "pid": os.getpid()}) + "\n")
    path = event["rawPath"]
    if path == "/boom":
        raise RuntimeError("handler bug at /secret/server/path.py")
    if path == "/bad":
        return {"statusCode": "not-a-number"}
    if path == "/bad-header":
        return {"statusCode": 200, "headers": {"x-evil": "a\r\nset-cookie: stolen=1"}}
    if path == "/slow":
        time.sleep(float(event.get("queryStringParameters", {}).get("seconds", "1.5")))
    if path == "/plain":
        return {"hello": "world"}
    if path == "/raw":
        return {
            "statusCode": 201,
            "isBase64Encoded": True,
            "body": base64.b64encode(b"\x00\xffbinary").decode(),
            "headers": {"content-type": "application/octet-stream"},
            "cookies": ["session=abc; HttpOnly", "theme=dark"],
        }
    if path == "/exit":
        os._exit(3)
    facts = {
        "pid": os.getpid(),
        "invocations": INVOCATIONS,
        "function_name": context.function_name,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "event": event,
    }
    return {
        "statusCode": 200,
        "headers": {
            "content-type": "application/json",
            "x-route": event["routeKey"],
            "access-control-allow-origin": "https://from-the-function.example",
        },
        "body": json.dumps(facts),
    }
