"""Environment for tests that import Airflow or run operators against moto.

Import this module before Airflow: it points AIRFLOW_HOME at a temporary directory,
defines the ``aws_default`` connection through the environment (fake credentials, no
endpoint_url, so moto's in-process mock answers) and keeps boto3 off real AWS.
"""

from __future__ import annotations

import json
import os
import tempfile

os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="airflow-home-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "True")
for _key, _value in {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}.items():
    os.environ[_key] = _value
os.environ["AIRFLOW_CONN_AWS_DEFAULT"] = json.dumps(
    {"conn_type": "aws", "login": "testing", "password": "testing", "extra": {"region_name": "us-east-1"}}
)

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account


def minimal_context() -> dict:
    """What our operators read from the context: nothing. Kept explicit so a test says so."""
    return {}


# Operator arguments that AwsBaseOperator must hand to every client an operator makes.
CLIENT_SETTINGS = {
    "verify": False,
    "botocore_config": {"read_timeout": 123, "retries": {"total_max_attempts": 7}},
}


def assert_client_settings_reached(client, service: str, region: str = REGION) -> None:
    """``client`` is a ``service`` client built with CLIENT_SETTINGS and the operator's region
    (IAM's clients are global: ``aws-global``)."""
    assert client.meta.service_model.service_name == service
    assert client.meta.region_name == region
    assert client.meta.config.read_timeout == 123
    assert client.meta.config.retries["total_max_attempts"] == 7
    assert client._endpoint.http_session._verify is False
