"""Docker-free stand-ins for the AWS services the project runs on (S3/SQS/DynamoDB, API Gateway, Lambda).

Each module mirrors one service and holds no business logic; configuration comes from ``template.yaml``.
"""
