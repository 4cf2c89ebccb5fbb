"""The serving stack of the configured scikit-learn image, per image tag, as data.

In multi-model mode the image answers through three layers, and what a client sees depends on all
of them: multi-model-server (MMS: a Java frontend and a Python worker), the ``sagemaker-inference``
toolkit (``Transformer``: hook calls, decoding, error handling) and the container's
``handler_service`` (the scikit-learn default hooks). ``ops/images.json`` (``containers``)
records which versions each tag ships; this module holds what those versions *do*, and the loader
(``endpoint.program``) and default hooks (``endpoint.codecs``) follow it.

sagemaker-inference 1.2.0 under MMS 1.1.1 (every supported tag), read from their sources and checked
against them, case by case, by ``tests/integration/test_toolkit_fidelity.py``:

- Hooks get their documented arguments only: ``model_fn(model_dir)``, ``input_fn(data, content_type)``,
  ``predict_fn(data, model)``, ``output_fn(prediction, accept)``, ``transform_fn(model, data,
  content_type, accept)``. A context argument arrived in 1.7.0; a hook that wants one fails with
  Python's own ``TypeError``.
- A hook's exception is answered with status 500, its ``str()`` as body and as HTTP reason phrase,
  and no traceback; only ``sagemaker_inference.errors.BaseInferenceToolkitError`` carries its own
  status. An empty message becomes "Invalid Request".
- A reason phrase with a line break cannot be sent: Netty refuses it, the MMS worker thread dies and
  the request is never answered, so SageMaker gives up at its 60 s invocation timeout. The toolkit's
  own ``UnsupportedFormatError`` (unsupported content type or accept in the default hooks) has line
  breaks in its message: on AWS that is a timeout, not a 500 or 415.
- ``model_fn``'s exception is swallowed when MMS loads the model and raised again on every request,
  outside the toolkit's error handling: MMS answers 503 with its JSON error "Prediction failed". The
  reason is only in the container's log.
- An output MMS cannot serialise: 503 with MMS's JSON error "Unsupported model output data type.".
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from endpoint.errors import ContainerError

# What MMS's Python worker answers when the handler itself raises (mms/service.py, Service.predict).
PREDICTION_FAILED = "Prediction failed"
UNSERIALISABLE_OUTPUT = "Unsupported model output data type."
# Not a real status: the container never answers. SageMaker reports its own timeout then.
NO_RESPONSE_STATUS = 0
INVOCATION_TIMEOUT_SECONDS = 60
PICKLE_PATCH = "sagemaker_inference/decoder.py"

PhraseLineBreaks = Literal["no-response", "removed"]


@dataclass(frozen=True)
class ToolkitRules:
    """How one sagemaker-inference version (with its MMS) answers around the hooks."""

    hooks_take_context: bool
    traceback_in_body: bool
    # "no-response": MMS cannot send the phrase (1.2.0); "removed": the toolkit strips CR/LF (1.5.x+).
    phrase_line_breaks: PhraseLineBreaks


# Only versions a supported image ships. A tag with another version needs its rules read from
# github.com/aws/sagemaker-inference-toolkit (transformer.py) and added here, with the fidelity test.
TOOLKITS: dict[str, ToolkitRules] = {
    "1.2.0": ToolkitRules(hooks_take_context=False, traceback_in_body=False, phrase_line_breaks="no-response"),
}


@dataclass(frozen=True)
class ServingStack:
    """The serving stack of one image tag."""

    image_version: str
    sagemaker_inference: str
    multi_model_server: str
    rules: ToolkitRules
    # The 1.4-2-py312 image replaces the toolkit's decoder.py with one that loads npy without pickles.
    npy_allow_pickle: bool

    @property
    def hooks_take_context(self) -> bool:
        return self.rules.hooks_take_context

    def hook_error(self, error: BaseException, trace: str = "") -> ContainerError:
        """What the toolkit answers when input_fn/predict_fn/output_fn/transform_fn raise ``error``."""
        status, message, phrase = _toolkit_answer(error)
        if ("\n" in phrase or "\r" in phrase) and self.rules.phrase_line_breaks == "no-response":
            return no_response(phrase, self)
        if self.rules.traceback_in_body and trace:
            message = f"{message}\n{trace}"
        return ContainerError(message, status)

    def model_load_error(self) -> ContainerError:
        """What a request gets when ``model_fn`` raised: MMS's own error, the reason stays in the log."""
        return mms_error(503, PREDICTION_FAILED)

    def unserialisable_output(self) -> ContainerError:
        return mms_error(503, UNSERIALISABLE_OUTPUT)

    def describe(self) -> str:
        patched = ", decoder.py patched" if not self.npy_allow_pickle else ""
        return (
            f"image {self.image_version}: sagemaker-inference {self.sagemaker_inference}{patched}, "
            f"multi-model-server {self.multi_model_server}"
        )


class UnknownServingStack(ValueError):
    pass


def for_image(image_version: str | None = None) -> ServingStack:
    """The serving stack of an image tag from ``ops/images.json`` (its default tag if None)."""
    from ops.images import load_table

    table = load_table()
    version = image_version or table.default_version
    if version not in table.versions["inference"]:
        raise UnknownServingStack(
            f"scikit-learn image version {version!r} is not an inference image; "
            f"use one of {', '.join(table.versions['inference'])}"
        )
    facts = table.containers[version]
    toolkit = facts["sagemaker-inference"]
    try:
        rules = TOOLKITS[toolkit]
    except KeyError:
        raise UnknownServingStack(
            f"image {version} ships sagemaker-inference {toolkit}, which the local endpoint does not emulate "
            f"(known: {', '.join(TOOLKITS)}); add its rules to endpoint/toolkit.py"
        ) from None
    return ServingStack(
        image_version=version,
        sagemaker_inference=toolkit,
        multi_model_server=facts["multi-model-server"],
        rules=rules,
        npy_allow_pickle=facts.get("patched") != PICKLE_PATCH,
    )


def mms_error(status: int, message: str) -> ContainerError:
    """MMS's frontend error body (NettyUtils.sendError: pretty-printed Gson of ErrorResponse, then a newline)."""
    body = json.dumps({"code": status, "type": "InternalServerException", "message": message}, indent=2) + "\n"
    return ContainerError(body, status)


def no_response(phrase: str, stack: ServingStack) -> ContainerError:
    """The request MMS never answers; locally it is answered at once, saying why, instead of after 60 s."""
    first_line = phrase.strip().splitlines()[0] if phrase.strip() else ""
    return ContainerError(
        f"No response from the model container: its error message has a line break, which "
        f"multi-model-server {stack.multi_model_server} cannot send as a reason phrase, so SageMaker times out "
        f"after {INVOCATION_TIMEOUT_SECONDS} s (sagemaker-inference {stack.sagemaker_inference}, image "
        f"{stack.image_version}). Error: {first_line}",
        NO_RESPONSE_STATUS,
    )


def _toolkit_answer(error: BaseException) -> tuple[int, str, str]:
    """(status, body, reason phrase) as ``Transformer.transform`` builds them."""
    if _is_toolkit_error(error):
        toolkit_error: Any = error
        return int(toolkit_error.status_code), str(toolkit_error.message), str(toolkit_error.phrase)
    # GenericInferenceToolkitError(500, str(e)): message or "Invalid Request", phrase = message.
    message = str(error) or "Invalid Request"
    return 500, message, message


def _is_toolkit_error(error: BaseException) -> bool:
    # By name: programs may raise the toolkit's errors, but the toolkit is not installed locally.
    return any(
        cls.__name__ == "BaseInferenceToolkitError" and cls.__module__ == "sagemaker_inference.errors"
        for cls in type(error).__mro__
    )
