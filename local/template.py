"""Read ``template.yaml`` the way CloudFormation + SAM would, for the local stack.

The template is the single source of truth for each function's handler, code location, timeout,
memory, environment and events, and for the multi-model endpoint's settings. This module parses it
(short-form tags such as ``!Sub`` included), merges SAM ``Globals``, and resolves intrinsic
functions against a :class:`LocalResources` mapping that stands in for the deployed stack.
Anything it cannot resolve raises :class:`TemplateError` naming the function, the field and the
reference, so a template change that the local stack does not understand fails loudly.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TEMPLATE = REPO_ROOT / "template.yaml"

# SAM's documented defaults for AWS::Serverless::Function.
SAM_DEFAULT_TIMEOUT = 3
SAM_DEFAULT_MEMORY = 128
# Lambda's default for asynchronous invocations (S3 events): two retries after the first attempt.
LAMBDA_DEFAULT_ASYNC_RETRIES = 2
# moto's default account, so ARNs built here match what the local services report.
LOCAL_ACCOUNT_ID = "123456789012"
LOCAL_STACK_NAME = "house-prices-local"

_FUNCTION_TYPES = {"AWS::Serverless::Function", "AWS::Lambda::Function"}
_SUB_VARIABLE = re.compile(r"\$\{([^}]*)\}")


class TemplateError(ValueError):
    """The template is missing something, or uses something the local stack cannot resolve."""


# --- YAML loading ------------------------------------------------------------------------------


class _CfnLoader(yaml.SafeLoader):
    """A SafeLoader that turns CloudFormation short tags into their long ``Fn::`` form."""


def _construct_tag(loader: _CfnLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if tag_suffix == "Ref" else f"Fn::{tag_suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        # `!GetAtt Resource.Attribute` is the only short form whose scalar is really a list.
        if tag_suffix == "GetAtt":
            value = str(value).split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {name: value}


_CfnLoader.add_multi_constructor("!", _construct_tag)
# CloudFormation keeps `on`/`off`/`yes`/`no` and dates as strings; YAML 1.1 would not.
_CfnLoader.yaml_implicit_resolvers = {
    key: [
        (tag, regexp)
        for tag, regexp in resolvers
        if tag not in {"tag:yaml.org,2002:bool", "tag:yaml.org,2002:timestamp"}
    ]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_CfnLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def load_yaml(text: str) -> dict[str, Any]:
    document = yaml.load(text, Loader=_CfnLoader)
    if not isinstance(document, dict):
        raise TemplateError("template is not a YAML mapping")
    return document


# --- the stand-in for a deployed stack ---------------------------------------------------------


@dataclass(frozen=True)
class LocalResources:
    """What ``!Ref``/``!GetAtt``/pseudo parameters mean locally.

    ``refs`` maps a logical id to the value its ``!Ref`` returns (a physical name); ``attributes``
    maps ``"LogicalId.Attribute"`` to a ``!GetAtt`` value; ``parameters`` overrides parameter
    defaults. Resources not listed get a deterministic name derived from the stack name, the way
    CloudFormation derives names, or their own name property when the template sets one.
    """

    stack_name: str = LOCAL_STACK_NAME
    region: str = "us-east-1"
    account_id: str = LOCAL_ACCOUNT_ID
    parameters: Mapping[str, str] = field(default_factory=dict)
    refs: Mapping[str, str] = field(default_factory=dict)
    attributes: Mapping[str, str] = field(default_factory=dict)

    def pseudo(self, name: str) -> Any:
        values: dict[str, Any] = {
            "AWS::Region": self.region,
            "AWS::AccountId": self.account_id,
            "AWS::StackName": self.stack_name,
            "AWS::StackId": f"arn:aws:cloudformation:{self.region}:{self.account_id}:stack/{self.stack_name}/local",
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NotificationARNs": [],
            "AWS::NoValue": _NO_VALUE,
        }
        if name not in values:
            raise TemplateError(f"unknown pseudo parameter {name!r}")
        return values[name]


class _NoValue:
    def __repr__(self) -> str:
        return "AWS::NoValue"


_NO_VALUE = _NoValue()


# --- what the local stack needs to know --------------------------------------------------------


@dataclass(frozen=True)
class HttpRoute:
    """One ``HttpApi`` event: ``method`` upper-case (``ANY`` allowed), ``path`` or ``$default``.

    ``api_id`` is the logical id of the ``AWS::Serverless::HttpApi`` it is attached to (``None``:
    SAM's implicit API).
    """

    event_name: str
    method: str
    path: str
    api_id: str | None = None

    @property
    def route_key(self) -> str:
        return "$default" if self.path == "$default" else f"{self.method} {self.path}"


@dataclass(frozen=True)
class CorsConfiguration:
    """An HttpApi's ``CorsConfiguration``: API Gateway answers preflights and adds these headers itself."""

    allow_origins: tuple[str, ...] = ()
    allow_methods: tuple[str, ...] = ()
    allow_headers: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    max_age: int | None = None
    allow_credentials: bool = False


@dataclass(frozen=True)
class S3Trigger:
    """One ``S3`` event: which bucket (logical id and resolved name), which events, which key filter."""

    event_name: str
    bucket_logical_id: str
    bucket_name: str
    events: tuple[str, ...]
    prefix: str = ""
    suffix: str = ""

    def matches(self, key: str) -> bool:
        return key.startswith(self.prefix) and key.endswith(self.suffix)


@dataclass(frozen=True)
class SqsTrigger:
    """One ``SQS`` event (an event source mapping): which queue, how many messages per batch, and
    whether the function reports partial batch failures (``ReportBatchItemFailures``)."""

    event_name: str
    queue_logical_id: str
    batch_size: int = 10
    report_batch_item_failures: bool = False


@dataclass(frozen=True)
class ScheduleTrigger:
    """One ``Schedule`` event (an EventBridge rule on a schedule): its expression, e.g. ``rate(1 minute)``."""

    event_name: str
    expression: str
    enabled: bool = True


@dataclass(frozen=True)
class FunctionSpec:
    logical_id: str
    function_name: str
    code_uri: Path
    handler: str
    runtime: str
    timeout: int
    memory_size: int
    environment: Mapping[str, str]
    http_routes: tuple[HttpRoute, ...] = ()
    s3_triggers: tuple[S3Trigger, ...] = ()
    sqs_triggers: tuple[SqsTrigger, ...] = ()
    schedule_triggers: tuple[ScheduleTrigger, ...] = ()
    # Asynchronous invocations (S3 events) are attempted 1 + this many times before dead-lettering.
    max_async_retries: int = LAMBDA_DEFAULT_ASYNC_RETRIES
    # EventInvokeConfig's OnFailure destination (e.g. a dead-letter queue), by logical id.
    on_failure_logical_id: str | None = None
    layer_paths: tuple[Path, ...] = ()
    # ReservedConcurrentExecutions: the most execution environments Lambda runs at once (None: unreserved).
    reserved_concurrency: int | None = None

    @property
    def module(self) -> str:
        return self.handler.rpartition(".")[0]

    @property
    def attribute(self) -> str:
        return self.handler.rpartition(".")[2]


@dataclass(frozen=True)
class MultiModelSpec:
    """The SageMaker ``Model`` whose container runs in ``MultiModel`` mode."""

    logical_id: str
    model_cache_setting: str
    environment: Mapping[str, str]
    model_data_url: str | None
    image: str | None

    @property
    def program(self) -> str:
        return self.environment.get("SAGEMAKER_PROGRAM", "inference.py")


# --- the template ------------------------------------------------------------------------------


class Template:
    def __init__(self, document: Mapping[str, Any], base_dir: Path = REPO_ROOT) -> None:
        self.document = document
        self.base_dir = base_dir
        resources = document.get("Resources")
        if not isinstance(resources, Mapping) or not resources:
            raise TemplateError("template has no Resources")
        self.resources: Mapping[str, Mapping[str, Any]] = resources

    @classmethod
    def load(cls, path: Path | str | None = None) -> Template:
        path = Path(path) if path else DEFAULT_TEMPLATE
        if not path.is_file():
            raise TemplateError(f"template not found: {path}")
        return cls(load_yaml(path.read_text()), base_dir=path.resolve().parent)

    # parameters
    @property
    def parameter_defaults(self) -> dict[str, str]:
        defaults: dict[str, str] = {}
        for name, spec in (self.document.get("Parameters") or {}).items():
            if isinstance(spec, Mapping) and "Default" in spec:
                defaults[name] = _scalar(spec["Default"])
        return defaults

    def parameter(self, name: str, resources: LocalResources) -> str:
        if name in resources.parameters:
            return str(resources.parameters[name])
        defaults = self.parameter_defaults
        if name not in defaults:
            raise TemplateError(f"parameter {name!r} has no Default; pass it in LocalResources.parameters")
        return defaults[name]

    # resources by type
    def logical_ids(self, resource_type: str) -> list[str]:
        return [name for name, spec in self.resources.items() if spec.get("Type") == resource_type]

    def _properties(self, logical_id: str) -> Mapping[str, Any]:
        return self.resources[logical_id].get("Properties") or {}

    # tables
    def table_definition(self, logical_id: str, resources: LocalResources | None = None) -> dict[str, Any]:
        """CreateTable arguments (all but TableName) from an ``AWS::DynamoDB::Table`` declaration.

        Only the properties whose CloudFormation shape is CreateTable's own are taken; the rest
        (point-in-time recovery, SSE, deletion policy) mean nothing to a local table.
        """
        if logical_id not in self.logical_ids("AWS::DynamoDB::Table"):
            tables = ", ".join(self.logical_ids("AWS::DynamoDB::Table")) or "none"
            raise TemplateError(f"no AWS::DynamoDB::Table {logical_id!r} in template (tables: {tables})")
        props = self._properties(logical_id)
        return {
            name: self.resolve(props[name], resources or LocalResources(), where=f"{logical_id}.{name}")
            for name in _CREATE_TABLE_PROPERTIES
            if name in props
        }

    # functions
    def function_ids(self) -> list[str]:
        return [name for name, spec in self.resources.items() if spec.get("Type") in _FUNCTION_TYPES]

    def functions(self, resources: LocalResources | None = None) -> dict[str, FunctionSpec]:
        return {name: self.function(name, resources) for name in self.function_ids()}

    def function(self, logical_id: str, resources: LocalResources | None = None) -> FunctionSpec:
        resources = resources or LocalResources()
        if logical_id not in self.function_ids():
            raise TemplateError(f"no function {logical_id!r} in template (functions: {', '.join(self.function_ids())})")
        globals_ = ((self.document.get("Globals") or {}).get("Function")) or {}
        props = self._properties(logical_id)

        def setting(name: str, default: Any = None) -> Any:
            value = props.get(name, globals_.get(name, default))
            return self.resolve(value, resources, where=f"{logical_id}.{name}")

        handler = setting("Handler")
        code_uri = setting("CodeUri")
        if not handler or not isinstance(handler, str) or "." not in handler:
            raise TemplateError(f"{logical_id}.Handler must be 'module.function', got {handler!r}")
        if not code_uri or not isinstance(code_uri, str):
            raise TemplateError(f"{logical_id}.CodeUri must be a local path, got {code_uri!r}")

        environment: dict[str, str] = {}
        for source in (globals_, props):
            variables = ((source.get("Environment") or {}).get("Variables")) or {}
            for name, value in variables.items():
                resolved = self.resolve(value, resources, where=f"{logical_id}.Environment.Variables.{name}")
                if resolved is not _NO_VALUE:
                    environment[name] = _scalar(resolved)

        routes: list[HttpRoute] = []
        triggers: list[S3Trigger] = []
        sqs_triggers: list[SqsTrigger] = []
        schedules: list[ScheduleTrigger] = []
        for event_name, event in (props.get("Events") or {}).items():
            where = f"{logical_id}.Events.{event_name}"
            event_props = event.get("Properties") or {}
            if event.get("Type") == "HttpApi":
                routes.append(self._http_route(event_name, event_props, resources, where))
            elif event.get("Type") == "S3":
                triggers.append(self._s3_trigger(event_name, event_props, resources, where))
            elif event.get("Type") == "Schedule":
                expression = self.resolve(event_props.get("Schedule"), resources, where=f"{where}.Schedule")
                if not isinstance(expression, str):
                    raise TemplateError(f"{where}.Schedule must be a schedule expression, got {expression!r}")
                # SAM: Enabled (bool) or State (ENABLED | DISABLED); enabled when neither is set.
                enabled = self.resolve(event_props.get("Enabled", True), resources, where=f"{where}.Enabled")
                state = self.resolve(event_props.get("State", "ENABLED"), resources, where=f"{where}.State")
                schedules.append(ScheduleTrigger(event_name, expression, enabled is not False and state == "ENABLED"))
            elif event.get("Type") == "SQS":
                queue = _logical_id_of(event_props.get("Queue"))
                if queue is None:
                    raise TemplateError(f"{where}.Queue must be !GetAtt <queue in this template>.Arn")
                sqs_triggers.append(
                    SqsTrigger(
                        event_name,
                        queue,
                        int(self.resolve(event_props.get("BatchSize", 10), resources, where=f"{where}.BatchSize")),
                        "ReportBatchItemFailures" in (event_props.get("FunctionResponseTypes") or []),
                    )
                )

        invoke_config = props.get("EventInvokeConfig", globals_.get("EventInvokeConfig")) or {}
        retries = self.resolve(
            invoke_config.get("MaximumRetryAttempts", LAMBDA_DEFAULT_ASYNC_RETRIES),
            resources,
            where=f"{logical_id}.EventInvokeConfig.MaximumRetryAttempts",
        )
        on_failure = ((invoke_config.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination")
        # SAM lists are additive: global layers first, then the function's own.
        layer_refs = [*(globals_.get("Layers") or []), *(props.get("Layers") or [])]
        layers = tuple(path for path in (self._layer_path(layer) for layer in layer_refs) if path)
        reserved = setting("ReservedConcurrentExecutions")
        return FunctionSpec(
            logical_id=logical_id,
            function_name=str(setting("FunctionName") or f"{resources.stack_name}-{logical_id}"),
            code_uri=(self.base_dir / code_uri).resolve(),
            handler=handler,
            runtime=str(setting("Runtime", "")),
            timeout=int(setting("Timeout", SAM_DEFAULT_TIMEOUT)),
            memory_size=int(setting("MemorySize", SAM_DEFAULT_MEMORY)),
            environment=environment,
            http_routes=tuple(routes),
            s3_triggers=tuple(triggers),
            sqs_triggers=tuple(sqs_triggers),
            schedule_triggers=tuple(schedules),
            max_async_retries=int(retries),
            on_failure_logical_id=_logical_id_of(on_failure),
            layer_paths=layers,
            reserved_concurrency=None if reserved is None else int(reserved),
        )

    def _http_route(self, name: str, props: Mapping[str, Any], resources: LocalResources, where: str) -> HttpRoute:
        path = self.resolve(props.get("Path"), resources, where=f"{where}.Path")
        method = self.resolve(props.get("Method"), resources, where=f"{where}.Method")
        if path is None and method is None:
            return HttpRoute(name, "ANY", "$default")
        if not isinstance(path, str) or not path.startswith("/"):
            raise TemplateError(f"{where}.Path must start with '/', got {path!r}")
        method = str(method or "ANY").upper()
        api_id = _logical_id_of(props.get("ApiId"))
        return HttpRoute(name, "ANY" if method in {"ANY", "X-AMAZON-APIGATEWAY-ANY-METHOD"} else method, path, api_id)

    # HTTP APIs
    def http_api_cors(self, api_id: str | None, resources: LocalResources | None = None) -> CorsConfiguration | None:
        """The ``CorsConfiguration`` of an HttpApi (its own, else ``Globals.HttpApi``'s); None when CORS is off.

        ``true`` is SAM's shorthand for allowing every origin.
        """
        resources = resources or LocalResources()
        globals_ = (self.document.get("Globals") or {}).get("HttpApi") or {}
        props = self._properties(api_id) if api_id and api_id in self.resources else {}
        where = f"{api_id or 'Globals.HttpApi'}.CorsConfiguration"
        raw = self.resolve(props.get("CorsConfiguration", globals_.get("CorsConfiguration")), resources, where)
        if raw is None or raw is False:
            return None
        if raw is True:
            return CorsConfiguration(allow_origins=("*",))
        if not isinstance(raw, Mapping):
            raise TemplateError(f"{where} must be true or a mapping, got {raw!r}")

        def names(key: str) -> tuple[str, ...]:
            value = raw.get(key) or []
            if not isinstance(value, list):
                raise TemplateError(f"{where}.{key} must be a list, got {value!r}")
            return tuple(str(item) for item in value)

        max_age = raw.get("MaxAge")
        return CorsConfiguration(
            allow_origins=names("AllowOrigins"),
            allow_methods=names("AllowMethods"),
            allow_headers=names("AllowHeaders"),
            expose_headers=names("ExposeHeaders"),
            max_age=None if max_age is None else int(max_age),
            allow_credentials=bool(raw.get("AllowCredentials", False)),
        )

    def _s3_trigger(self, name: str, props: Mapping[str, Any], resources: LocalResources, where: str) -> S3Trigger:
        bucket_ref = props.get("Bucket")
        if not (isinstance(bucket_ref, Mapping) and isinstance(bucket_ref.get("Ref"), str)):
            raise TemplateError(f"{where}.Bucket must be !Ref to a bucket in this template (SAM requires it)")
        logical = bucket_ref["Ref"]
        events = self.resolve(props.get("Events"), resources, where=f"{where}.Events")
        events_tuple = (events,) if isinstance(events, str) else tuple(events or ())
        if not events_tuple:
            raise TemplateError(f"{where}.Events is required")
        rules = (((props.get("Filter") or {}).get("S3Key") or {}).get("Rules")) or []
        key_filter: dict[str, str] = {}
        for index, rule in enumerate(rules):
            rule_name = str(rule.get("Name", "")).lower()
            if rule_name not in {"prefix", "suffix"}:
                raise TemplateError(f"{where}.Filter.S3Key.Rules[{index}].Name must be prefix or suffix")
            key_filter[rule_name] = str(self.resolve(rule.get("Value"), resources, where=f"{where}.Filter"))
        return S3Trigger(
            event_name=name,
            bucket_logical_id=logical,
            bucket_name=str(self.ref(logical, resources, where=f"{where}.Bucket")),
            events=tuple(str(event) for event in events_tuple),
            prefix=key_filter.get("prefix", ""),
            suffix=key_filter.get("suffix", ""),
        )

    def _layer_path(self, layer: Any) -> Path | None:
        if isinstance(layer, Mapping) and isinstance(layer.get("Ref"), str) and layer["Ref"] in self.resources:
            content = self._properties(layer["Ref"]).get("ContentUri")
            if isinstance(content, str):
                return (self.base_dir / content).resolve()
        return None

    # the multi-model endpoint
    def multi_model(self, resources: LocalResources | None = None) -> MultiModelSpec:
        resources = resources or LocalResources()
        for logical_id in self.logical_ids("AWS::SageMaker::Model"):
            props = self._properties(logical_id)
            containers = (
                [props["PrimaryContainer"]] if "PrimaryContainer" in props else list(props.get("Containers") or [])
            )
            for container in containers:
                mode = self.resolve(container.get("Mode"), resources, where=f"{logical_id}.Mode")
                if mode != "MultiModel":
                    continue
                where = f"{logical_id}.PrimaryContainer"
                settings = container.get("MultiModelConfig") or {}
                cache = self.resolve(
                    settings.get("ModelCacheSetting", "Enabled"), resources, where=f"{where}.MultiModelConfig"
                )
                env = self.resolve(container.get("Environment") or {}, resources, where=f"{where}.Environment")
                data_url = container.get("ModelDataUrl")
                image = container.get("Image")
                return MultiModelSpec(
                    logical_id=logical_id,
                    model_cache_setting=str(cache),
                    environment={name: _scalar(value) for name, value in env.items()},
                    model_data_url=None
                    if data_url is None
                    else str(self.resolve(data_url, resources, where=f"{where}.ModelDataUrl")),
                    image=None if image is None else str(self.resolve(image, resources, where=f"{where}.Image")),
                )
        raise TemplateError("template has no AWS::SageMaker::Model with a container in Mode: MultiModel")

    # intrinsic functions
    def ref(self, name: str, resources: LocalResources, where: str = "") -> Any:
        if name.startswith("AWS::"):
            return resources.pseudo(name)
        if name in (self.document.get("Parameters") or {}):
            try:
                return self.parameter(name, resources)
            except TemplateError as error:
                raise TemplateError(f"{where}: {error}") from None
        if name in resources.refs:
            return resources.refs[name]
        if name not in self.resources:
            raise TemplateError(f"{where}: !Ref {name} names no parameter or resource")
        resource_type = self.resources[name].get("Type", "")
        props = self._properties(name)
        name_property = _NAME_PROPERTY.get(resource_type)
        if name_property:
            if name_property in props:
                return self.resolve(props[name_property], resources, where=f"{name}.{name_property}")
            derived = f"{resources.stack_name}-{name}"
            return derived.lower() if resource_type == "AWS::S3::Bucket" else derived
        raise TemplateError(
            f"{where}: cannot resolve !Ref {name} ({resource_type}) locally; add it to LocalResources.refs"
        )

    def get_att(self, logical_id: str, attribute: str, resources: LocalResources, where: str = "") -> Any:
        key = f"{logical_id}.{attribute}"
        if key in resources.attributes:
            return resources.attributes[key]
        if logical_id not in self.resources:
            raise TemplateError(f"{where}: !GetAtt {key} names no resource")
        resource_type = self.resources[logical_id].get("Type", "")
        region, account = resources.region, resources.account_id
        if resource_type == "AWS::SageMaker::Endpoint" and attribute == "EndpointName":
            props = self._properties(logical_id)
            if "EndpointName" in props:
                return self.resolve(props["EndpointName"], resources, where=f"{logical_id}.EndpointName")
            return f"{resources.stack_name}-{logical_id}"
        if attribute == "Arn" and resource_type in _ARN_FORMAT:
            physical = self.ref(logical_id, resources, where=where)
            return _ARN_FORMAT[resource_type].format(region=region, account=account, name=physical)
        if attribute == "Name" and resource_type in {"AWS::SQS::Queue", "AWS::SageMaker::Model"}:
            return self.ref(logical_id, resources, where=where)
        raise TemplateError(
            f"{where}: cannot resolve !GetAtt {key} ({resource_type}) locally; add it to LocalResources.attributes"
        )

    def condition(self, name: str, resources: LocalResources, where: str = "") -> bool:
        conditions = self.document.get("Conditions") or {}
        if name not in conditions:
            raise TemplateError(f"{where}: condition {name!r} is not defined")
        return bool(self.resolve(conditions[name], resources, where=f"Conditions.{name}"))

    def resolve(self, value: Any, resources: LocalResources, where: str = "") -> Any:
        """Evaluate every intrinsic function in ``value``; raise TemplateError naming ``where``."""
        if isinstance(value, list):
            items = [self.resolve(item, resources, where) for item in value]
            return [item for item in items if item is not _NO_VALUE]
        if not isinstance(value, Mapping):
            return value
        if len(value) == 1:
            ((key, argument),) = value.items()
            if key == "Ref":
                return self.ref(str(argument), resources, where)
            if key == "Condition" and isinstance(argument, str):
                return self.condition(argument, resources, where)
            if key.startswith("Fn::"):
                return self._function(key, argument, resources, where)
        resolved = {
            key: self.resolve(item, resources, f"{where}.{key}" if where else key) for key, item in value.items()
        }
        return {key: item for key, item in resolved.items() if item is not _NO_VALUE}

    def _function(self, name: str, argument: Any, resources: LocalResources, where: str) -> Any:
        if name == "Fn::Sub":
            return self._sub(argument, resources, where)
        if name == "Fn::GetAtt":
            parts = argument.split(".", 1) if isinstance(argument, str) else list(argument)
            if len(parts) != 2:
                raise TemplateError(f"{where}: malformed !GetAtt {argument!r}")
            return self.get_att(str(parts[0]), str(self.resolve(parts[1], resources, where)), resources, where)
        if name == "Fn::Join":
            delimiter, items = argument
            return str(delimiter).join(_scalar(item) for item in self.resolve(items, resources, where))
        if name == "Fn::Select":
            index, items = argument
            return self.resolve(items, resources, where)[int(self.resolve(index, resources, where))]
        if name == "Fn::Split":
            delimiter, text = argument
            return str(self.resolve(text, resources, where)).split(delimiter)
        if name == "Fn::FindInMap":
            map_name, first, second = (self.resolve(item, resources, where) for item in argument)
            try:
                return self.document["Mappings"][map_name][first][second]
            except (KeyError, TypeError) as missing:
                raise TemplateError(f"{where}: !FindInMap [{map_name}, {first}, {second}] has no value") from missing
        if name == "Fn::If":
            condition, when_true, when_false = argument
            chosen = when_true if self.condition(condition, resources, where) else when_false
            return self.resolve(chosen, resources, where)
        if name == "Fn::Equals":
            left, right = (self.resolve(item, resources, where) for item in argument)
            return _scalar(left) == _scalar(right)
        if name == "Fn::Not":
            return not self.resolve(argument[0], resources, where)
        if name == "Fn::And":
            return all(self.resolve(item, resources, where) for item in argument)
        if name == "Fn::Or":
            return any(self.resolve(item, resources, where) for item in argument)
        raise TemplateError(f"{where}: intrinsic function {name} is not supported by the local stack")

    def _sub(self, argument: Any, resources: LocalResources, where: str) -> str:
        if isinstance(argument, list):
            text, variables = argument[0], self.resolve(argument[1], resources, where)
        else:
            text, variables = argument, {}
        if not isinstance(text, str):
            raise TemplateError(f"{where}: !Sub needs a string, got {text!r}")

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1).strip()
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return _scalar(variables[name])
            if "." in name and not name.startswith("AWS::"):
                logical, attribute = name.split(".", 1)
                return _scalar(self.get_att(logical, attribute, resources, where))
            return _scalar(self.ref(name, resources, where))

        return _SUB_VARIABLE.sub(substitute, text)


_CREATE_TABLE_PROPERTIES = (
    "AttributeDefinitions",
    "KeySchema",
    "GlobalSecondaryIndexes",
    "LocalSecondaryIndexes",
    "BillingMode",
    "ProvisionedThroughput",
)
_NAME_PROPERTY = {
    "AWS::S3::Bucket": "BucketName",
    "AWS::DynamoDB::Table": "TableName",
    "AWS::Serverless::Function": "FunctionName",
    "AWS::Lambda::Function": "FunctionName",
    "AWS::SQS::Queue": "QueueName",
    "AWS::SageMaker::Model": "ModelName",
    "AWS::SageMaker::EndpointConfig": "EndpointConfigName",
    "AWS::Logs::LogGroup": "LogGroupName",
}
_ARN_FORMAT = {
    "AWS::S3::Bucket": "arn:aws:s3:::{name}",
    "AWS::DynamoDB::Table": "arn:aws:dynamodb:{region}:{account}:table/{name}",
    "AWS::Serverless::Function": "arn:aws:lambda:{region}:{account}:function:{name}",
    "AWS::Lambda::Function": "arn:aws:lambda:{region}:{account}:function:{name}",
    "AWS::SQS::Queue": "arn:aws:sqs:{region}:{account}:{name}",
    # A log group's Arn attribute covers its streams.
    "AWS::Logs::LogGroup": "arn:aws:logs:{region}:{account}:log-group:{name}:*",
}


def _logical_id_of(reference: Any) -> str | None:
    """The resource a ``!Ref X`` or ``!GetAtt X.Arn`` points at, without resolving it."""
    if isinstance(reference, Mapping):
        if isinstance(reference.get("Ref"), str):
            return reference["Ref"]
        attribute = reference.get("Fn::GetAtt")
        if isinstance(attribute, list) and attribute:
            return str(attribute[0])
    return None


def _scalar(value: Any) -> str:
    """CloudFormation stringifies scalars in environments and substitutions; booleans lower-case."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise TemplateError(f"expected a scalar, got {value!r}")
