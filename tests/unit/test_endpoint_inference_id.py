"""The local endpoint checks InferenceId as SageMaker Runtime does: the service model's 1-64 characters and
``\\A\\S[\\p{Print}]*\\z`` in Java's reading (``\\p{Print}`` is US-ASCII), so what the router sends passes
and what SageMaker would refuse is a ValidationError here too."""

from __future__ import annotations

import boto3
import pytest

from endpoint import protocol
from endpoint.errors import ValidationError
from house_prices import ids

MODEL = boto3.client("sagemaker-runtime", region_name="us-east-1").meta.service_model
SHAPE = MODEL.operation_model("InvokeEndpoint").input_shape.members["InferenceId"]


def test_the_limits_are_the_service_models() -> None:
    assert (SHAPE.metadata["min"], SHAPE.metadata["max"], SHAPE.metadata["pattern"]) == (1, 64, r"\A\S[\p{Print}]*\z")
    assert SHAPE.serialization["name"] == protocol.INFERENCE_ID_HEADER


@pytest.mark.parametrize("value", [ids.new_ulid(), "req-1", "a b", "x" * 64, "~!@#$%^&*()", "é"])
def test_what_sagemaker_accepts_is_accepted(value: str) -> None:
    # "é" alone: Java's \S takes any non-space first character; only the rest must be \p{Print}
    assert protocol.validate_inference_id(value) == value


@pytest.mark.parametrize(
    "value",
    [
        "",
        "x" * 65,
        " leading",
        "\tleading",
        "caf\u00c3\u00a9",  # UTF-8 "café" as the header arrives (latin-1): not US-ASCII after the first character
        "a\u00a0b",  # no-break space: printable to Python, not to Java's \p{Print}
        "a\x7fb",
    ],
)
def test_what_sagemaker_refuses_is_refused(value: str) -> None:
    with pytest.raises(ValidationError, match="InferenceId"):
        protocol.validate_inference_id(value)
