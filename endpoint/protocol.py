"""InvokeEndpoint request validation and error rendering: the pure part of the wire protocol."""

from __future__ import annotations

import re

from endpoint.config import (
    ENDPOINT_NAME_MAX_LENGTH,
    ENDPOINT_NAME_PATTERN,
    LOCAL_ACCOUNT_ID,
    EndpointConfig,
    is_valid_endpoint_name,
)
from endpoint.errors import ArtifactInvalid, ArtifactMissing, ModelError, ValidationError

TARGET_MODEL_HEADER = "X-Amzn-SageMaker-Target-Model"
CUSTOM_ATTRIBUTES_HEADER = "X-Amzn-SageMaker-Custom-Attributes"
INFERENCE_ID_HEADER = "X-Amzn-SageMaker-Inference-Id"
INVOKED_VARIANT_HEADER = "x-Amzn-Invoked-Production-Variant"
REQUEST_ID_HEADER = "x-amzn-RequestId"
ERROR_TYPE_HEADER = "x-amzn-ErrorType"
_MAX_MESSAGE = 2048  # the Message shape's max length


def _printable(value: str) -> bool:
    """The service model's ``\\A\\S[\\p{Print}]*\\z``: non-blank first character, all printable."""
    return bool(value) and not value[0].isspace() and value.isprintable()


def validate_target_model(value: str | None) -> str:
    if value is None:
        raise ValidationError(
            f"TargetModel ({TARGET_MODEL_HEADER} header) is required when invoking a multi-model endpoint."
        )
    if not 1 <= len(value) <= 1024:
        raise ValidationError(f"TargetModel must be 1 to 1024 characters long, got {len(value)}.")
    if not _printable(value):
        raise ValidationError("TargetModel must consist of printable characters and not start with whitespace.")
    if value.startswith("/") or ".." in value:
        # TargetModel is a name relative to ModelDataUrl; it must not climb out of the prefix.
        raise ValidationError(
            f"TargetModel {value!r} must be relative to the model data prefix (no leading '/' or '..')."
        )
    return value


def unparsable_request(received: bytes, reason: str) -> ValidationError:
    """The error for a request the HTTP parser rejected: a TargetModel header that is not printable gets
    TargetModel's own ValidationError (as it would had it parsed); anything else says what was wrong."""
    target = _raw_header(received, TARGET_MODEL_HEADER)
    if target is not None:
        try:
            validate_target_model(target)
        except ValidationError as error:
            return error
    return ValidationError(f"The request is not valid HTTP/1.1: {reason}.")


def _raw_header(received: bytes, name: str) -> str | None:
    """``name``'s value as sent in the request head, control characters and all (None when absent)."""
    head = received.split(b"\r\n\r\n", 1)[0]
    wanted = name.lower().encode("latin-1")
    for line in head.split(b"\n")[1:]:
        field, colon, value = line.partition(b":")
        if colon and field.strip().lower() == wanted:
            return value.strip(b" \t\r").decode("latin-1")
    return None


def validate_custom_attributes(value: str | None) -> str | None:
    if value is None:
        return None
    if len(value) > 1024 or not value.isascii():
        raise ValidationError("CustomAttributes must be at most 1024 US-ASCII characters.")
    return value


# InferenceId's pattern in the service model, \A\S[\p{Print}]*\z, read as SageMaker's Java reads it:
# \p{Print} is US-ASCII 0x20-0x7E only, \S anything but [ \t\n\x0B\f\r].
_INFERENCE_ID = re.compile(r"[^ \t\n\x0b\f\r][ -~]*")


def validate_inference_id(value: str | None) -> str | None:
    if value is None:
        return None
    if not 1 <= len(value) <= 64 or not _INFERENCE_ID.fullmatch(value):
        raise ValidationError("InferenceId must be 1 to 64 printable characters and not start with whitespace.")
    return value


def validate_endpoint_name(requested: str, config: EndpointConfig) -> None:
    """The service's own order: the name's constraints (in AWS's validation wording), then existence.

    ``requested`` is the decoded path segment(s): ``a%2Fb`` arrives as ``a/b`` and fails the pattern,
    as it does on SageMaker Runtime.
    """
    if requested == config.endpoint_name:
        return
    if not is_valid_endpoint_name(requested):
        if len(requested) > ENDPOINT_NAME_MAX_LENGTH:
            constraint = f"Member must have length less than or equal to {ENDPOINT_NAME_MAX_LENGTH}"
        else:
            constraint = f"Member must satisfy regular expression pattern: {ENDPOINT_NAME_PATTERN}"
        shown = requested if len(requested) <= 256 else requested[:253] + "..."
        raise ValidationError(
            f"1 validation error detected: Value '{shown}' at 'endpointName' failed to satisfy constraint: {constraint}"
        )
    raise ValidationError(f"Endpoint {requested} of account {LOCAL_ACCOUNT_ID} not found.")


def invalid_content_length() -> ValidationError:
    return ValidationError("Content-Length must be an integer.")


def body_too_large(size: int, limit: int) -> ValidationError:
    return ValidationError(f"Request body is {size} bytes; InvokeEndpoint accepts at most {limit} bytes.")


def missing_artifact(error: ArtifactMissing) -> ValidationError:
    """The message users report from SageMaker when TargetModel is not under the prefix."""
    return ValidationError(
        f"Failed to download model data (bucket: {error.bucket}, key: {error.key}). Please ensure that there is an "
        "object located at the URL and that the role passed to CreateModel has permissions to download the model."
    )


def invalid_artifact(error: ArtifactInvalid) -> ValidationError:
    return ValidationError(f"Failed to extract model data (bucket: {error.bucket}, key: {error.key}): {error}")


def model_error(original_status: int, original_message: str, config: EndpointConfig) -> ModelError:
    """SageMaker's wrapping of a non-2xx container answer."""
    kind = "client" if 400 <= original_status < 500 else "server"
    see = (
        f"See https://{config.region}.console.aws.amazon.com/cloudwatch/home?region={config.region}"
        f"#logEventViewer:group={config.log_group} in account {LOCAL_ACCOUNT_ID} for more information."
    )
    room = _MAX_MESSAGE - len(see) - 80
    quoted = original_message if len(original_message) <= room else original_message[: room - 3] + "..."
    message = f'Received {kind} error ({original_status}) from primary with message "{quoted}". {see}'
    return ModelError(message, original_status, original_message[:_MAX_MESSAGE], config.log_stream_arn)
