"""What an AWS call from the operator's machine can fail with, as domain errors.

The ops adapters (``ops/adapters/``) translate botocore's exceptions with :func:`aws_error`, so the
logic above them (``ops.preflight``, ``ops.stack``) decides on a few meanings instead of error codes:
no usable credentials, a missing permission, a stack that does not exist, anything else.
"""

from __future__ import annotations

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ProfileNotFound,
    TokenRetrievalError,
    UnauthorizedSSOTokenError,
)

from house_prices.errors import DependencyFailure, DomainError

_DENIED = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "AuthorizationError", "403"}
_BAD_CREDENTIALS = {
    "ExpiredToken",
    "ExpiredTokenException",
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "SignatureDoesNotMatch",
    "InvalidAccessKeyId",
}
_CREDENTIAL_FAILURES = (
    NoCredentialsError,
    PartialCredentialsError,
    ProfileNotFound,
    TokenRetrievalError,
    UnauthorizedSSOTokenError,
)


class NoCredentials(DomainError):
    """No credentials, expired ones, or a profile that does not exist."""


class NoRegion(DomainError):
    """No region anywhere: not given, not in the environment, not in the profile."""


class AccessDenied(DomainError):
    """The caller may not make this call; ``action`` names it as IAM spells it."""

    def __init__(self, action: str, message: str) -> None:
        super().__init__(message)
        self.action = action


class StackNotFound(DomainError):
    def __init__(self, stack: str, region: str | None) -> None:
        where = f" in {region}" if region else ""
        super().__init__(f"stack {stack} does not exist{where} (deploy it: make deploy; or check --region)")
        self.stack = stack


def error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def aws_error(action: str, error: BotoCoreError | ClientError) -> DomainError:
    """The domain error for a failed call of IAM action ``action`` (e.g. ``logs:DescribeLogGroups``)."""
    if isinstance(error, _CREDENTIAL_FAILURES):
        return NoCredentials(f"no usable AWS credentials: {error}")
    if isinstance(error, NoRegionError):
        return NoRegion("no region: pass --region (REGION= for make), set AWS_REGION, or give your profile one")
    if isinstance(error, ClientError):
        code = error_code(error)
        if code in _BAD_CREDENTIALS:
            return NoCredentials(f"the AWS credentials were refused ({code}): {error}")
        if code in _DENIED:
            return AccessDenied(action, f"{action} denied: {error}")
    return DependencyFailure(f"{action} failed: {error}")
