"""A local stand-in for a SageMaker multi-model endpoint running the scikit-learn container.

It speaks InvokeEndpoint's wire protocol (so boto3's ``sagemaker-runtime`` client works against it
unchanged), downloads ``TargetModel`` from the configured S3 prefix, loads it with the configured
``inference.py`` hooks and keeps loaded models in a measured, bounded LRU. No business logic lives
here: it knows nothing about houses, cities or the registry.

The serving code it runs is ``training/inference.py`` (``model_fn``, ``input_fn``, ``predict_fn``,
``output_fn``): SageMaker's ``SAGEMAKER_PROGRAM``, which must ship in ``sourcedir.tar.gz`` beside
``train.py``, hence its place; ``endpoint.config.DEFAULT_PROGRAM`` and the dense container load it from there.

The ASGI app factory is ``endpoint.app.create_app``; the CLI is ``python -m endpoint``.
"""
