"""Run requests through the scikit-learn image's real serving code, in multi-model mode.

Runs inside a venv from ``tests.sagemaker_image.serving_stack_python`` (the image's Python), never
in the project's venv: ``python tests/toolkit_harness.py spec.json answers.json``.

Real code, as the image runs it: multi-model-server's Python worker (``MmsModelLoader.load`` imports
the handler and runs ``initialize``, swallowing its errors; ``Service.predict`` calls ``handle`` and
``create_predict_response`` encodes the answer), ``sagemaker_inference`` (``Transformer``) and the
container's vendored ``handler_service``, with the image's decoder patch applied the way its
Dockerfile does (the patched module replaces ``sagemaker_inference.decoder``).

Emulated, from multi-model-server 1.1.1's Java sources (checked against a real MMS 1.1.1 run): the
frontend's use of that answer. ``BatchAggregator.sendResponse``: a worker code other than 200 becomes
``Job.sendError`` (``NettyUtils.sendError``: the code and a pretty-printed JSON ``ErrorResponse``);
otherwise ``Job.response`` sends each prediction's status, reason phrase, content type and body, and
``HttpResponseStatus.valueOf(code, phrase)`` throws on a phrase with CR or LF, which kills the worker
thread after the job was taken: that request is never answered ("no-response").
"""

import importlib.util
import json
import os
import struct
import sys


def main(spec_path, answers_path):
    with open(spec_path) as f:
        spec = json.load(f)
    os.environ["SAGEMAKER_PROGRAM"] = spec["program"]
    os.environ["SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT"] = spec["default_accept"]
    os.environ["SAGEMAKER_MULTI_MODEL"] = "true"
    sys.path[:0] = spec["python_path"]
    if spec["patched_decoder"]:
        _replace_module("sagemaker_inference.decoder", spec["patched_decoder"])

    from mms.model_loader import MmsModelLoader

    services = {}
    answers = []
    for index, case in enumerate(spec["cases"]):
        model = case["model"]
        if model not in services:
            handler = "sagemaker_sklearn_container.handler_service"
            services[model] = MmsModelLoader().load(model, spec["models"][model], handler, None, 1)
        request_id = f"request-{index}".encode()
        headers = []
        if case["content_type"] is not None:
            headers.append({"name": b"Content-Type", "value": case["content_type"].encode()})
        if case["accept"] is not None:
            headers.append({"name": b"Accept", "value": case["accept"].encode()})
        body = bytes.fromhex(case["body_hex"])
        batch = [
            {
                "requestId": request_id,
                "parameters": [{"name": "body", "value": body, "contentType": case["content_type"] or ""}],
                "headers": headers,
            }
        ]
        answers.append(_frontend(services[model].predict(batch)))
    with open(answers_path, "w") as f:
        json.dump(answers, f)


def _replace_module(name, path):
    """What ``COPY patches/decoder.py .../sagemaker_inference/decoder.py`` does, before anything imports it."""
    package_name, _, attribute = name.rpartition(".")
    package = importlib.import_module(package_name)
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    module_spec.loader.exec_module(module)
    setattr(package, attribute, module)


def _frontend(message):
    """The HTTP answer the MMS frontend makes of the worker's message (one request per batch)."""
    reader = _Reader(bytes(message))
    code = reader.integer()
    worker_message = reader.text()
    reader.text()  # request id
    content_type = reader.text()
    status = reader.integer()
    phrase = reader.text()
    headers = {}
    for _ in range(reader.integer()):
        name = reader.text()
        headers[name] = reader.text()
    body = reader.blob()
    if code != 200:
        error = {"code": code, "type": "InternalServerException", "message": worker_message}
        return {
            "outcome": "answer",
            "status": code,
            "content_type": "application/json",
            "body_hex": (json.dumps(error, indent=2) + "\n").encode().hex(),
        }
    if "\r" in phrase or "\n" in phrase:
        return {"outcome": "no-response", "phrase": phrase}
    return {"outcome": "answer", "status": status, "content_type": content_type or None, "body_hex": body.hex()}


class _Reader:
    def __init__(self, data):
        self.data = data
        self.offset = 0

    def integer(self):
        (value,) = struct.unpack_from("!i", self.data, self.offset)
        self.offset += 4
        return value

    def blob(self):
        length = self.integer()
        value = self.data[self.offset : self.offset + length]
        self.offset += length
        return value

    def text(self):
        return self.blob().decode("utf-8")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
