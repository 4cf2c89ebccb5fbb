"""The error codes of SageMaker Runtime's InvokeEndpoint, as the wire sends them.

These are protocol errors of a stand-in for an AWS service, not domain errors of this project:
botocore turns ``x-amzn-ErrorType`` + status into its own exception classes on the client side,
and the router maps those to ``house_prices.errors``.
"""

from __future__ import annotations

from typing import Any, ClassVar


class InvokeError(Exception):
    """An InvokeEndpoint error response: ``code`` goes in ``x-amzn-ErrorType``, ``status`` is the HTTP status."""

    code: ClassVar[str] = "InternalFailure"
    status: ClassVar[int] = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def body(self) -> dict[str, Any]:
        # botocore's JSON error parser reads "message" then "Message"; the modeled shape names "Message".
        return {"Message": self.message, "message": self.message}


class ValidationError(InvokeError):
    code = "ValidationError"
    status = 400


class ModelError(InvokeError):
    """The model container failed (a hook raised, or it answered non-2xx)."""

    code = "ModelError"
    status = 424

    def __init__(self, message: str, original_status: int, original_message: str, log_stream_arn: str) -> None:
        super().__init__(message)
        self.original_status = original_status
        self.original_message = original_message
        self.log_stream_arn = log_stream_arn

    def body(self) -> dict[str, Any]:
        return {
            **super().body(),
            "OriginalStatusCode": self.original_status,
            "OriginalMessage": self.original_message,
            "LogStreamArn": self.log_stream_arn,
        }


class ModelNotReady(InvokeError):
    """The target model is still downloading/loading after the wait limit; it keeps loading."""

    code = "ModelNotReadyException"
    status = 429


class RequestTimeout(InvokeError):
    """The request body did not arrive within the body read timeout; the connection is closed after this."""

    code = "RequestTimeout"
    status = 408


class UnknownOperation(InvokeError):
    """No InvokeEndpoint (or /ping, /metrics) at this method and path: what AWS answers for an unknown route."""

    code = "UnknownOperationException"
    status = 404


class InternalFailure(InvokeError):
    code = "InternalFailure"
    status = 500


class ServiceUnavailable(InvokeError):
    code = "ServiceUnavailable"
    status = 503


class ContainerError(Exception):
    """Raised inside the container (hooks, loading): becomes a ModelError at the protocol edge.

    ``status`` is what the model server would have answered; SageMaker reports it as OriginalStatusCode.
    """

    def __init__(self, message: str, status: int = 500) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class LoadTimeout(ContainerError):
    """``model_fn`` (or the download before it) outlived the load timeout; reported like a failing model_fn."""


class ArtifactMissing(Exception):
    """The TargetModel object is absent (or unreadable) under the model data prefix."""

    def __init__(self, bucket: str, key: str, detail: str) -> None:
        super().__init__(f"s3://{bucket}/{key}: {detail}")
        self.bucket = bucket
        self.key = key
        self.detail = detail


class ArtifactInvalid(Exception):
    """The artifact was downloaded but cannot be used (unsafe tar, too large, corrupt).

    ``bucket``/``key`` are filled in by the artifact cache, which knows where the artifact came from.
    """

    def __init__(self, message: str, bucket: str = "", key: str = "") -> None:
        super().__init__(message)
        self.bucket = bucket
        self.key = key


class StorageUnavailable(Exception):
    """S3 could not be reached or failed transiently."""


class ContainerUnavailable(Exception):
    """Dense serving: the model container could not be reached (it is restarting, or gave up)."""


class ClientGone(Exception):
    """The caller disconnected before its whole body arrived: nobody reads an answer."""
