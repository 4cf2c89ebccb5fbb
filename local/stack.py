"""``make up``: the whole system on 127.0.0.1, without Docker or AWS.

Processes (each "Lambda" gets its own process, hence its own ``os.environ``, like a sandbox):

* ``local.moto_services`` moto server: S3 (with S3 → SQS event notifications), SQS, DynamoDB
* ``local.dispatcher``  one per S3-triggered function: Lambda's async invoker (model-sync)
* ``endpoint``          the SageMaker multi-model endpoint (InvokeEndpoint wire protocol): with the
                        managed scikit-learn image it emulates that image in process; with the dense
                        container (``ServingImageUri`` set, or ``--serving dense``) it is the SageMaker
                        side only, in front of the container's process running the image's command
* ``local.http_api``    API Gateway HTTP API → the router function
* ``local.log_delivery`` CloudWatch Logs subscription filter → Firehose → S3 on the router's log lines
* ``local.scheduler``   one per function with ``Schedule`` events: EventBridge's scheduled rules (the rollout
                        decider every minute), plus on-demand ticks at a chosen time (a simulated clock)

Names (bucket, registry table, endpoint, prefix, routes, environments) are resolved from
``template.yaml``. Every server binds 127.0.0.1 on a free port. ``.local/stack.json`` tells
clients where everything is; it is removed again when the stack stops (Ctrl-C / SIGTERM), and
every child's process group is terminated, so no process or port outlives the stack.

Faults: a child that dies is restarted on the same URL (moto and the endpoint serve sockets the
supervisor holds; the HTTP API gets its old port back), with backoff; after repeated crashes the
supervisor gives up and the stack stops with the reason. moto journals S3, SQS and DynamoDB changes
under ``.local/state/`` and replays them at start (``--fresh`` discards them). Each run logs to
``.local/logs/<run>/`` (earlier runs are kept) and keeps scratch files (TMPDIR, the endpoint's
model cache) under ``.local/run/<run>/``, removed when it stops; nothing goes to /tmp.

Python API (tests, the demo)::

    with LocalStack(StackConfig(state_dir=tmp)) as stack:
        stack.info.api_url, stack.client("s3"), ...
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from endpoint.lifetime import process_alive
from endpoint.sockets import listening_socket
from house_prices import schema
from house_prices.naming import KeyLayout
from local import log_delivery, ready
from local.journal import JournalLocked, ensure_unused
from local.lambda_runtime import LOCAL_CREDENTIALS, stack_client_environment
from local.process import LOCAL_HOST, Child, ChildFailed, RestartPolicy, Supervisor, write_ready_file
from local.ready import DispatcherReady, EventQueue, HttpApiReady, MotoReady, SchedulerReady
from local.template import (
    LOCAL_ACCOUNT_ID,
    REPO_ROOT,
    FunctionSpec,
    LocalResources,
    MultiModelSpec,
    Template,
    TemplateError,
)
from ops.images import UnknownImageVersion, load_table

DEFAULT_STATE_DIR = REPO_ROOT / ".local"
STACK_FILE_NAME = "stack.json"
# Under the state dir: moto's journal (kept across runs), per-run logs (kept), per-run scratch (removed).
JOURNAL_DIR_NAME = "state"
LOGS_DIR_NAME = "logs"
RUNS_DIR_NAME = "run"
# The local endpoint reads inference.py from the working tree; the template's SourceDirS3Uri (the
# uploaded sourcedir.tar.gz on AWS) has no default, so locally it only needs a well-formed value.
LOCAL_SOURCE_DIR = REPO_ROOT / "training"
# The managed image's variables the local endpoint emulates (the image itself reads many more).
_ENDPOINT_PASSTHROUGH = (
    "SAGEMAKER_PROGRAM",
    "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT",
    "SAGEMAKER_CONTAINER_LOG_LEVEL",
    "SAGEMAKER_NUM_MODEL_WORKERS",
)
# Locally there is no image to pull: asked for dense serving without a ServingImageUri, the template is
# resolved with this stand-in (an ECR URI the parameter's pattern admits), exactly as a deployment with one.
LOCAL_DENSE_IMAGE = "{account}.dkr.ecr.{region}.amazonaws.com/house-prices-dense-mme:local"
Serving = Literal["managed", "dense"]
# Variables of the developer's shell that would point a child at real AWS or another endpoint.
_SCRUBBED_PREFIXES = ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY")


@dataclass(frozen=True)
class StackConfig:
    template_path: Path | None = None
    state_dir: Path = DEFAULT_STATE_DIR
    stack_name: str = "house-prices-local"
    region: str = "us-east-1"
    parameters: Mapping[str, str] = field(default_factory=dict)
    # Per-function environment overrides, like `sam local --env-vars` (e.g. a 0 s cache in tests).
    function_env: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    write_stack_file: bool = True
    ready_timeout_seconds: float = 60.0
    dispatcher_backoff_base_seconds: float = 1.0
    dispatcher_backoff_cap_seconds: float = 30.0
    # How long an event a dead invoker had received stays hidden; default: the function's Timeout + 5 s.
    event_visibility_timeout_seconds: int | None = None
    # Sandboxes of the HTTP API's function; None: local.sandboxes.default_pool_size (machine, reserved concurrency).
    api_max_concurrency: int | None = None
    endpoint_args: Sequence[str] = ()
    # Which image the endpoint serves with; None: the template's (ServingImageUri set: the dense container).
    # "dense" without a ServingImageUri resolves the template with LOCAL_DENSE_IMAGE; "managed" with one is an error.
    serving: Serving | None = None
    # Journal S3/SQS/DynamoDB state under state_dir/state and restore it at start; fresh discards it first.
    persist: bool = True
    fresh: bool = False
    restart_policy: RestartPolicy = field(default_factory=RestartPolicy)
    # Firehose buffering interval of local/log_delivery.py (captured predictions to S3); None: the template's.
    capture_buffer_seconds: float | None = None
    # Scheduled functions (local/scheduler.py) only run on demand (POST {scheduler}/ticks): tests own the clock.
    schedules_paused: bool = False


@dataclass(frozen=True)
class StackPlan:
    """Everything the stack needs from the template, resolved (pure: no processes, no sockets)."""

    resources: LocalResources
    api_function: FunctionSpec
    event_functions: tuple[FunctionSpec, ...]
    bucket: str
    prefix: str
    registry_table: str
    tables: tuple[str, ...]
    endpoint_name: str
    model_data_url: str
    model_cache_setting: str
    endpoint_environment: Mapping[str, str]
    # managed: the endpoint emulates the scikit-learn image; dense: it fronts the dense container's process.
    serving: Serving = "managed"
    # Functions with SQS events (event source mappings, e.g. QualityFunction) and the queues they read,
    # by logical id -> URL (what !Ref of a queue is on AWS, so the functions' variables hold it too).
    queue_functions: tuple[FunctionSpec, ...] = ()
    queue_urls: Mapping[str, str] = field(default_factory=dict)
    # Functions with Schedule events (EventBridge rules, e.g. RolloutFunction), each played by local/scheduler.py.
    scheduled_functions: tuple[FunctionSpec, ...] = ()


def plan_stack(template: Template, config: StackConfig) -> StackPlan:
    """Resolve names from the template; fail with the template field at fault if anything is missing."""
    parameters = _serving_parameters(template, config)
    resources = LocalResources(stack_name=config.stack_name, region=config.region, parameters=parameters)
    if "SourceDirS3Uri" in (template.document.get("Parameters") or {}) and "SourceDirS3Uri" not in parameters:
        bucket_probe = _first_trigger_bucket(template, resources)
        parameters["SourceDirS3Uri"] = f"s3://{bucket_probe}/local/sourcedir.tar.gz"
        resources = replace(resources, parameters=parameters)
    queue_urls = _trigger_queue_urls(template, resources)
    resources = replace(resources, refs={**resources.refs, **queue_urls})
    functions = template.functions(resources)
    api_functions = [f for f in functions.values() if f.http_routes]
    if len(api_functions) != 1:
        raise TemplateError(
            f"the local HTTP API needs exactly one function with HttpApi events, found {len(api_functions)}"
        )
    api_function = api_functions[0]
    event_functions = tuple(f for f in functions.values() if f.s3_triggers)
    if not event_functions:
        raise TemplateError("no function has an S3 event; nothing would sync models")
    buckets = {trigger.bucket_name for f in event_functions for trigger in f.s3_triggers}
    if len(buckets) != 1:
        raise TemplateError(f"expected one artifact bucket across S3 events, found {sorted(buckets)}")
    bucket = buckets.pop()
    for name in ("ENDPOINT_NAME", "REGISTRY_TABLE"):
        if name not in api_function.environment:
            raise TemplateError(f"{api_function.logical_id}.Environment.Variables.{name} is required by the router")
    multi_model = template.multi_model(resources)
    serving = _serving_of(multi_model)
    sync = event_functions[0]
    prefix = sync.environment.get("MODEL_PREFIX") or KeyLayout().prefix
    sync_writes_to = KeyLayout(prefix).model_data_url(bucket)
    model_data_url = multi_model.model_data_url or sync_writes_to
    if model_data_url != sync_writes_to:
        raise TemplateError(
            f"{multi_model.logical_id}.ModelDataUrl {model_data_url!r} is not where model-sync writes "
            f"({sync_writes_to!r})"
        )
    tables = tuple(
        str(template.ref(logical, resources, where=logical)) for logical in template.logical_ids("AWS::DynamoDB::Table")
    )
    return StackPlan(
        resources=resources,
        api_function=api_function,
        event_functions=event_functions,
        bucket=bucket,
        prefix=prefix,
        registry_table=api_function.environment["REGISTRY_TABLE"],
        tables=tables or (api_function.environment["REGISTRY_TABLE"],),
        endpoint_name=api_function.environment["ENDPOINT_NAME"],
        model_data_url=model_data_url,
        model_cache_setting=multi_model.model_cache_setting,
        endpoint_environment=_endpoint_environment(multi_model, serving),
        serving=serving,
        queue_functions=tuple(f for f in functions.values() if f.sqs_triggers),
        queue_urls=queue_urls,
        scheduled_functions=tuple(f for f in functions.values() if any(t.enabled for t in f.schedule_triggers)),
    )


def _trigger_queue_urls(template: Template, resources: LocalResources) -> dict[str, str]:
    """The URL of every queue a function's SQS event reads, as SQS forms it (the local SQS reads the name)."""
    urls = {}
    for function in template.functions(resources).values():
        for trigger in function.sqs_triggers:
            name = template.ref(trigger.queue_logical_id, resources, where=f"{function.logical_id}.Events")
            urls[trigger.queue_logical_id] = (
                f"https://sqs.{resources.region}.amazonaws.com/{resources.account_id}/{name}"
            )
    return urls


def _serving_parameters(template: Template, config: StackConfig) -> dict[str, str]:
    """The template's parameters, with ServingImageUri set as ``config.serving`` asks."""
    parameters = dict(config.parameters)
    if config.serving is None or "ServingImageUri" not in (template.document.get("Parameters") or {}):
        return parameters
    image = parameters.get("ServingImageUri") or template.parameter_defaults.get("ServingImageUri", "")
    if config.serving == "managed" and image:
        raise TemplateError(f"serving managed asked for, but ServingImageUri is {image!r} (the dense container)")
    if config.serving == "dense" and not image:
        parameters["ServingImageUri"] = LOCAL_DENSE_IMAGE.format(account=LOCAL_ACCOUNT_ID, region=config.region)
    return parameters


def _serving_of(multi_model: MultiModelSpec) -> Serving:
    """managed when the Model's image is the SageMaker scikit-learn image, dense (the project's container) otherwise."""
    if multi_model.image is None:
        return "managed"
    try:
        load_table().version_of(multi_model.image)
    except UnknownImageVersion:
        return "dense"
    return "managed"


def _endpoint_environment(multi_model: MultiModelSpec, serving: Serving) -> dict[str, str]:
    """What the local endpoint gets of the Model's container environment.

    Managed: the variables it emulates, plus the one the image sets itself. Dense: the whole environment,
    which the endpoint hands to the container's process, as SageMaker hands it to the image.
    """
    if serving == "dense":
        return dict(multi_model.environment)
    environment = {k: v for k, v in multi_model.environment.items() if k in _ENDPOINT_PASSTHROUGH}
    if multi_model.image is not None:
        # The scikit-learn image declares ENV SAGEMAKER_SKLEARN_VERSION; the endpoint emulates that tag.
        environment["SAGEMAKER_SKLEARN_VERSION"] = load_table().version_of(multi_model.image)
    return environment


def _first_trigger_bucket(template: Template, resources: LocalResources) -> str:
    for logical_id in template.logical_ids("AWS::S3::Bucket"):
        return str(template.ref(logical_id, resources, where=logical_id))
    raise TemplateError("template has no AWS::S3::Bucket")


@dataclass(frozen=True)
class StackInfo:
    """What clients need; serialised to ``.local/stack.json``."""

    api_url: str
    endpoint_url: str
    s3_endpoint_url: str
    region: str
    bucket: str
    prefix: str
    model_data_url: str
    endpoint_name: str
    registry_table: str
    dynamodb_endpoint_url: str
    sqs_endpoint_url: str
    queues: Mapping[str, Mapping[str, str]]
    log_dir: str
    pid: int
    resources: Mapping[str, Any]
    run_id: str = ""
    # Current pid of each child (rewritten after a restart): what a chaos test or an operator kills.
    pids: Mapping[str, int] = field(default_factory=dict)
    state_dir: str = ""
    # managed (the scikit-learn image emulated) or dense (the SageMaker side in front of the dense container).
    serving: str = "managed"
    # Scheduled function -> its local/scheduler.py URL (POST {url}/ticks fires one tick at a chosen time).
    schedulers: Mapping[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def client_environment(self) -> dict[str, str]:
        """Environment that points any boto3 program at this stack."""
        return stack_client_environment(self.as_dict())


class LocalStack:
    def __init__(self, config: StackConfig | None = None) -> None:
        self.config = config or StackConfig()
        self.template = Template.load(self.config.template_path)
        self.plan = plan_stack(self.template, self.config)
        self.children: list[Child] = []
        self._info: StackInfo | None = None
        root = Path(self.config.state_dir)
        self._stack_file = root / STACK_FILE_NAME
        self.run_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
        self._runs_root = root / RUNS_DIR_NAME
        self._run_dir = self._runs_root / self.run_id
        self.journal_dir = root / JOURNAL_DIR_NAME
        self.log_dir = root / LOGS_DIR_NAME / self.run_id
        # Listening sockets held for the stack's life, so a restarted server keeps its URL.
        self._sockets: list[socket.socket] = []
        self.supervisor: Supervisor | None = None

    @property
    def info(self) -> StackInfo:
        if self._info is None:
            raise RuntimeError("the stack is not running; call start() first")
        return self._info

    # lifecycle
    def start(self) -> StackInfo:
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _prepare_directories(self) -> None:
        if self.config.fresh:
            ensure_unused(self.journal_dir)  # never wipe the state of a stack that is running
            shutil.rmtree(self.journal_dir, ignore_errors=True)
        # Scratch of runs whose supervisor died without cleaning up (SIGKILL): their pid is gone.
        if self._runs_root.is_dir():
            for stale in self._runs_root.iterdir():
                owner = stale.name.rpartition("-")[2]
                if owner.isdigit() and not process_alive(int(owner)):
                    shutil.rmtree(stale, ignore_errors=True)
        for directory in (self._run_dir / "tmp", self.log_dir):
            directory.mkdir(parents=True, exist_ok=True)
        latest = self.log_dir.parent / "latest"
        latest.unlink(missing_ok=True)
        latest.symlink_to(self.run_id)

    def _hold_socket(self) -> tuple[socket.socket, str]:
        held = listening_socket(LOCAL_HOST, 0)
        self._sockets.append(held)
        return held, f"http://127.0.0.1:{held.getsockname()[1]}"

    def _start(self) -> StackInfo:
        """moto first (everything else talks to it), then the endpoint, dispatchers and HTTP API together."""
        config = self.config
        self._prepare_directories()
        base_env = self._base_environment()
        moto_url, moto_facts = self._start_moto(base_env)
        aws_env = {
            **base_env,
            "AWS_ENDPOINT_URL_S3": moto_url,
            "AWS_ENDPOINT_URL_DYNAMODB": moto_url,
            "AWS_ENDPOINT_URL_SQS": moto_url,
        }
        queues = {queue.function_id: queue for queue in moto_facts.queues}
        endpoint, endpoint_url = self._start_endpoint(aws_env)
        # model-sync pre-warms promoted versions on the endpoint, as on AWS; the router invokes it.
        functions_env = {**aws_env, "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": endpoint_url}
        dispatchers = self._start_dispatchers(functions_env, queues)
        schedulers = self._start_schedulers(functions_env)
        api = self._start_http_api(functions_env)
        deliveries = self._start_log_delivery(aws_env, api)
        # The slow part is importing sklearn/boto3/powertools in each child: wait for all at once.
        timeout = config.ready_timeout_seconds
        with ThreadPoolExecutor(max_workers=4) as pool:
            api_ready = pool.submit(api.wait_ready, timeout)
            endpoint_ready = pool.submit(endpoint.wait_until_ready, timeout)
            dispatchers_ready = [pool.submit(d.wait_ready, timeout) for d in dispatchers]
            schedulers_ready = [pool.submit(s.wait_ready, timeout) for s in schedulers]
            api_facts = ready.parse(HttpApiReady, api_ready.result())
            endpoint_ready.result()
            for dispatcher_ready in dispatchers_ready:
                ready.parse(DispatcherReady, dispatcher_ready.result())
            scheduler_urls = {
                facts.function: facts.url
                for facts in (ready.parse(SchedulerReady, done.result()) for done in schedulers_ready)
            }
        for delivery in deliveries:
            ready.parse(ready.LogDeliveryReady, delivery.wait_ready(timeout))
        # A restarted API must come back on the URL clients already have.
        api.argv = [*api.argv, "--port", str(api_facts.port)]

        self._info = replace(self._stack_info(api_facts.url, endpoint_url, moto_url, queues), schedulers=scheduler_urls)
        self._publish()
        self.supervisor = Supervisor(
            self.children,
            config.restart_policy,
            on_restarted=lambda child: self._publish(),
            ready_timeout=config.ready_timeout_seconds,
        )
        self.supervisor.start()
        return self._info

    def _start_moto(self, env: Mapping[str, str]) -> tuple[str, MotoReady]:
        """S3/SQS/DynamoDB with the template's bucket, tables and event queues; waits until it serves them."""
        plan, config = self.plan, self.config
        spec = {
            "region": plan.resources.region,
            "buckets": [plan.bucket],
            "tables": list(plan.tables),
            "functions": [
                {
                    "function_id": function.logical_id,
                    "queue_name": self._queue_name(function),
                    "on_failure_queue_name": self._on_failure_queue_name(function),
                    "max_attempts": function.max_async_retries + 1,
                    "timeout": function.timeout,
                    "visibility_timeout": config.event_visibility_timeout_seconds,
                    "triggers": [asdict(trigger) for trigger in function.s3_triggers],
                }
                for function in plan.event_functions
            ],
            # Queues read by SQS events (no S3 notification; their URLs are in plan.queue_urls).
            "queues": sorted(url.rsplit("/", 1)[-1] for url in plan.queue_urls.values()),
        }
        moto_socket, moto_url = self._hold_socket()
        moto = self._spawn(
            "moto",
            [
                "-m",
                "local.moto_services",
                "--spec",
                json.dumps(spec),
                "--fd",
                str(moto_socket.fileno()),
                *(["--state-dir", str(self.journal_dir)] if config.persist else []),
            ],
            env,
            pass_fds=(moto_socket.fileno(),),
        )
        return moto_url, ready.parse(MotoReady, moto.wait_ready(config.ready_timeout_seconds))

    def _start_endpoint(self, aws_env: Mapping[str, str]) -> tuple[Child, str]:
        """The multi-model endpoint on a socket held here; ready when it answers /ping (not waited for here)."""
        plan = self.plan
        # Held here and inherited by the endpoint, so the API can be told its URL before the endpoint
        # has started, no other process can take the port in between, and a restart keeps the URL.
        endpoint_socket, endpoint_url = self._hold_socket()
        endpoint_env = {
            **aws_env,
            **plan.endpoint_environment,
            # The managed image downloads the sourcedir named here; the dense container has the program baked
            # in at this same place (/opt/program/training). Locally both read the working tree's.
            "SAGEMAKER_SUBMIT_DIRECTORY": str(LOCAL_SOURCE_DIR),
        }
        endpoint = self._spawn(
            "endpoint",
            [
                "-m",
                "endpoint",
                "--serving",
                plan.serving,
                "--fd",
                str(endpoint_socket.fileno()),
                "--endpoint-name",
                plan.endpoint_name,
                "--model-data-url",
                plan.model_data_url,
                "--model-cache-setting",
                plan.model_cache_setting,
                "--cache-dir",
                str(self._run_dir / "endpoint-cache"),
                "--exit-with-parent",
                *self.config.endpoint_args,
            ],
            endpoint_env,
            ready_file=False,
            pass_fds=(endpoint_socket.fileno(),),
            ping_url=f"{endpoint_url}/ping",
        )
        return endpoint, endpoint_url

    def _start_dispatchers(self, env: Mapping[str, str], queues: Mapping[str, EventQueue]) -> list[Child]:
        """One async invoker per S3-triggered function, polling the queue moto made for it, and one poller per
        SQS event source mapping."""
        dispatchers = []
        for function in self.plan.event_functions:
            queue = queues[function.logical_id]
            source = ["--queue-url", queue.queue_url, "--max-attempts", str(queue.max_attempts)]
            source += ["--on-failure-queue-url", queue.on_failure_url] if queue.on_failure_url else []
            dispatchers.append(
                self._spawn(f"dispatcher-{function.logical_id}", self._dispatcher_arguments(function, source), env)
            )
        for function in self.plan.queue_functions:
            for trigger in function.sqs_triggers:
                source = ["--event-source-mapping", trigger.event_name]
                source += ["--queue-url", self.plan.queue_urls[trigger.queue_logical_id]]
                dispatchers.append(
                    self._spawn(
                        f"dispatcher-{function.logical_id}-{trigger.event_name}",
                        self._dispatcher_arguments(function, source),
                        env,
                    )
                )
        return dispatchers

    def _dispatcher_arguments(self, function: FunctionSpec, source: list[str]) -> list[str]:
        """``local.dispatcher``'s command line for ``function``, reading the queue that ``source`` names."""
        config = self.config
        return [
            "-m",
            "local.dispatcher",
            "--function",
            function.logical_id,
            *source,
            "--resources",
            self._resources_json(),
            "--backoff-base",
            str(config.dispatcher_backoff_base_seconds),
            "--backoff-cap",
            str(config.dispatcher_backoff_cap_seconds),
            *self._template_args(),
            *self._environment_args(function),
        ]

    def _start_schedulers(self, env: Mapping[str, str]) -> list[Child]:
        """EventBridge's scheduled rules: one local/scheduler.py per scheduled function, its tick endpoint on a
        socket held here (a restarted scheduler keeps its URL)."""
        schedulers = []
        for function in self.plan.scheduled_functions:
            held, _ = self._hold_socket()
            arguments = ["-m", "local.scheduler", "serve", "--function", function.logical_id]
            arguments += ["--resources", self._resources_json(), "--fd", str(held.fileno())]
            arguments += ["--paused"] if self.config.schedules_paused else []
            arguments += [*self._template_args(), *self._environment_args(function)]
            schedulers.append(
                self._spawn(f"scheduler-{function.logical_id}", arguments, env, pass_fds=(held.fileno(),))
            )
        return schedulers

    def _start_log_delivery(self, env: Mapping[str, str], api: Child) -> list[Child]:
        """CloudWatch Logs subscription filters + Firehose on the API function's log lines (local/log_delivery.py)."""
        function = self.plan.api_function.logical_id
        if not log_delivery.plan(self.template, self.plan.resources, function):
            return []
        buffer = self.config.capture_buffer_seconds
        arguments = ["--function", function, "--source", str(api.log_path), "--resources", self._resources_json()]
        arguments += ["--checkpoint", str(self._run_dir / "log-delivery.offset"), *self._template_args()]
        arguments += ["--buffer-seconds", str(buffer)] if buffer is not None else []
        return [self._spawn("log-delivery", ["-m", "local.log_delivery", *arguments], env)]

    def _start_http_api(self, env: Mapping[str, str]) -> Child:
        """API Gateway's HTTP API in front of the router function."""
        plan, config = self.plan, self.config
        return self._spawn(
            "http-api",
            [
                "-m",
                "local.http_api",
                "--function",
                plan.api_function.logical_id,
                "--resources",
                self._resources_json(),
                *(["--max-concurrency", str(config.api_max_concurrency)] if config.api_max_concurrency else []),
                *self._template_args(),
                *self._environment_args(plan.api_function),
            ],
            env,
        )

    def _stack_info(
        self, api_url: str, endpoint_url: str, moto_url: str, queues: Mapping[str, EventQueue]
    ) -> StackInfo:
        plan = self.plan
        return StackInfo(
            api_url=api_url,
            endpoint_url=endpoint_url,
            s3_endpoint_url=moto_url,
            region=plan.resources.region,
            bucket=plan.bucket,
            prefix=plan.prefix,
            model_data_url=plan.model_data_url,
            endpoint_name=plan.endpoint_name,
            registry_table=plan.registry_table,
            dynamodb_endpoint_url=moto_url,
            sqs_endpoint_url=moto_url,
            queues={
                function_id: {"queue_url": queue.queue_url, "on_failure_url": queue.on_failure_url}
                for function_id, queue in queues.items()
            },
            log_dir=str(self.log_dir),
            pid=os.getpid(),
            resources=asdict(plan.resources),
            run_id=self.run_id,
            pids=self._pids(),
            state_dir=str(self.journal_dir) if self.config.persist else "",
            serving=plan.serving,
        )

    def _pids(self) -> dict[str, int]:
        return {child.name: child.pid for child in self.children if child.process is not None}

    def _publish(self) -> None:
        if self._info is None:
            return
        self._info = replace(self._info, pids=self._pids())
        if self.config.write_stack_file:
            write_ready_file(self._stack_file, self._info.as_dict(), indent=2)

    @property
    def failure(self) -> str | None:
        """Why the supervisor gave up on a child (the stack is then unusable), else None."""
        return self.supervisor.failure if self.supervisor else None

    def child(self, name: str) -> Child:
        for child in self.children:
            if child.name == name:
                return child
        raise KeyError(f"no child {name!r}; children: {[c.name for c in self.children]}")

    def stop(self) -> None:
        """Stop every child (API first, moto last, so nothing talks to a dead dependency)."""
        if self.supervisor is not None:
            self.supervisor.stop()
            self.supervisor = None
        for child in reversed(self.children):
            child.stop()
        self.children.clear()
        for held in self._sockets:
            held.close()
        self._sockets.clear()
        shutil.rmtree(self._run_dir, ignore_errors=True)
        if self.config.write_stack_file and self._info is not None:
            self._stack_file.unlink(missing_ok=True)
        self._info = None

    def __enter__(self) -> LocalStack:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # clients
    def client(self, service: str, **kwargs: Any) -> Any:
        import boto3

        info = self.info
        urls = {
            "s3": info.s3_endpoint_url,
            "dynamodb": info.dynamodb_endpoint_url,
            "sqs": info.sqs_endpoint_url,
            "sagemaker-runtime": info.endpoint_url,
        }
        if service not in urls:
            raise ValueError(f"the local stack has no {service!r}; it serves {sorted(urls)}")
        # The service is chosen at run time; boto3-stubs only types literal service names.
        return boto3.client(  # type: ignore[call-overload]
            service,
            endpoint_url=urls[service],
            region_name=info.region,
            aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            **kwargs,
        )

    # plumbing
    def _queue_name(self, function: FunctionSpec) -> str:
        return f"{self.plan.resources.stack_name}-{function.logical_id}-s3-events"

    def _on_failure_queue_name(self, function: FunctionSpec) -> str | None:
        """The template's OnFailure destination, named like CloudFormation names it (stack-LogicalId)."""
        if not function.on_failure_logical_id:
            return None
        return f"{self.plan.resources.stack_name}-{function.on_failure_logical_id}"

    def _resources_json(self) -> str:
        return json.dumps(asdict(self.plan.resources))

    def _template_args(self) -> list[str]:
        return ["--template", str(self.config.template_path)] if self.config.template_path else []

    def _base_environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUBBED_PREFIXES)}
        env.update(LOCAL_CREDENTIALS)
        env.update(
            {
                "AWS_REGION": self.plan.resources.region,
                "AWS_DEFAULT_REGION": self.plan.resources.region,
                # A developer's ~/.aws must not redirect or re-credential the local stack.
                "AWS_CONFIG_FILE": os.devnull,
                "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
                "AWS_EC2_METADATA_DISABLED": "true",
                "PYTHONUNBUFFERED": "1",
                # Scratch files of every child (moto's spooled S3 bodies too) stay inside this run.
                "TMPDIR": str(self._run_dir / "tmp"),
            }
        )
        return env

    def _environment_args(self, function: FunctionSpec) -> list[str]:
        """Per-function overrides of the template's variables (`sam local --env-vars` style)."""
        overrides = self.config.function_env.get(function.logical_id) or {}
        return ["--environment", json.dumps(overrides)] if overrides else []

    def _spawn(
        self,
        name: str,
        args: list[str],
        env: Mapping[str, str],
        ready_file: bool = True,
        pass_fds: Sequence[int] = (),
        ping_url: str | None = None,
    ) -> Child:
        ready_path = self._run_dir / f"{name}.json" if ready_file else None
        child = Child(
            name=name,
            argv=[sys.executable, *args, *(["--ready-file", str(ready_path)] if ready_path else [])],
            env=env,
            log_path=self.log_dir / f"{name}.log",
            ready_file=ready_path,
            pass_fds=pass_fds,
            ping_url=ping_url,
        )
        child.start()
        self.children.append(child)
        return child


# --- make up -----------------------------------------------------------------------------------


def print_banner(
    info: StackInfo, started_seconds: float, live_cities: Sequence[str] | None = None, stack_file: Path | None = None
) -> None:
    """What runs where, and what to try next: a prediction for a live city, or, with none live yet, how to
    train some first (``live_cities=[]``); ``None`` when unknown (no prediction is suggested).

    Every value and command is printed whole on one line (soft wrap), in a terminal of any width or a pipe.
    """
    from rich.console import Console

    console = Console(soft_wrap=True)

    def say(text: str = "", style: str | None = None) -> None:
        console.print(text, style=style, markup=False, highlight=False)

    serving = "dense container" if info.serving == "dense" else "managed scikit-learn image"
    facts = {
        "HTTP API": info.api_url,
        "Endpoint (SageMaker Runtime)": f"{info.endpoint_url}  name={info.endpoint_name}  serving={serving}",
        "S3 / SQS / DynamoDB (moto)": info.s3_endpoint_url,
        "Bucket": info.bucket,
        "Model data URL": info.model_data_url,
        "Registry table": info.registry_table,
        "Logs": info.log_dir,
        "State": info.state_dir or "in memory only",
        **{
            f"Schedule ({function})": f"{url}  one tick at a chosen time: python -m local.scheduler tick --time ISO"
            for function, url in info.schedulers.items()
        },
    }
    width = max(len(name) for name in facts)
    say(f"local stack up in {started_seconds:.1f}s", style="bold green")
    for name, value in facts.items():
        say(f"  {name:<{width}}  {value}")
    exports = " ".join(f"{name}={value}" for name, value in info.client_environment().items())
    api = info.api_url
    if live_cities is not None and not live_cities:
        say(
            "No model is live yet: train and publish some cities first (in another shell; model-sync promotes them):",
            style="bold",
        )
        say(f"  export {exports}")
        say(f"  .venv/bin/python -m training.jobs --cities Chicago_IL Dallas_TX --publish --bucket {info.bucket}")
        say(f"  curl -s {api}/locations")
    else:
        say("Try:", style="bold")
        say(f"  curl -s {api}/health")
        say(f"  curl -s {api}/locations")
        if live_cities:
            sample = json.dumps(schema.EXAMPLE_HOUSE)
            say(
                f"  curl -s -X POST {api}/locations/{sorted(live_cities)[0]}/predictions "
                f"-H 'content-type: application/json' -d '{sample}'"
            )
        say("Point any boto3 program (training.jobs, ops, scripts) at it:", style="bold")
        say(f"  export {exports}")
    where = stack_file or Path(DEFAULT_STATE_DIR) / STACK_FILE_NAME
    say(f"stack facts in {where} — Ctrl-C stops everything", style="dim")


def live_cities(stack: LocalStack) -> list[str] | None:
    """The cities with a live model in the stack's registry; None if it cannot be read."""
    from botocore.exceptions import BotoCoreError, ClientError

    from house_prices.errors import DomainError
    from house_prices.registry import ModelRegistry

    try:
        return [
            model.city for model in ModelRegistry(stack.client("dynamodb"), stack.info.registry_table).live_models()
        ]
    except (BotoCoreError, ClientError, DomainError):
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make up", description="run the local stack until Ctrl-C")
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    parser.add_argument("--template", type=Path, default=None)
    parser.add_argument("--parameter", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--quiet", action="store_true", help="no banner (for scripts)")
    parser.add_argument("--fresh", action="store_true", help="discard the saved S3/SQS/DynamoDB state first")
    parser.add_argument("--no-persist", action="store_true", help="keep S3/SQS/DynamoDB state in memory only")
    parser.add_argument(
        "--serving",
        choices=["managed", "dense"],
        help="the endpoint's image: the managed scikit-learn image (emulated) or the dense container (its real "
        "command, behind the SageMaker side); default: the template's (ServingImageUri)",
    )
    args = parser.parse_args(argv)
    parameters = dict(item.split("=", 1) for item in args.parameter)

    stopped = threading.Event()
    received: list[int] = []

    def on_signal(signum: int, _frame: Any) -> None:
        received.append(signum)
        stopped.set()

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, on_signal)
    started = time.perf_counter()
    stack = LocalStack(
        StackConfig(
            template_path=args.template,
            state_dir=args.state_dir,
            parameters=parameters,
            fresh=args.fresh,
            persist=not args.no_persist,
            serving=args.serving,
        )
    )
    try:
        info = stack.start()
    except (ChildFailed, TemplateError, JournalLocked) as error:
        print(f"local stack failed to start: {error}", file=sys.stderr)
        return 1
    try:
        if args.quiet:
            print(json.dumps({"ready": True, "api_url": info.api_url}), flush=True)
        else:
            print_banner(
                info,
                time.perf_counter() - started,
                live_cities=live_cities(stack),
                stack_file=Path(args.state_dir) / STACK_FILE_NAME,
            )
        while not stopped.wait(0.5):
            if stack.failure:
                print(f"stopping: {stack.failure.splitlines()[0]} (logs: {stack.log_dir})", file=sys.stderr)
                return 1
        return 0
    finally:
        stack.stop()
        print("local stack stopped", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
