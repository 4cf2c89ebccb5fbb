"""A local stand-in for a SageMaker multi-model endpoint, serving in one of two ways (docs/endpoint.md).

It speaks InvokeEndpoint's wire protocol (so boto3's ``sagemaker-runtime`` client works against it
unchanged) and downloads ``TargetModel`` from the configured S3 prefix into a bounded disk cache. No
business logic lives here: it knows nothing about houses, cities or the registry.

* **managed**: the scikit-learn image emulated in this process: the model is loaded with the
  configured ``inference.py`` hooks under the image's toolkit rules and kept in a measured, bounded LRU
  (``invocations``, ``store``, ``loader``, ``program``, ``toolkit``, ``codecs``);
* **dense**: the SageMaker side only, in front of the dense container's own process (``python -m
  container``), driven as SageMaker drives it (``sagemaker_side``, ``instance``, ``container_client``).

The serving code it runs is ``training/inference.py`` (``model_fn``, ``input_fn``, ``predict_fn``,
``output_fn``): SageMaker's ``SAGEMAKER_PROGRAM``, which must ship in ``sourcedir.tar.gz`` beside
``train.py``, hence its place; ``endpoint.config.DEFAULT_PROGRAM`` and the dense container load it from there.

Some modules are plumbing that other packages reuse: ``http`` (uvicorn on a bound socket: ``container``,
``testkit``), ``sockets`` (listening sockets: ``container``, ``local``, ``testkit``, ``bench``), ``lifetime``
(``container``, ``local``), ``bodies`` and ``memory`` (``container``). The container's image copies the
modules it imports (none imports boto3).

The ASGI app factory is ``endpoint.app.create_app``; the CLI is ``python -m endpoint``.
"""
