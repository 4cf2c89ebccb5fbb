"""The dense multi-model container: SageMaker's custom-container contract for CPU multi-model endpoints.

``python -m container`` is the image's ``serve`` command (``container/Dockerfile``): ``GET /ping``,
``POST/GET /models``, ``GET/DELETE /models/{model_name}`` and ``POST /models/{model_name}/invoke`` on
port 8080, serving thousands of memory-mapped packed forests per instance with the project's
``inference.py`` hooks. Its workers share one registry of loaded models and one memory budget. Beside
numpy and its HTTP stack (Starlette, uvicorn) it imports only the ``endpoint`` modules it reuses, the
model format and a few modules of the layer, all copied into the image; no boto3 (SageMaker downloads
the models). docs/container.md describes the contract, its sources, the image and the measured figures.
"""
