"""The container's error answers: one class per status of the multi-model contract, and its JSON body.

The body is multi-model-server's ``ErrorResponse`` (``{"code", "type", "message"}``), the shape the
frontend SageMaker's own multi-model containers run on sends for every error; ``type`` names the kind
of failure as MMS's exception classes do. Code raises these; ``container.handlers`` answers them.
"""

from __future__ import annotations

from typing import Any


class ContainerError(Exception):
    """An error answer; subclasses fix ``status`` and ``kind``, which an instance may override."""

    status: int = 500
    kind: str = "InternalServerException"

    def __init__(self, message: str, *, status: int | None = None, kind: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if kind is not None:
            self.kind = kind

    def body(self) -> dict[str, Any]:
        return {"code": self.status, "type": self.kind, "message": self.message}


class BadRequest(ContainerError):
    status = 400
    kind = "BadRequestException"


class InvalidModel(ContainerError):
    """The model directory breaks the container's rules (links out of it, special files, too large, ...)."""

    status = 400
    kind = "InvalidModelException"


class ModelNotFound(ContainerError):
    status = 404
    kind = "ModelNotFoundException"


class ResourceNotFound(ContainerError):
    status = 404
    kind = "ResourceNotFoundException"


class MethodNotAllowed(ContainerError):
    status = 405
    kind = "MethodNotAllowedException"


class RequestTimeout(ContainerError):
    """The body did not arrive in time; the connection is closed after this answer."""

    status = 408
    kind = "RequestTimeoutException"


class Conflict(ContainerError):
    """``POST /models`` for a name that is already loaded (or being loaded: one load, the rest get this)."""

    status = 409
    kind = "ConflictStatusException"


class PayloadTooLarge(ContainerError):
    status = 413
    kind = "PayloadTooLargeException"


class UnsupportedMediaType(ContainerError):
    status = 415
    kind = "UnsupportedMediaTypeException"


class ModelLoadFailed(ContainerError):
    """``model_fn`` raised or outlived the load timeout."""

    status = 500
    kind = "ModelLoadException"


class InvocationFailed(ContainerError):
    """An inference hook raised; ``status`` may be the hook's own (a toolkit error), 500 otherwise."""

    kind = "InvocationException"


class ShuttingDown(ContainerError):
    status = 503
    kind = "ServiceUnavailableException"


class InsufficientMemory(ContainerError):
    """The memory budget cannot take the model: SageMaker unloads others and tries again."""

    status = 507
    kind = "InsufficientMemoryException"
