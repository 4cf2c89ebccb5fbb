"""The HTTP API's Lambda: validate houses, resolve the live model, call the multi-model endpoint."""
