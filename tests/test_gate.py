"""Champion/challenger gate: a pure decision, tag round trips, and the task's skip."""

from __future__ import annotations

import airflow_fixtures  # noqa: F401
import boto3
import pytest
from moto import mock_aws

from dog_breed import gate


@pytest.mark.parametrize(
    ("challenger", "threshold", "champion", "deploy"),
    [
        (0.80, 0.70, None, True),
        (0.60, 0.70, None, False),
        (0.80, 0.70, 0.85, False),
        (0.85, 0.70, 0.85, True),  # equal: a rerun after its own deploy passes
        (0.90, 0.70, 0.85, True),
        (0.70, 0.70, 0.10, True),
    ],
)
def test_decide(challenger, threshold, champion, deploy):
    decision = gate.decide(challenger, threshold, champion)
    assert decision.deploy is deploy
    assert f"{challenger:.4f}" in decision.reason


@pytest.mark.parametrize(
    ("challenger", "champion", "tolerance", "deploy"),
    [
        (0.82, 0.85, 0.05, True),  # within the tolerance
        (0.79, 0.85, 0.05, False),  # beyond it
        (0.82, 0.85, 0.0, False),  # no tolerance: strictly not worse
    ],
)
def test_decide_with_tolerance_for_the_champion(challenger, champion, tolerance, deploy):
    decision = gate.decide(challenger, 0.5, champion, tolerance=tolerance)
    assert decision.deploy is deploy
    if not deploy:
        assert f"{champion:.4f}" in decision.reason


def test_final_metric_reads_test_accuracy_or_says_what_is_missing():
    job = {"TrainingJobName": "j", "FinalMetricDataList": [{"MetricName": "test:accuracy", "Value": 0.5}]}
    assert gate.final_metric(job) == 0.5
    with pytest.raises(ValueError, match="test:accuracy"):
        gate.final_metric({"TrainingJobName": "j", "FinalMetricDataList": []})


def test_champion_accuracy_from_tags():
    tags = gate.champion_tags(test_accuracy=0.8123456, model_name="m", training_job="t", dag_run="r")
    assert gate.champion_accuracy(tags) == pytest.approx(0.812346)
    assert gate.champion_accuracy({}) is None
    assert gate.champion_accuracy({gate.TAG_TEST_ACCURACY: "n/a"}) is None


@mock_aws
def test_quality_gate_task_skips_when_worse_than_the_live_model():
    from airflow.sdk.exceptions import AirflowSkipException

    from dog_breed.tasks import quality_gate

    sm = boto3.client("sagemaker", region_name="us-east-1")
    sm.create_model(
        ModelName="m", ExecutionRoleArn="arn:aws:iam::123456789012:role/r", PrimaryContainer={"Image": "i"}
    )
    sm.create_endpoint_config(
        EndpointConfigName="c",
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": "m",
                "InitialInstanceCount": 1,
                "InstanceType": "ml.m5.large",
            }
        ],
    )
    arn = sm.create_endpoint(EndpointName="ep", EndpointConfigName="c")["EndpointArn"]
    sm.add_tags(ResourceArn=arn, Tags=[{"Key": gate.TAG_TEST_ACCURACY, "Value": "0.9"}])
    training = {
        "Training": {
            "TrainingJobName": "j",
            "FinalMetricDataList": [{"MetricName": "test:accuracy", "Value": 0.8}],
        }
    }
    params = {"endpoint_name": "ep", "accuracy_threshold": 0.5}
    with pytest.raises(AirflowSkipException, match="live model"):
        quality_gate(training, params=params)
    training["Training"]["FinalMetricDataList"][0]["Value"] = 0.95
    assert quality_gate(training, params=params)["deploy"] is True
