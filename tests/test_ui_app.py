"""The model page's FastAPI app in-process: AWS is moto, Airflow's runs are the recorded ones.

What a real Airflow adds (its auth manager, the mount in the api-server, the metadata database)
is covered by tests/test_ui_plugin.py and tests/test_ui_model_page.py.
"""

from __future__ import annotations

import io
import json
import os
import re
import time
from unittest import mock

import airflow_fixtures  # noqa: F401  (AIRFLOW_HOME and aws_default before Airflow)
import boto3
import pytest
from fastapi.testclient import TestClient
from moto import mock_aws
from PIL import Image
from test_ui_view_model import RECORDED, run_record

from dog_breed import gate, specs
from dog_breed.ui import airflow_reads
from dog_breed.ui import app as ui_app
from dog_breed.ui.aws_reads import TRAINING_LOG_GROUP, AwsReader

REGION = "us-east-1"
ENDPOINT = "dog-breed-classifier"
JOB = RECORDED["training_job"]["TrainingJobName"]
RESOURCE_ID = f"endpoint/{ENDPOINT}/variant/AllTraffic"
REPORT_URI = f"s3://dog-breed-pipeline/artifacts/profiler/{JOB}/rule-output/ProfilerReport/profiler-output/profiler-report.html"


def jpeg(width: int = 400, height: int = 300) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 40, 40)).save(buffer, format="JPEG")
    return buffer.getvalue()


def smoke_test_uris() -> list[str]:
    (deployed,) = [r for r in RECORDED["runs"] if "smoke_test" in r["returns"]]
    dataset = deployed["conf"]["dataset_s3_uri"]
    return [
        f"{dataset}/test/{p['expected']}/{p['image']}"
        for p in deployed["returns"]["smoke_test"]["predictions"]
    ]


@pytest.fixture
def aws():
    """moto with what a deployed run leaves: images, model, config, endpoint, scaling, training logs."""
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket="dog-breed-pipeline")
        for uri in smoke_test_uris():
            s3.put_object(Bucket="dog-breed-pipeline", Key=uri.split("/", 3)[3], Body=jpeg())
        sagemaker = boto3.client("sagemaker", region_name=REGION)
        variant = RECORDED["endpoint_config"]["ProductionVariants"][0]
        sagemaker.create_model(
            ModelName=variant["ModelName"],
            ExecutionRoleArn=RECORDED["model"]["ExecutionRoleArn"],
            PrimaryContainer=RECORDED["model"]["PrimaryContainer"],
        )
        sagemaker.create_endpoint_config(
            EndpointConfigName=RECORDED["endpoint"]["EndpointConfigName"],
            ProductionVariants=[
                {k: variant[k] for k in ("VariantName", "ModelName", "InitialInstanceCount", "InstanceType")}
            ],
            Tags=RECORDED["endpoint_config_tags"],
        )
        sagemaker.create_endpoint(
            EndpointName=ENDPOINT,
            EndpointConfigName=RECORDED["endpoint"]["EndpointConfigName"],
            Tags=RECORDED["endpoint_tags"],
        )
        scaling = boto3.client("application-autoscaling", region_name=REGION)
        scope = {
            "ServiceNamespace": "sagemaker",
            "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
        }
        scaling.register_scalable_target(ResourceId=RESOURCE_ID, MinCapacity=1, MaxCapacity=3, **scope)
        logs = boto3.client("logs", region_name=REGION)
        now_ms = int(time.time() * 1000)  # CloudWatch drops events older than 14 days
        logs.create_log_group(logGroupName=TRAINING_LOG_GROUP)
        logs.create_log_stream(logGroupName=TRAINING_LOG_GROUP, logStreamName=f"{JOB}/algo-1-1700000000")
        logs.put_log_events(
            logGroupName=TRAINING_LOG_GROUP,
            logStreamName=f"{JOB}/algo-1-1700000000",
            logEvents=[
                {"timestamp": now_ms + i, "message": line}
                for i, line in enumerate(RECORDED["training_log_lines"])
            ],
        )
        yield s3


def recorded_runs(dag_id: str, limit: int, run_id: str | None = None):
    runs = [run_record(run) for run in RECORDED["runs"] if run_id in (None, run["run_id"])]
    return runs[:limit]


@pytest.fixture
def client(aws, monkeypatch):
    monkeypatch.setattr(airflow_reads, "recent_runs", recorded_runs)
    # moto keeps no ProfilerConfig: the job is described as local_aws described it.
    monkeypatch.setattr(AwsReader, "training_job", lambda self, name: RECORDED["training_job"])
    ui_app.app.dependency_overrides[ui_app.authorized_reader] = lambda: None
    with TestClient(ui_app.app) as test_client:
        yield test_client
    ui_app.app.dependency_overrides.clear()


def chart(html: str, name: str) -> dict:
    found = re.search(rf'<script type="application/json" id="{name}">(.*?)</script>', html, re.S)
    assert found, f"no {name} on the page"
    return json.loads(found.group(1))


def test_the_page_shows_the_live_endpoint_the_runs_the_curves_and_the_smoke_test(client) -> None:
    response = client.get("/")
    assert response.status_code == 200, response.text
    html = response.text
    assert 'id="endpoint-status">InService<' in html
    assert RECORDED["endpoint"]["EndpointConfigName"] in html
    assert "1 to 3 instances" in html
    assert f"https://console.aws.amazon.com/sagemaker/home?region={REGION}#/endpoints/{ENDPOINT}" in html
    for run in RECORDED["runs"]:
        assert run["run_id"] in html
    (points, *_) = chart(html, "accuracy-chart-data")["data"]
    assert len(points["y"]) == 1
    curves = {trace["name"] for trace in chart(html, "curves-chart-data")["data"]}
    assert curves == {"train:loss", "valid:loss", "valid:accuracy"}
    assert html.count("/dog-breed/smoke-test/thumbnail.jpg?run_id=") == len(smoke_test_uris())
    assert "No report yet at" in html and "profiler-report.html" in html
    assert "No blue/green deployment on this endpoint yet" in html
    assert 'id="problems"' not in html


def test_the_api_returns_the_same_view_model_as_json(client) -> None:
    page = client.get("/api/model-page", params={"runs": 5}).json()
    endpoint_tags = specs.tags_as_dict(RECORDED["endpoint_tags"])
    assert page["endpoint"]["status"] == "InService"
    assert page["endpoint"]["training_job"] == JOB
    assert page["endpoint"]["test_accuracy"] == pytest.approx(float(endpoint_tags[gate.TAG_TEST_ACCURACY]))
    assert page["endpoint"]["scaling"]["max_capacity"] == 3
    assert page["endpoint_choices"] == [ENDPOINT]
    newest_first = sorted(RECORDED["runs"], key=lambda r: r["start_date"], reverse=True)
    assert [r["run_id"] for r in page["runs"]] == [r["run_id"] for r in newest_first]
    assert page["curves"]["training_job"] == JOB and page["curves"]["epochs"] == [1, 2]
    assert page["profiler"]["report_uri"] == REPORT_URI and page["profiler"]["available"] is False
    assert page["problems"] == []


def test_a_page_for_an_endpoint_that_does_not_exist_still_shows_the_runs(client) -> None:
    response = client.get("/", params={"endpoint": "another-endpoint"})
    assert response.status_code == 200
    assert "does not exist (yet)" in response.text
    assert RECORDED["runs"][0]["run_id"] in response.text


def test_when_aws_cannot_be_reached_the_page_says_so_and_shows_airflows_side(client) -> None:
    unreachable = json.dumps(
        {"conn_type": "aws", "login": "x", "password": "x", "extra": {"endpoint_url": "http://127.0.0.1:9"}}
    )
    with mock.patch.dict(os.environ, {"AIRFLOW_CONN_AWS_DEFAULT": unreachable}):
        response = client.get("/")
    assert response.status_code == 200
    assert 'id="problems"' in response.text and "could not read" in response.text
    assert RECORDED["runs"][0]["run_id"] in response.text


@pytest.mark.parametrize(
    "params", [{"runs": 0}, {"runs": 101}, {"endpoint": "not an endpoint"}, {"training_job": "a/b"}]
)
def test_bad_page_parameters_are_a_4xx_with_a_message(client, params) -> None:
    response = client.get("/api/model-page", params=params)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][-1] in params


def test_a_thumbnail_is_a_small_jpeg_of_the_image_the_smoke_test_sent(client) -> None:
    (deployed,) = [r for r in RECORDED["runs"] if "smoke_test" in r["returns"]]
    response = client.get("/smoke-test/thumbnail.jpg", params={"run_id": deployed["run_id"], "index": 0})
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/jpeg"
    with Image.open(io.BytesIO(response.content)) as image:
        assert max(image.size) == ui_app.THUMBNAIL_PX and image.format == "JPEG"


def test_thumbnail_requests_that_name_nothing_are_404s_and_a_broken_image_a_502(client, aws) -> None:
    (deployed,) = [r for r in RECORDED["runs"] if "smoke_test" in r["returns"]]
    run_id = deployed["run_id"]
    assert client.get("/smoke-test/thumbnail.jpg", params={"run_id": "nope", "index": 0}).status_code == 404
    assert client.get("/smoke-test/thumbnail.jpg", params={"run_id": run_id, "index": 99}).status_code == 404
    first, second = smoke_test_uris()[:2]
    aws.delete_object(Bucket="dog-breed-pipeline", Key=first.split("/", 3)[3])
    missing = client.get("/smoke-test/thumbnail.jpg", params={"run_id": run_id, "index": 0})
    assert missing.status_code == 404 and "not in S3" in missing.json()["detail"]
    aws.put_object(Bucket="dog-breed-pipeline", Key=second.split("/", 3)[3], Body=b"not a jpeg")
    broken = client.get("/smoke-test/thumbnail.jpg", params={"run_id": run_id, "index": 1})
    assert broken.status_code == 502 and "not an image" in broken.json()["detail"]
    assert client.get("/smoke-test/thumbnail.jpg", params={"run_id": run_id}).status_code == 422


def test_the_profiler_report_is_served_sandboxed_once_it_exists(client, aws) -> None:
    missing = client.get("/profiler-report", params={"training_job": JOB})
    assert missing.status_code == 404 and "No profiler report yet" in missing.text
    aws.put_object(
        Bucket="dog-breed-pipeline",
        Key=REPORT_URI.split("/", 3)[3],
        Body=b"<html><h1>ProfilerReport</h1></html>",
    )
    found = client.get("/profiler-report", params={"training_job": JOB})
    assert found.status_code == 200 and "<h1>ProfilerReport</h1>" in found.text
    assert found.headers["content-security-policy"].startswith("sandbox")
    assert client.get("/api/model-page").json()["profiler"]["available"] is True
    assert client.get("/profiler-report", params={"training_job": "bad_name"}).status_code == 422


def test_resource_descriptions_are_the_describe_answers(client) -> None:
    model = RECORDED["endpoint_config"]["ProductionVariants"][0]["ModelName"]
    page = client.get(f"/aws/sagemaker/model/{model}")
    assert page.status_code == 200 and "SageMaker model " + model in page.text
    described = client.get(f"/aws/sagemaker/model/{model}", params={"format": "json"}).json()
    assert described["ModelName"] == model and "ResponseMetadata" not in described
    scaling = client.get(
        f"/aws/application-autoscaling/scalable-target/{RESOURCE_ID}", params={"format": "json"}
    )
    assert scaling.json()["ScalableTargets"][0]["MaxCapacity"] == 3


@pytest.mark.parametrize(
    ("path", "status", "says"),
    [
        ("/aws/sagemaker/model/no-such-model", 404, "not found"),
        ("/aws/sagemaker/model/not_a_name!", 400, "is not a valid SageMaker model name"),
        ("/aws/sagemaker/notebook/x", 404, "no description page for sagemaker/notebook"),
        ("/aws/lambda/function/no-such-function", 404, "not found"),
        ("/aws/application-autoscaling/scalable-target/endpoint/x/variant/y", 404, "not found"),
        ("/aws/sagemaker/model/m?format=xml", 400, "format is html or json"),
    ],
)
def test_description_requests_for_nothing_are_4xx_with_a_message(client, path, status, says) -> None:
    response = client.get(path)
    assert response.status_code == status
    assert says in response.json()["detail"]


def test_plotly_js_comes_from_plotlys_package_and_nothing_else_is_served_from_static(client) -> None:
    from importlib.metadata import version

    script = client.get(f"/static/plotly-{version('plotly')}.min.js")
    assert script.status_code == 200 and "plotly.js" in script.text[:2000]
    assert "immutable" in script.headers["cache-control"]
    assert client.get("/static/plotly-0.0.1.min.js").status_code == 404
    assert client.get("/static/page.js").status_code == 200
    assert client.get("/static/../app.py").status_code == 404
    assert client.get("/static/app.py").status_code == 404
