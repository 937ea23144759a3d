"""The whole DAG, offline: ``airflow dags test`` against local_aws with the tiny profile.

Two runs, as the schedule would make them: the first creates the endpoint, the
second (a retraining) updates it in place. Everything is checked through the
same AWS APIs one would use against the real services.
"""

from __future__ import annotations

import pytest

from local_aws import demo
from local_aws.sandbox import LocalAwsProcess, client, upload_directory

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1500)]

ENDPOINT = "dog-breed-classifier"


@pytest.fixture(scope="module")
def pipeline_runs(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("e2e")
    dataset = demo.prepare_dataset(workdir, "tiny")
    conf = demo.TINY_PROFILE
    with LocalAwsProcess(workdir / "local_aws") as aws:
        upload_directory(aws.url, dataset, conf["dataset_s3_uri"])
        summaries = []
        for _ in range(2):
            env = demo.run_pipeline(workdir, aws.url, conf, timeout=900)
            summaries.append(demo.summarize(aws.url, conf, env))
        yield aws.url, summaries


def test_first_run_succeeds_end_to_end(pipeline_runs):
    _, (first, _) = pipeline_runs
    assert first["run_state"] == "success", first["tasks"]
    assert set(first["tasks"].values()) == {"success"}, first["tasks"]


def test_tuning_found_a_best_trial(pipeline_runs):
    _, (first, _) = pipeline_runs
    tuning = first["tuning"]
    assert tuning["status"] == "Completed"
    assert tuning["trials"]["Completed"] == demo.TINY_PROFILE["tuning_max_jobs"]
    assert tuning["best_hyperparameters"]


def test_final_training_reports_test_accuracy(pipeline_runs):
    _, (first, _) = pipeline_runs
    training = first["training"]
    assert training["status"] == "Completed"
    assert 0.0 <= training["test_accuracy"] <= 1.0


def test_endpoint_serves_and_scales(pipeline_runs):
    _, (first, _) = pipeline_runs
    assert first["endpoint"]["status"] == "InService"
    (policy,) = first["autoscaling"]
    assert policy["metric"] == "SageMakerVariantInvocationsPerInstance"
    assert policy["scale_out_cooldown"] == 30 and policy["scale_in_cooldown"] == 120


def test_smoke_test_went_through_the_lambda(pipeline_runs):
    _, (first, _) = pipeline_runs
    smoke = first["smoke_test"]
    assert smoke, "smoke_test returned nothing"


def test_retraining_updates_the_endpoint_in_place(pipeline_runs):
    url, (first, second) = pipeline_runs
    assert second["run_state"] == "success", second["tasks"]
    assert second["endpoint"]["status"] == "InService"
    assert second["endpoint"]["config"] != first["endpoint"]["config"]
    endpoints = client("sagemaker", url).list_endpoints()["Endpoints"]
    assert [e["EndpointName"] for e in endpoints] == [ENDPOINT]
