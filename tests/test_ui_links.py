"""Operator extra links: the AWS console page of what a task made, or offline its description.

The link classes are checked the way Airflow uses them: ``persist_for`` in the operator stores
an XCom, and the worker turns that XCom into the URL with ``format_link`` (what
``BaseAwsLink.get_link`` does with it). The DAG's tasks carry them and serialize them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import airflow_fixtures  # noqa: F401  (AIRFLOW_HOME and aws_default before Airflow)
import pytest

from dog_breed import links

ROOT = Path(__file__).resolve().parents[1]
TASK_LINKS = {
    "tune": "SageMaker tuning job",
    "train": "SageMaker training job",
    "create_model": "SageMaker model",
    "deploy_endpoint": "SageMaker endpoint",
    "autoscale": "Endpoint autoscaling",
    "deploy_lambda": "Lambda function",
}
LOCAL_CONNECTION = json.dumps(
    {
        "conn_type": "aws",
        "login": "local",
        "password": "local",
        "extra": {"endpoint_url": "http://127.0.0.1:4566", "region_name": "eu-west-1"},
    }
)


class RecordingTaskInstance:
    def __init__(self) -> None:
        self.pushed: dict[str, object] = {}

    def xcom_push(self, key: str, value: object) -> None:
        self.pushed[key] = value


def persisted(link: type[links.DogBreedAwsLink], name: str, aws_conn_id: str) -> dict:
    ti = RecordingTaskInstance()
    operator = SimpleNamespace(aws_conn_id=aws_conn_id, region_name=None, do_xcom_push=True)
    link.persist_for({"ti": ti}, operator, name)
    return ti.pushed[link.key]


@pytest.mark.parametrize(
    ("link", "name", "url"),
    [
        (
            links.SageMakerTuningJobLink,
            "dogbreed-hpo-1a2b",
            "https://console.aws.amazon.com/sagemaker/home?region=us-east-1#/hyper-tuning-jobs/dogbreed-hpo-1a2b",
        ),
        (
            links.SageMakerTrainingJobLink,
            "dog-breed-pipeline-train-1a2b",
            "https://console.aws.amazon.com/sagemaker/home?region=us-east-1#/jobs/dog-breed-pipeline-train-1a2b",
        ),
        (
            links.SageMakerModelLink,
            "m-1",
            "https://console.aws.amazon.com/sagemaker/home?region=us-east-1#/models/m-1",
        ),
        (
            links.SageMakerEndpointLink,
            "dog-breed-classifier",
            "https://console.aws.amazon.com/sagemaker/home?region=us-east-1#/endpoints/dog-breed-classifier",
        ),
        (
            links.EndpointAutoscalingLink,
            "endpoint/dog-breed-classifier/variant/AllTraffic",
            "https://console.aws.amazon.com/sagemaker/home?region=us-east-1#/endpoints/dog-breed-classifier",
        ),
        (
            links.LambdaFunctionLink,
            "dog-breed-classifier",
            "https://console.aws.amazon.com/lambda/home?region=us-east-1#/functions/dog-breed-classifier",
        ),
    ],
)
def test_on_aws_a_task_links_to_the_console_page_of_its_resource(link, name, url) -> None:
    stored = persisted(link, name, "aws_default")  # airflow_fixtures: no endpoint_url
    assert stored["region_name"] == "us-east-1"
    assert "description_path" not in stored
    assert link().format_link(**stored) == url


def test_the_console_domain_follows_the_partition() -> None:
    url = links.SageMakerTrainingJobLink.url_for(
        "job-1", region_name="cn-north-1", aws_partition="aws-cn", endpoint_url=None
    )
    assert url == "https://console.amazonaws.cn/sagemaker/home?region=cn-north-1#/jobs/job-1"


def test_offline_a_task_links_to_its_resource_description_on_the_model_page() -> None:
    with mock.patch.dict(os.environ, {"AIRFLOW_CONN_AWS_LOCAL": LOCAL_CONNECTION}):
        stored = persisted(links.SageMakerTrainingJobLink, "dog-breed-pipeline-train-1a2b", "aws_local")
        scaling = persisted(
            links.EndpointAutoscalingLink, "endpoint/dog-breed-classifier/variant/AllTraffic", "aws_local"
        )
    assert stored["region_name"] == "eu-west-1", "the region comes from the connection"
    assert (
        links.SageMakerTrainingJobLink().format_link(**stored)
        == "/dog-breed/aws/sagemaker/training-job/dog-breed-pipeline-train-1a2b"
    )
    assert (
        links.EndpointAutoscalingLink().format_link(**scaling)
        == "/dog-breed/aws/application-autoscaling/scalable-target/"
        "endpoint/dog-breed-classifier/variant/AllTraffic"
    )


def test_offline_links_keep_the_ui_base_path() -> None:
    with mock.patch.dict(os.environ, {"AIRFLOW__API__BASE_URL": "https://airflow.example.com/team-a/"}):
        assert links.ui_base_path() == "/team-a"
    assert (
        links.description_path("sagemaker", "model", "m 1", base_path="/team-a")
        == "/team-a/dog-breed/aws/sagemaker/model/m%201"
    )


def test_a_link_that_cannot_be_recorded_never_fails_the_task() -> None:
    operator = SimpleNamespace(aws_conn_id="aws_default", region_name=None, do_xcom_push=True)
    links.SageMakerModelLink.persist_for({}, operator, "m-1")  # no task instance in the context
    broken = SimpleNamespace(aws_conn_id="aws_default", region_name="not a region!", do_xcom_push=True)
    ti = RecordingTaskInstance()
    links.SageMakerModelLink.persist_for({"ti": ti}, broken, "m-1")
    assert ti.pushed == {}


@pytest.fixture(scope="module")
def dag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(ROOT / "dags")).dags["dog_breed_pipeline"]


def test_each_resource_making_task_has_its_link_and_keeps_it_when_serialized(dag) -> None:
    from airflow.serialization.serialized_objects import DagSerialization

    serialized = {
        task["__var"]["task_id"]: task["__var"] for task in DagSerialization.to_dict(dag)["dag"]["tasks"]
    }
    for task_id, name in TASK_LINKS.items():
        assert [link.name for link in dag.task_dict[task_id].operator_extra_links] == [name], task_id
        # What the api-server reads back: link name -> the XCom key the worker fills with the URL
        assert serialized[task_id]["_operator_extra_links"] == {
            name: f"_link_{type(dag.task_dict[task_id].operator_extra_links[0]).__name__}"
        }
