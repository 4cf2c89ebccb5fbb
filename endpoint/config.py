"""Typed settings of the local endpoint: read once from the environment (and CLI), never elsewhere."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SUBMIT_DIRECTORY = REPO_ROOT / "training"
DEFAULT_PROGRAM = "inference.py"
DEFAULT_ENDPOINT_NAME = "local-mme"
DEFAULT_PORT = 8080
PRODUCTION_VARIANT = "AllTraffic"
# A fixed, obviously fake account for ARNs in error bodies (LogStreamArn): nothing here is a real account.
LOCAL_ACCOUNT_ID = "000000000000"
# InvokeEndpoint's documented payload limit (BodyBlob max in the service model).
MAX_BODY_BYTES = 6_291_456
# SageMaker answers within 60 s; a model still loading by then gets ModelNotReadyException and keeps loading.
DEFAULT_MODEL_LOAD_WAIT_SECONDS = 60.0
# SageMaker's EndpointName pattern and length (the service model of CreateEndpoint/InvokeEndpoint).
ENDPOINT_NAME_PATTERN = "^[a-zA-Z0-9](-*[a-zA-Z0-9])*"
ENDPOINT_NAME_MAX_LENGTH = 63
_ENDPOINT_NAME = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9])*")

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
class EndpointConfig:
    model_data_url: ModelDataUrl
    endpoint_name: str = DEFAULT_ENDPOINT_NAME
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    # None: a private temporary directory created at startup and removed at shutdown.
    cache_dir: Path | None = None
    max_disk_bytes: int = 2 * 1024**3
    # None: no count bound (SageMaker itself bounds by memory only).
    max_models: int | None = None
    max_memory_bytes: int = 1024**3
    model_cache_setting: CacheSetting = "Enabled"
    program: str = DEFAULT_PROGRAM
    submit_directory: Path = DEFAULT_SUBMIT_DIRECTORY
    default_accept: str = "application/json"
    model_load_wait_seconds: float = DEFAULT_MODEL_LOAD_WAIT_SECONDS
    max_artifact_bytes: int = 268_435_456
    max_unpacked_bytes: int = 268_435_456
    load_workers: int = 4
    # Predictions slower than ``inline_predict_seconds`` run here; two threads, since more only fight over the GIL.
    predict_workers: int = 2
    region: str = "us-east-1"
    max_body_bytes: int = MAX_BODY_BYTES
    # A model whose recent predictions took less than this runs inline on the event loop: a thread hop
    # costs more than a microsecond predict. 0 sends every prediction to the predict pool.
    inline_predict_seconds: float = 0.002
    # Server processes sharing the listening socket; each has its own model cache (see docs/endpoint.md).
    workers: int = 1
    # Modules imported at boot, as the scikit-learn container does, so no first request pays for them.
    preload_modules: tuple[str, ...] = ("sklearn.ensemble",)
    # A request body that has not fully arrived by then is answered 408 and its connection closed.
    body_read_timeout_seconds: float = 10.0
    # A model_fn still running after this is declared failed (its thread cannot be killed; it is not
    # restarted until it returns). Longer than the load wait, so a slow load first means ModelNotReady.
    model_load_timeout_seconds: float = 120.0
    # S3 budget of one cold load: frozen or unreachable S3 fails in about
    # attempts x (connect + read timeout) instead of hanging the request.
    s3_connect_timeout_seconds: float = 1.0
    s3_read_timeout_seconds: float = 2.0
    s3_max_attempts: int = 2
    # The scikit-learn image tag whose serving stack is emulated (endpoint.toolkit); None: the default tag.
    image_version: str | None = None
    serving: Serving = "managed"
    # Dense serving: the container's --workers (None: its own default, the CPUs it may use).
    container_workers: int | None = None
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
        # Each field's variables, first set wins, and how to convert the value.
        env_map: dict[str, tuple[str | tuple[str, ...], Any]] = {
            "endpoint_name": ("ENDPOINT_NAME", str),
            "host": ("ENDPOINT_HOST", str),
            "port": ("ENDPOINT_PORT", int),
            "cache_dir": ("ENDPOINT_CACHE_DIR", Path),
            "max_disk_bytes": ("ENDPOINT_MAX_DISK_BYTES", int),
            "max_models": ("ENDPOINT_MAX_MODELS", int),
            "max_memory_bytes": ("ENDPOINT_MAX_MEMORY_BYTES", int),
            "model_cache_setting": ("MODEL_CACHE_SETTING", str),
            "program": ("SAGEMAKER_PROGRAM", str),
            "submit_directory": ("SAGEMAKER_SUBMIT_DIRECTORY", Path),
            "default_accept": ("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT", str),
            "model_load_wait_seconds": ("ENDPOINT_MODEL_LOAD_WAIT_SECONDS", float),
            "max_unpacked_bytes": ("ENDPOINT_MAX_UNPACKED_BYTES", int),
            "region": ("AWS_REGION", str),
            "workers": (("ENDPOINT_WORKERS", MODEL_WORKERS_VARIABLE), int),
            "serving": ("ENDPOINT_SERVING", str),
            "container_workers": ("ENDPOINT_CONTAINER_WORKERS", int),
            "preload_modules": ("ENDPOINT_PRELOAD_MODULES", _words),
            "inline_predict_seconds": ("ENDPOINT_INLINE_PREDICT_SECONDS", float),
            "body_read_timeout_seconds": ("ENDPOINT_BODY_READ_TIMEOUT_SECONDS", float),
            "model_load_timeout_seconds": ("ENDPOINT_MODEL_LOAD_TIMEOUT_SECONDS", float),
            "s3_connect_timeout_seconds": ("ENDPOINT_S3_CONNECT_TIMEOUT_SECONDS", float),
            "s3_read_timeout_seconds": ("ENDPOINT_S3_READ_TIMEOUT_SECONDS", float),
            "s3_max_attempts": ("ENDPOINT_S3_MAX_ATTEMPTS", int),
            # The image itself sets this (final/Dockerfile.cpu: ENV SAGEMAKER_SKLEARN_VERSION).
            "image_version": ("SAGEMAKER_SKLEARN_VERSION", str),
        }
        for field, (variables, convert) in env_map.items():
            for variable in (variables,) if isinstance(variables, str) else variables:
                raw = environ.get(variable)
                # An empty preload list is meaningful ("import nothing"); elsewhere empty means unset.
                if raw is not None and (raw != "" or field == "preload_modules"):
                    try:
                        values[field] = convert(raw)
                    except ValueError as error:
                        raise ValueError(f"{variable}={raw!r} is not a valid {convert.__name__}") from error
                    break
        if "region" not in values and environ.get("AWS_DEFAULT_REGION"):
            values["region"] = environ["AWS_DEFAULT_REGION"]
        values.update({name: value for name, value in overrides.items() if value is not None})
        return cls(**values)


def is_valid_endpoint_name(name: str) -> bool:
    return len(name) <= ENDPOINT_NAME_MAX_LENGTH and _ENDPOINT_NAME.fullmatch(name) is not None


def _words(raw: str) -> tuple[str, ...]:
    return tuple(raw.split())
