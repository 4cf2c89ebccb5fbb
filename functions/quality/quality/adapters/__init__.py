"""boto3-facing adapters of the quality function; each raises domain exceptions."""
