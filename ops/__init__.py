"""The operator's CLI, ``python -m ops`` (``cli``): the model registry (list, promote / roll back, publish, sync),
model-sync's failed events (``failures``, ``failure_records``), status and alarms (``status``), live quality
(``quality``), progressive delivery (``rollouts``), and before and around a deploy: sizing and cost (``plan``),
account checks (``preflight``, over the AWS ``adapters``), samconfig and stack outputs (``deployment``, ``stack``)
and the SageMaker image table (``images``). ``config`` finds the resources, ``tables`` prints for people."""
