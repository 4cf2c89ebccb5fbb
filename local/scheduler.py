"""EventBridge's scheduled rules for the local stack: a function's ``Schedule`` events, played in its own process.

For each ``Schedule`` event of the function in ``template.yaml`` (``rate(1 minute)``...), it runs the
function's handler (its environment from the template, as every local "Lambda") with the event a rule's
schedule sends (:func:`scheduled_event`: ``detail-type`` "Scheduled Event", ``source`` "aws.events",
``time``, ``resources`` = the rule's ARN), once per period. No business logic: it only sends events.

A tick can also be fired on demand with a chosen ``time``, which is what a simulated clock needs (the
rollout decider decides at its event's ``time``, so a demo or an e2e test can jump two weeks ahead):

* ``POST {scheduler_url}/ticks`` with ``{"time": "2026-12-15T05:00:00Z", "event": "EveryMinute"}`` (both
  optional: now, and the function's only schedule) runs one invocation and answers ``200`` with
  ``{"event": ..., "result": <the handler's return>}``, or ``502`` with ``{"error": ...}`` when the handler
  raised; ``400`` names a bad field;
* ``python -m local.scheduler tick [--time ISO] [--function RolloutFunction]`` does that against the running
  stack (``.local/stack.json`` lists each scheduler's URL under ``schedulers``).

Invocations are serialised (one execution environment). Not emulated: retries of failed invocations
(the template's scheduled functions set none: the next period decides again), ``cron(...)`` expressions
(a clear error), and a rule's first firing is one period after start, as a new rule's is.

``python -m local.scheduler serve --function F --resources JSON --ready-file P [--fd N] [--paused]`` is how
the stack starts it (``--paused``: on-demand ticks only, for tests that drive the clock themselves).
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import threading
import time
import traceback
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from local.lambda_runtime import Handler, LambdaContext
from local.template import FunctionSpec, ScheduleTrigger, TemplateError

log = logging.getLogger("local.scheduler")

TICKS_PATH = "/ticks"
_RATE = re.compile(r"rate\((\d+) (minute|minutes|hour|hours|day|days)\)")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}
DEFAULT_STACK_FILE = Path(__file__).resolve().parent.parent / ".local" / "stack.json"


def rate_seconds(expression: str) -> int:
    """The period of a ``rate(...)`` expression, in seconds (EventBridge: singular unit for 1, plural above)."""
    match = _RATE.fullmatch(expression.strip())
    if match is None:
        raise TemplateError(f"the local scheduler plays rate(N unit) expressions only, not {expression!r}")
    value, unit = int(match.group(1)), match.group(2)
    if value < 1 or (value == 1) != (not unit.endswith("s")):
        raise TemplateError(f"invalid rate expression {expression!r} (rate(1 minute), rate(5 minutes), ...)")
    return value * _UNIT_SECONDS[unit.rstrip("s")]


def rule_arn(function: FunctionSpec, trigger: ScheduleTrigger, region: str, account_id: str, stack: str) -> str:
    """The rule SAM creates for a Schedule event (logical id FunctionEvent), named as CloudFormation names it."""
    return f"arn:aws:events:{region}:{account_id}:rule/{stack}-{function.logical_id}{trigger.event_name}"


def scheduled_event(at: datetime, rule: str, region: str, account_id: str) -> dict[str, Any]:
    """What a rule's schedule sends its target (Lambda developer guide, "Using Lambda with scheduled events")."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": account_id,
        "time": at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [rule],
        "detail": {},
    }


def parse_time(text: str) -> datetime:
    """An ISO-8601 time with an offset (``Z`` too); ValueError otherwise."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no UTC offset")
    return moment


@dataclass(frozen=True)
class Schedule:
    trigger: ScheduleTrigger
    period_seconds: float
    rule: str


class Scheduler:
    """Invokes ``handler`` for each schedule every period, and on demand (``tick``), one invocation at a time."""

    def __init__(
        self,
        function: FunctionSpec,
        handler: Handler,
        context_factory: Callable[[], LambdaContext],
        region: str,
        account_id: str,
        stack_name: str,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        period_seconds: float | None = None,
    ) -> None:
        enabled = [t for t in function.schedule_triggers if t.enabled]
        if not enabled:
            raise TemplateError(f"{function.logical_id} has no enabled Schedule event")
        self.function = function
        self.schedules = {
            t.event_name: Schedule(
                t, period_seconds or rate_seconds(t.expression), rule_arn(function, t, region, account_id, stack_name)
            )
            for t in enabled
        }
        self._handler = handler
        self._context_factory = context_factory
        self._region = region
        self._account_id = account_id
        self._clock = clock
        self._lock = threading.Lock()

    def tick(self, event_name: str | None = None, at: datetime | None = None) -> tuple[dict[str, Any], Any]:
        """One invocation now (or at the simulated ``at``); returns (event, result); the handler's error propagates."""
        name = event_name or next(iter(self.schedules))
        if name not in self.schedules:
            raise KeyError(f"{self.function.logical_id} has no schedule {name!r}; it has {sorted(self.schedules)}")
        event = scheduled_event(at or self._clock(), self.schedules[name].rule, self._region, self._account_id)
        with self._lock:
            started = time.perf_counter()
            result = self._handler(event, self._context_factory())
        log.info(
            "%s %s at %s: %.0f ms: %s",
            self.function.logical_id,
            name,
            event["time"],
            (time.perf_counter() - started) * 1000,
            json.dumps(result, default=str)[:500],
        )
        return event, result

    def run(self, stopped: threading.Event) -> None:
        """Fire every schedule once per period (the first one period after start) until ``stopped``."""
        start = time.monotonic()
        due = {name: start + schedule.period_seconds for name, schedule in self.schedules.items()}
        while not stopped.is_set():
            name = min(due, key=due.__getitem__)
            if stopped.wait(max(0.0, due[name] - time.monotonic())):
                return
            due[name] += self.schedules[name].period_seconds
            try:
                self.tick(name)
            except Exception:  # as on AWS, a failed invocation is logged and the next period comes anyway
                log.exception("%s %s: invocation failed", self.function.logical_id, name)


def _tick_handler(scheduler: Scheduler) -> type[BaseHTTPRequestHandler]:
    class TickHandler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            if self.path.split("?", 1)[0] != TICKS_PATH:
                self._answer(HTTPStatus.NOT_FOUND, {"error": f"POST {TICKS_PATH} only", "field": "path"})
                return
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                if not isinstance(body, dict):
                    raise ValueError("the body must be a JSON object")
            except ValueError as error:
                self._answer(HTTPStatus.BAD_REQUEST, {"error": str(error), "field": "body"})
                return
            try:
                at = parse_time(body["time"]) if body.get("time") is not None else None
            except (TypeError, ValueError) as error:
                self._answer(HTTPStatus.BAD_REQUEST, {"error": f"not an ISO-8601 time: {error}", "field": "time"})
                return
            event_name = body.get("event")
            if event_name is not None and event_name not in scheduler.schedules:
                problem = f"no schedule {event_name!r}; {sorted(scheduler.schedules)}"
                self._answer(HTTPStatus.BAD_REQUEST, {"error": problem, "field": "event"})
                return
            try:
                event, result = scheduler.tick(event_name, at)
            except Exception as error:
                log.exception("on-demand tick failed")
                detail = {"error": f"{type(error).__name__}: {error}", "trace": traceback.format_exc(limit=5)}
                self._answer(HTTPStatus.BAD_GATEWAY, detail)
                return
            self._answer(HTTPStatus.OK, {"event": event, "result": result})

        def _answer(self, status: HTTPStatus, body: Mapping[str, Any]) -> None:
            data = json.dumps(body, default=str).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            log.info("%s %s", self.address_string(), format % args)

    return TickHandler


def tick_server(scheduler: Scheduler, sock: Any) -> ThreadingHTTPServer:
    """The on-demand tick endpoint on an already listening socket (held by the stack across restarts)."""
    server = ThreadingHTTPServer(sock.getsockname()[:2], _tick_handler(scheduler), bind_and_activate=False)
    server.socket.close()
    server.socket = sock
    server.daemon_threads = True
    return server


def request_tick(url: str, at: str | None = None, event: str | None = None, timeout: float = 120.0) -> dict[str, Any]:
    """POST one on-demand tick to a running scheduler; RuntimeError with its answer when it is not 200."""
    body = json.dumps({k: v for k, v in {"time": at, "event": event}.items() if v is not None}).encode()
    request = urllib.request.Request(
        url.rstrip("/") + TICKS_PATH, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            answer: dict[str, Any] = json.loads(response.read())
            return answer
    except urllib.error.HTTPError as error:
        raise RuntimeError(f"tick refused ({error.code}): {error.read().decode(errors='replace')}") from None


def _serve(args: argparse.Namespace) -> int:
    from endpoint.sockets import inherited_socket, listening_socket
    from local import ready
    from local.lambda_runtime import load_function
    from local.process import LOCAL_HOST, stop_event

    resources, function, handler = load_function(args)
    scheduler = Scheduler(
        function,
        handler,
        lambda: LambdaContext.for_function(function, resources.region, resources.account_id),
        resources.region,
        resources.account_id,
        resources.stack_name,
        period_seconds=args.period_seconds,
    )
    sock = inherited_socket(args.fd) if args.fd is not None else listening_socket(LOCAL_HOST, args.port)
    server = tick_server(scheduler, sock)
    threading.Thread(target=server.serve_forever, name="ticks", daemon=True).start()
    stopped = stop_event()
    host, port = sock.getsockname()[:2]
    url = f"http://{host}:{port}"
    schedules = {name: s.trigger.expression for name, s in scheduler.schedules.items()}
    ready.write(args.ready_file, ready.SchedulerReady(function=function.logical_id, url=url, schedules=schedules))
    log.info(
        "%s: %s%s; on-demand ticks at %s%s", function.logical_id, schedules, " (paused)" * args.paused, url, TICKS_PATH
    )
    if args.paused:
        stopped.wait()
    else:
        scheduler.run(stopped)
    server.shutdown()
    return 0


def _tick(args: argparse.Namespace) -> int:
    if not args.stack_file.is_file():
        print(f"no local stack is running ({args.stack_file} not found): start one with `make up`", file=sys.stderr)
        return 2
    schedulers: Mapping[str, str] = json.loads(args.stack_file.read_text()).get("schedulers", {})
    if args.function not in schedulers:
        print(f"the local stack has no scheduler for {args.function}; it has {sorted(schedulers)}", file=sys.stderr)
        return 2
    try:
        answer = request_tick(schedulers[args.function], args.time, args.event)
    except RuntimeError as error:
        print(str(error), file=sys.stderr)
        return 1
    print(json.dumps(answer, indent=2, default=str))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from local.lambda_runtime import add_function_arguments

    parser = argparse.ArgumentParser(prog="python -m local.scheduler", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="play a function's Schedule events (the stack starts this)")
    add_function_arguments(serve)
    serve.add_argument("--ready-file", type=Path, required=True)
    serve.add_argument("--fd", type=int, help="an inherited listening socket for the tick endpoint")
    serve.add_argument("--port", type=int, default=0)
    serve.add_argument("--paused", action="store_true", help="no periodic ticks, on-demand ones only")
    serve.add_argument("--period-seconds", type=float, help="every schedule's period instead of its rate (tests)")
    tick = commands.add_parser("tick", help="fire one tick on the running local stack")
    tick.add_argument("--time", help="the event's time, ISO-8601 with offset (default: now)")
    tick.add_argument("--function", default="RolloutFunction")
    tick.add_argument("--event", help="which Schedule event of the function (default: its only one)")
    tick.add_argument("--stack-file", type=Path, default=DEFAULT_STACK_FILE)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.command == "serve":
        return _serve(args)
    if args.time is not None:
        try:
            parse_time(args.time)
        except ValueError as error:
            parser.error(f"--time: {error}")
    return _tick(args)


if __name__ == "__main__":
    sys.exit(main())
