"""boto3-facing adapters of the rollouts function; each raises domain exceptions."""
