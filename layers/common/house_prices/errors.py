"""Domain errors shared by the router, model-sync, training and the local stack.

Adapters translate AWS/botocore failures into these; one module per function maps them to
HTTP responses or retry decisions. None of them knows about HTTP status codes.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldProblem:
    field: str
    problem: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "problem": self.problem}


class DomainError(Exception):
    """Base of every error this project raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(DomainError):
    """The caller sent something we cannot use; ``problems`` names each offending field."""

    def __init__(self, problems: list[FieldProblem], message: str = "Invalid request") -> None:
        super().__init__(message)
        self.problems = problems


class InvalidCityName(InvalidInput):
    def __init__(self, city: object, pattern: str, field: str = "city") -> None:
        super().__init__(
            [FieldProblem(field, f"must match ^{pattern}$ (letters, digits, '_' or '-')")],
            message=f"Invalid city name: {city!r}",
        )


class InvalidVersion(InvalidInput):
    def __init__(self, version: object, field: str = "version") -> None:
        super().__init__(
            [FieldProblem(field, "must look like 20260101T000000Z-0123abcd")],
            message=f"Invalid model version: {version!r}",
        )


class InvalidPredictionId(InvalidInput):
    """Not a prediction id as the API hands them out (``house_prices.ids``)."""

    def __init__(self, problems: list[FieldProblem]) -> None:
        super().__init__(problems, message="Invalid prediction id")


class PayloadTooLarge(DomainError):
    def __init__(self, field: str, problem: str) -> None:
        super().__init__("Request too large")
        self.problems = [FieldProblem(field, problem)]


class NotFound(DomainError):
    def __init__(self, field: str, problem: str, message: str) -> None:
        super().__init__(message)
        self.problems = [FieldProblem(field, problem)]


class UnknownCity(NotFound):
    def __init__(self, city: str) -> None:
        super().__init__("city", f"no live model for {city!r}", f"Unknown city: {city}")
        self.city = city


class UnknownVersion(NotFound):
    def __init__(self, city: str, version: str) -> None:
        super().__init__("version", f"{city!r} has no version {version!r}", f"Unknown version: {version}")
        self.city = city
        self.version = version


class NotAModelKey(DomainError):
    """An S3 key that is not a training output we act on (model-sync ignores it)."""


class InvalidArtifact(DomainError):
    """A training output that must never be served; rejecting it is permanent."""


class ModelInvocationError(DomainError):
    """The model container answered with an error (SageMaker ``ModelError``)."""

    def __init__(self, message: str, original_status: int | None = None) -> None:
        super().__init__(message)
        self.original_status = original_status


class EndpointBusy(DomainError):
    """Model not ready yet, or throttled: the caller should retry later."""

    def __init__(self, message: str, retry_after_seconds: int = 1) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class EndpointTimeout(DomainError):
    """The endpoint did not answer within the configured time."""


class EndpointUnavailable(DomainError):
    """The endpoint failed for reasons that are not the caller's fault."""


class PromotionRefused(DomainError):
    """A conditional registry write lost: a newer version is already live."""


class DependencyFailure(DomainError):
    """A transient failure of S3/DynamoDB/etc.; handlers re-raise so Lambda retries."""


class RolloutConflict(DomainError):
    """A rollout write lost: another rollout runs, or the rollout changed since it was read (revision)."""


class NoRollout(NotFound):
    """The city has no rollout running (of that candidate)."""

    def __init__(self, city: str, candidate_version: str | None = None) -> None:
        of = f" of {candidate_version}" if candidate_version else ""
        super().__init__("rollout", f"{city!r} has no rollout{of} running", f"No rollout{of} running for {city}")
        self.city = city
        self.candidate_version = candidate_version
