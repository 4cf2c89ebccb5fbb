"""AWS adapters of the operator CLI: one per service, botocore failures translated to ``ops.errors``."""
