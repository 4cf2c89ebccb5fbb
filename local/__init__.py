"""The whole system on 127.0.0.1 without Docker or AWS (``make up``): stand-ins for the AWS services, the stack
that runs them as child processes, and the demos that drive it.

- The stack: ``stack`` (composition root: plan, start, supervise, stop), ``template`` (``template.yaml`` read the
  way CloudFormation + SAM would), ``process`` (child processes, their supervisor) and ``ready`` (the ready files
  each child publishes).
- One module per AWS service, configured from ``template.yaml``, with no business logic: ``moto_services`` (S3
  with event notifications, SQS, DynamoDB), ``moto_transactions`` (DynamoDB transactions), ``journal`` (their
  durable state), ``http_api_events`` and ``http_api`` (API Gateway HTTP API), ``lambda_runtime`` and ``sandboxes``
  (Lambda's execution environments), ``dispatcher`` (asynchronous S3 invocations and SQS event source mappings),
  ``scheduler`` (EventBridge schedules), ``log_delivery`` (CloudWatch Logs subscription filter → Firehose → S3).
- Demos on a running stack: ``demo`` (``make demo``), ``demo_quality``, ``demo_rollout``.
"""
