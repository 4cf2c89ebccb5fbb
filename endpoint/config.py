"""Typed settings of the local endpoint: read once from the environment (and CLI), never elsewhere."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from house_prices.artifacts import DEFAULT_MAX_UNPACKED_BYTES
from house_prices.naming import SAGEMAKER_NAME_MAX_LENGTH, SAGEMAKER_NAME_PATTERN, is_valid_sagemaker_name
from house_prices.schema import MAX_ENDPOINT_BODY_BYTES

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SUBMIT_DIRECTORY = REPO_ROOT / "training"
DEFAULT_PROGRAM = "inference.py"
DEFAULT_ENDPOINT_NAME = "local-mme"
DEFAULT_PORT = 8080
PRODUCTION_VARIANT = "AllTraffic"
# A fixed, obviously fake account for ARNs in error bodies (LogStreamArn): nothing here is a real account.
LOCAL_ACCOUNT_ID = "000000000000"
# InvokeEndpoint's documented payload limit (BodyBlob max in the service model).
MAX_BODY_BYTES = MAX_ENDPOINT_BODY_BYTES
# SageMaker answers within 60 s; a model still loading by then gets ModelNotReadyException and keeps loading.
DEFAULT_MODEL_LOAD_WAIT_SECONDS = 60.0
# SageMaker's EndpointName pattern and length (the service model of CreateEndpoint/InvokeEndpoint).
ENDPOINT_NAME_PATTERN = SAGEMAKER_NAME_PATTERN
ENDPOINT_NAME_MAX_LENGTH = SAGEMAKER_NAME_MAX_LENGTH

CacheSetting = Literal["Enabled", "Disabled"]
# managed: emulate the SageMaker scikit-learn image (its model server, toolkit and hooks, in this process).
# dense: be the SageMaker side only, in front of the dense container's process (endpoint.sagemaker_side).
Serving = Literal["managed", "dense"]
_S3_URL = re.compile(r"s3://(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])/(?P<prefix>.*)")

# In multi-model mode the scikit-learn image starts multi-model-server with default_workers_per_model set
# from this variable, 1 when unset (sagemaker_sklearn_container/serving_mms.py _set_mms_configs, and its
# config.properties.tmp): MMS starts that many Python worker processes for each model it loads.
# SAGEMAKER_MODEL_SERVER_WORKERS is not read in that mode. The local endpoint maps it to --workers: that
# many server processes, each holding its own copy of every model it serves, as MMS's workers do.
MODEL_WORKERS_VARIABLE = "SAGEMAKER_NUM_MODEL_WORKERS"


def _words(raw: str) -> tuple[str, ...]:
    return tuple(raw.split())


@dataclass(frozen=True)
class ModelDataUrl:
    """The MME's ``ModelDataUrl``: a bucket and a key prefix that TargetModel is appended to."""

    bucket: str
    prefix: str

    @classmethod
    def parse(cls, url: str) -> ModelDataUrl:
        match = _S3_URL.fullmatch(url.strip())
        if not match:
            raise ValueError(f"model data URL must look like s3://bucket/prefix/, got {url!r}")
        prefix = match["prefix"]
        if prefix and not prefix.endswith("/"):
            # SageMaker concatenates ModelDataUrl and TargetModel verbatim; a prefix is a "directory".
            prefix += "/"
        if ".." in prefix.split("/") or prefix.startswith("/"):
            raise ValueError(f"model data URL prefix must not contain '..' or start with '/': {url!r}")
        return cls(bucket=match["bucket"], prefix=prefix)

    def key_for(self, target_model: str) -> str:
        return f"{self.prefix}{target_model}"

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


@dataclass(frozen=True)
class Setting:
    """How one ``EndpointConfig`` field is set: its environment variables (first set wins) and how a value
    converts, its ``python -m endpoint`` option and help. Declared once, on the field; ``from_env``, the CLI
    (``endpoint.__main__``) and the docs test (tests/unit/test_endpoint_settings_docs.py) read it."""

    variables: tuple[str, ...] = ()
    convert: Callable[[str], Any] = str
    option: str | None = None
    help: str = ""
    # The help's words for the default, when the field's value is not what a reader needs ("" omits it).
    default_text: str | None = None
    choices: tuple[str, ...] | None = None
    # An option taking several values (``--preload a b``); an empty list is meaningful.
    many: bool = False


def setting(*variables: str, convert: Callable[[str], Any] = str, **cli: Any) -> dict[str, Setting]:
    """A field's metadata: its ``Setting``."""
    return {"setting": Setting(tuple(variables), convert, **cli)}


def settings() -> dict[str, tuple[Setting, Any]]:
    """Each settable field: its ``Setting`` and its default (``MISSING`` when required)."""
    return {
        item.name: (item.metadata["setting"], item.default)
        for item in fields(EndpointConfig)
        if "setting" in item.metadata
    }


@dataclass(frozen=True)
class EndpointConfig:
    model_data_url: ModelDataUrl = field(
        metadata=setting(
            "MODEL_DATA_URL",
            convert=ModelDataUrl.parse,
            option="--model-data-url",
            help="s3://bucket/prefix/ TargetModel is relative to",
            default_text="",
        )
    )
    endpoint_name: str = field(
        default=DEFAULT_ENDPOINT_NAME,
        metadata=setting("ENDPOINT_NAME", option="--endpoint-name", help="EndpointName to answer to", default_text=""),
    )
    host: str = field(default="127.0.0.1", metadata=setting("ENDPOINT_HOST", option="--host", help="bind address"))
    port: int = field(
        default=DEFAULT_PORT,
        metadata=setting("ENDPOINT_PORT", convert=int, option="--port", help="port; 0 = a free port"),
    )
    # None: a private temporary directory created at startup and removed at shutdown.
    cache_dir: Path | None = field(
        default=None,
        metadata=setting(
            "ENDPOINT_CACHE_DIR",
            convert=Path,
            option="--cache-dir",
            help="disk cache of unpacked models",
            default_text="",
        ),
    )
    max_disk_bytes: int = field(default=2 * 1024**3, metadata=setting("ENDPOINT_MAX_DISK_BYTES", convert=int))
    # None: no count bound (SageMaker itself bounds by memory only).
    max_models: int | None = field(
        default=None,
        metadata=setting(
            "ENDPOINT_MAX_MODELS", convert=int, option="--max-models", help="max models in memory", default_text=""
        ),
    )
    max_memory_bytes: int = field(
        default=1024**3,
        metadata=setting(
            "ENDPOINT_MAX_MEMORY_BYTES",
            convert=int,
            option="--max-memory-bytes",
            help="max measured bytes of models in memory",
            default_text="",
        ),
    )
    model_cache_setting: CacheSetting = field(
        default="Enabled",
        metadata=setting(
            "MODEL_CACHE_SETTING",
            option="--model-cache-setting",
            help="SageMaker ModelCacheSetting",
            choices=("Enabled", "Disabled"),
            default_text="",
        ),
    )
    program: str = field(default=DEFAULT_PROGRAM, metadata=setting("SAGEMAKER_PROGRAM"))
    submit_directory: Path = field(
        default=DEFAULT_SUBMIT_DIRECTORY, metadata=setting("SAGEMAKER_SUBMIT_DIRECTORY", convert=Path)
    )
    default_accept: str = field(default="application/json", metadata=setting("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT"))
    model_load_wait_seconds: float = field(
        default=DEFAULT_MODEL_LOAD_WAIT_SECONDS,
        metadata=setting(
            "ENDPOINT_MODEL_LOAD_WAIT_SECONDS",
            convert=float,
            option="--model-load-wait-seconds",
            help="wait for a loading model before ModelNotReadyException",
        ),
    )
    # The same budget model-sync enforces before an artifact ever reaches the MME prefix.
    max_artifact_bytes: int = DEFAULT_MAX_UNPACKED_BYTES
    max_unpacked_bytes: int = field(
        default=DEFAULT_MAX_UNPACKED_BYTES, metadata=setting("ENDPOINT_MAX_UNPACKED_BYTES", convert=int)
    )
    load_workers: int = 4
    # Predictions slower than ``inline_predict_seconds`` run here; two threads, since more only fight over the GIL.
    predict_workers: int = 2
    region: str = field(default="us-east-1", metadata=setting("AWS_REGION", "AWS_DEFAULT_REGION"))
    max_body_bytes: int = MAX_BODY_BYTES
    # A model whose recent predictions took less than this runs inline on the event loop: a thread hop
    # costs more than a microsecond predict. 0 sends every prediction to the predict pool.
    inline_predict_seconds: float = field(
        default=0.002,
        metadata=setting(
            "ENDPOINT_INLINE_PREDICT_SECONDS",
            convert=float,
            option="--inline-predict-seconds",
            help="predict on the event loop when a model's recent predictions took less than this "
            "(0 = always in the predict pool)",
        ),
    )
    # Server processes sharing the listening socket; each has its own model cache (see docs/endpoint.md).
    workers: int = field(
        default=1,
        metadata=setting(
            "ENDPOINT_WORKERS",
            MODEL_WORKERS_VARIABLE,
            convert=int,
            option="--workers",
            help="managed serving: server processes sharing the socket and the disk cache, each holding its own copy "
            "of every model it serves, as the image's model server runs SAGEMAKER_NUM_MODEL_WORKERS processes per "
            "model",
        ),
    )
    # Modules imported at boot, as the scikit-learn container does, so no first request pays for them.
    preload_modules: tuple[str, ...] = field(
        default=("sklearn.ensemble",),
        metadata=setting(
            "ENDPOINT_PRELOAD_MODULES",
            convert=_words,
            option="--preload",
            help="modules imported at boot, as the scikit-learn container does",
            default_text="sklearn.ensemble",
            many=True,
        ),
    )
    # A request body that has not fully arrived by then is answered 408 and its connection closed.
    body_read_timeout_seconds: float = field(
        default=10.0,
        metadata=setting(
            "ENDPOINT_BODY_READ_TIMEOUT_SECONDS",
            convert=float,
            option="--body-read-timeout-seconds",
            help="answer 408 and close when a body has not arrived by then",
        ),
    )
    # A model_fn still running after this is declared failed (its thread cannot be killed; it is not
    # restarted until it returns). Longer than the load wait, so a slow load first means ModelNotReady.
    model_load_timeout_seconds: float = field(
        default=120.0,
        metadata=setting(
            "ENDPOINT_MODEL_LOAD_TIMEOUT_SECONDS",
            convert=float,
            option="--model-load-timeout-seconds",
            help="a model load (download + model_fn) still running after this fails",
        ),
    )
    # S3 budget of one cold load: frozen or unreachable S3 fails in about
    # attempts x (connect + read timeout) instead of hanging the request.
    s3_connect_timeout_seconds: float = field(
        default=1.0, metadata=setting("ENDPOINT_S3_CONNECT_TIMEOUT_SECONDS", convert=float)
    )
    s3_read_timeout_seconds: float = field(
        default=2.0, metadata=setting("ENDPOINT_S3_READ_TIMEOUT_SECONDS", convert=float)
    )
    s3_max_attempts: int = field(default=2, metadata=setting("ENDPOINT_S3_MAX_ATTEMPTS", convert=int))
    # The scikit-learn image tag whose serving stack is emulated (endpoint.toolkit); None: the default tag.
    # SAGEMAKER_SKLEARN_VERSION is what the image itself sets (final/Dockerfile.cpu: ENV SAGEMAKER_SKLEARN_VERSION).
    image_version: str | None = field(
        default=None,
        metadata=setting(
            "SAGEMAKER_SKLEARN_VERSION",
            option="--image-version",
            help="scikit-learn image tag whose serving stack to emulate",
            default_text="ops/images.json's default",
        ),
    )
    serving: Serving = field(
        default="managed",
        metadata=setting(
            "ENDPOINT_SERVING",
            option="--serving",
            choices=("managed", "dense"),
            help="managed: emulate the SageMaker scikit-learn image in this process; dense: be the SageMaker side in "
            "front of the dense container's process, started with the image's command",
        ),
    )
    # Dense serving: the container's --workers (None: its own default, the CPUs it may use).
    container_workers: int | None = field(
        default=None,
        metadata=setting(
            "ENDPOINT_CONTAINER_WORKERS",
            convert=int,
            option="--container-workers",
            help="dense serving: the container's --workers",
            default_text="its own, the CPUs it may use",
        ),
    )
    # Dense serving: SageMaker gives a container 60 s to answer an invocation.
    container_invoke_timeout_seconds: float = 60.0

    def __post_init__(self) -> None:
        if self.model_cache_setting not in ("Enabled", "Disabled"):
            raise ValueError(f"model cache setting must be Enabled or Disabled, got {self.model_cache_setting!r}")
        if self.max_models is not None and self.max_models < 1:
            raise ValueError("max models must be at least 1")
        for name in (
            "max_memory_bytes",
            "max_disk_bytes",
            "load_workers",
            "predict_workers",
            "max_body_bytes",
            "workers",
            "s3_max_attempts",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name.replace('_', ' ')} must be positive")
        for name in (
            "model_load_wait_seconds",
            "model_load_timeout_seconds",
            "body_read_timeout_seconds",
            "s3_connect_timeout_seconds",
            "s3_read_timeout_seconds",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name.replace('_', ' ')} must be positive")
        if self.serving not in ("managed", "dense"):
            raise ValueError(f"serving must be managed or dense, got {self.serving!r}")
        if self.serving == "dense" and self.workers != 1:
            raise ValueError(
                "workers (SAGEMAKER_NUM_MODEL_WORKERS) are the managed image's processes per model; in dense serving "
                "the container's own workers count (--container-workers)"
            )
        if self.container_workers is not None and self.container_workers < 1:
            raise ValueError("container workers must be positive")
        if self.container_invoke_timeout_seconds <= 0:
            raise ValueError("container invoke timeout seconds must be positive")
        if self.inline_predict_seconds < 0:
            raise ValueError("inline predict seconds must not be negative")
        if not is_valid_endpoint_name(self.endpoint_name):
            raise ValueError(f"invalid endpoint name {self.endpoint_name!r} (SageMaker EndpointName rules)")

    @property
    def program_path(self) -> Path:
        return Path(self.submit_directory) / self.program

    @property
    def log_group(self) -> str:
        return f"/aws/sagemaker/Endpoints/{self.endpoint_name}"

    @property
    def log_stream_arn(self) -> str:
        return (
            f"arn:aws:logs:{self.region}:{LOCAL_ACCOUNT_ID}:log-group:{self.log_group}"
            f":log-stream:{PRODUCTION_VARIANT}/local"
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str], **overrides: Any) -> EndpointConfig:
        """Settings from ``environ``; ``overrides`` (e.g. parsed CLI options) win when not None."""
        values: dict[str, Any] = {}
        url = overrides.pop("model_data_url", None) or environ.get("MODEL_DATA_URL")
        if not url:
            raise ValueError("a model data URL is required (--model-data-url or MODEL_DATA_URL)")
        values["model_data_url"] = url if isinstance(url, ModelDataUrl) else ModelDataUrl.parse(url)
        for name, (spec, _) in settings().items():
            if name == "model_data_url":
                continue
            for variable in spec.variables:
                raw = environ.get(variable)
                # An empty preload list is meaningful ("import nothing"); elsewhere empty means unset.
                if raw is not None and (raw != "" or spec.many):
                    try:
                        values[name] = spec.convert(raw)
                    except ValueError as error:
                        raise ValueError(f"{variable}={raw!r} is not a valid {spec.convert.__name__}") from error
                    break
        values.update({name: value for name, value in overrides.items() if value is not None})
        return cls(**values)


def is_valid_endpoint_name(name: str) -> bool:
    return is_valid_sagemaker_name(name)
