"""local_aws: an offline stand-in for the AWS services the dog-breed pipeline calls.

``python -m local_aws`` serves SageMaker (training, tuning, hosting), SageMaker Runtime
and Lambda itself, really training and really serving, and S3, IAM, STS, CloudWatch,
Logs and Application Auto Scaling through moto, on one loopback endpoint. Point boto3
(or the Airflow AWS connection's ``endpoint_url``) at it.

``protocol/`` speaks the wire from botocore's service models, ``services/<api>/`` holds one
package per AWS API, ``infra/`` the machinery they share, ``devtools/`` the demo and the
Airflow stack; README.md in this folder says where a new service, operation or helper goes.
"""
