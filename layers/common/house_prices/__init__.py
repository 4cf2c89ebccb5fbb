"""The common Lambda layer: what every function shares (ops, local/ and training import it too).

No numpy or scikit-learn here: the router imports this package, and its package ships neither.
One concept per module (docs/architecture.md, "Module map", is the reference):

* the API's contract: ``schema`` (features, validation, CSV rows), ``http_api`` (the route table), ``openapi``
  (the document built from them), ``feedback_api`` (the OpenAPI pieces of ``POST /feedback`` and of live quality),
  ``errors``;
* names and files: ``naming`` (city rule, S3 key layout, versions, TargetModel), ``archives`` (reproducible
  ``.tar.gz``), ``artifacts`` (inspection of a ``model.tar.gz``);
* the model registry: ``registry`` (DynamoDB: live item, versions, rollouts and their history);
* predictions: ``predictions`` (the InvokeEndpoint body and answer), ``ids`` (prediction ids), ``captures``
  (the capture line and its reader);
* live quality and rollouts: ``labels``, ``live_quality``, ``drift``, ``rollout_bucket``, ``rollout_evidence``,
  ``rollout_stats``;
* running: ``settings`` (the one reader of the environment), ``observability`` (logger, tracer, metrics),
  ``tracing`` (X-Ray without its SDK).
"""
