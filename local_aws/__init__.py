"""local_aws: an offline stand-in for the AWS services the dog-breed pipeline calls.

``python -m local_aws`` serves SageMaker (training, tuning, hosting, runtime) and
Lambda itself, really training and really serving, and S3, IAM, STS,
CloudWatch, Logs and Application Auto Scaling through moto, on one loopback
endpoint. Point boto3 (or the Airflow AWS connection's ``endpoint_url``) at it.
"""
