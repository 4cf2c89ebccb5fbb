"""A local stand-in for a SageMaker multi-model endpoint running the scikit-learn container.

It speaks InvokeEndpoint's wire protocol (so boto3's ``sagemaker-runtime`` client works against it
unchanged), downloads ``TargetModel`` from the configured S3 prefix, loads it with the configured
``inference.py`` hooks and keeps loaded models in a measured, bounded LRU. No business logic lives
here: it knows nothing about houses, cities or the registry.

The ASGI app factory is ``endpoint.app.create_app``; the CLI is ``python -m endpoint``.
"""
