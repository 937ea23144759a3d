"""The provider's SageMaker operators made rerun-safe, against moto (jobs complete at once)."""

from __future__ import annotations

import airflow_fixtures
import boto3
import pytest
from moto import mock_aws

from dog_breed import specs
from dog_breed.naming import RunNames
from dog_breed.operators.sagemaker_rerun import (
    IdempotentSageMakerEndpointConfigOperator,
    IdempotentSageMakerEndpointOperator,
    IdempotentSageMakerModelOperator,
    ResumableSageMakerTrainingOperator,
    ResumableSageMakerTuningOperator,
)
from dog_breed.params import PipelineSettings

REGION = airflow_fixtures.REGION
IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.6-cpu-py312"
SETTINGS = PipelineSettings.from_params({})
NAMES = RunNames.for_run("dog_breed_pipeline", "manual__2025-01-06T03:00:00+00:00")
COMMON = {"aws_conn_id": "aws_default", "region_name": REGION, "check_interval": 1, "deferrable": False}


def training_config(name: str = NAMES.training_job) -> dict:
    return specs.training_job_request(
        SETTINGS,
        training_job_name=name,
        training_image_uri=IMAGE,
        rule_image_uri=IMAGE,
        hyperparameters={"epochs": "1"},
        run_tags={},
    )


@pytest.fixture
def sagemaker():
    with mock_aws():
        client = boto3.client("sagemaker", region_name=REGION)
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket="dog-breed-pipeline")
        for split in ("train", "valid", "test"):  # the hook checks input prefixes exist
            s3.put_object(Bucket="dog-breed-pipeline", Key=f"dogImages/{split}/001.A/1.jpg", Body=b"x")
        boto3.client("iam", region_name=REGION).create_role(
            RoleName="DogBreedSageMakerExecution", AssumeRolePolicyDocument="{}"
        )
        yield client


def test_training_rerun_reuses_the_completed_job(sagemaker):
    first = ResumableSageMakerTrainingOperator(
        task_id="train", config=training_config(), print_log=False, **COMMON
    ).execute({})
    second = ResumableSageMakerTrainingOperator(
        task_id="train", config=training_config(), print_log=False, **COMMON
    ).execute({})
    assert first["Training"]["TrainingJobName"] == second["Training"]["TrainingJobName"] == NAMES.training_job
    names = [j["TrainingJobName"] for j in sagemaker.list_training_jobs()["TrainingJobSummaries"]]
    assert names == [NAMES.training_job]


def test_training_after_a_failed_job_starts_the_next_attempt(sagemaker, monkeypatch):
    from airflow.providers.amazon.aws.hooks.sagemaker import SageMakerHook

    real = SageMakerHook.describe_training_job

    def describe(self, name):
        description = real(self, name)
        if name == NAMES.training_job:
            description["TrainingJobStatus"] = "Failed"
        return description

    ResumableSageMakerTrainingOperator(
        task_id="t", config=training_config(), print_log=False, **COMMON
    ).execute({})
    monkeypatch.setattr(SageMakerHook, "describe_training_job", describe)
    retry = ResumableSageMakerTrainingOperator(
        task_id="t", config=training_config(), print_log=False, **COMMON
    )
    assert retry.execute({})["Training"]["TrainingJobName"] == f"{NAMES.training_job}-2"


def test_training_rerun_waits_for_a_running_job_instead_of_starting_another(sagemaker, monkeypatch):
    from airflow.providers.amazon.aws.hooks.sagemaker import SageMakerHook

    ResumableSageMakerTrainingOperator(
        task_id="t", config=training_config(), print_log=False, **COMMON
    ).execute({})
    real = SageMakerHook.describe_training_job
    statuses = iter(["InProgress"])
    monkeypatch.setattr(
        SageMakerHook,
        "describe_training_job",
        lambda self, name: {**real(self, name), "TrainingJobStatus": next(statuses, "Completed")},
    )
    waited = []
    monkeypatch.setattr(
        SageMakerHook, "check_training_status_with_log", lambda self, name, *a, **k: waited.append(name)
    )
    op = ResumableSageMakerTrainingOperator(task_id="t", config=training_config(), print_log=False, **COMMON)
    assert op.execute({})["Training"]["TrainingJobName"] == NAMES.training_job
    assert waited == [NAMES.training_job]
    assert len(sagemaker.list_training_jobs()["TrainingJobSummaries"]) == 1


def test_deferrable_rerun_hands_a_running_job_to_the_triggerer(sagemaker, monkeypatch):
    from airflow.providers.amazon.aws.hooks.sagemaker import SageMakerHook
    from airflow.providers.amazon.aws.triggers.sagemaker import SageMakerTrigger
    from airflow.sdk.exceptions import TaskDeferred

    ResumableSageMakerTrainingOperator(
        task_id="t", config=training_config(), print_log=False, **COMMON
    ).execute({})
    real = SageMakerHook.describe_training_job
    monkeypatch.setattr(
        SageMakerHook,
        "describe_training_job",
        lambda self, name: {**real(self, name), "TrainingJobStatus": "InProgress"},
    )
    op = ResumableSageMakerTrainingOperator(
        task_id="t",
        config=training_config(),
        print_log=False,
        max_attempts=7,
        max_ingestion_time=70,
        **{**COMMON, "deferrable": True},
    )
    with pytest.raises(TaskDeferred) as deferred:
        op.execute({})
    trigger = deferred.value.trigger
    assert isinstance(trigger, SageMakerTrigger)
    assert (trigger.job_name, trigger.job_type, trigger.attempts) == (NAMES.training_job, "Training", 7)
    assert deferred.value.timeout.total_seconds() == 70
    assert len(sagemaker.list_training_jobs()["TrainingJobSummaries"]) == 1


def test_tuning_rerun_reuses_the_job_instead_of_failing(sagemaker):
    config = specs.tuning_job_request(
        SETTINGS,
        tuning_job_name=NAMES.tuning_job,
        training_image_uri=IMAGE,
        submit_dir="s3://b/c.tar.gz",
        run_tags={},
    )
    for _ in range(2):
        result = ResumableSageMakerTuningOperator(task_id="tune", config=dict(config), **COMMON).execute({})
        assert result["Tuning"]["HyperParameterTuningJobName"] == NAMES.tuning_job
    jobs = sagemaker.list_hyper_parameter_tuning_jobs()["HyperParameterTuningJobSummaries"]
    assert [j["HyperParameterTuningJobName"] for j in jobs] == [NAMES.tuning_job]


def test_model_endpoint_config_and_endpoint_are_created_once(sagemaker):
    sagemaker.create_model_package_group(ModelPackageGroupName="g")
    package = sagemaker.create_model_package(
        ModelPackageGroupName="g",
        InferenceSpecification={
            "Containers": [{"Image": IMAGE, "ModelDataUrl": "s3://b/model.tar.gz"}],
            "SupportedContentTypes": ["image/jpeg"],
            "SupportedResponseMIMETypes": ["application/json"],
        },
        ModelApprovalStatus="Approved",
    )["ModelPackageArn"]
    model = specs.model_request(SETTINGS, model_name="m-1", model_package_arn=package, run_tags={})
    config = specs.endpoint_config_request(
        SETTINGS, endpoint_config_name="c-1", model_name="m-1", run_tags={}
    )
    endpoint = specs.endpoint_request(SETTINGS, endpoint_config_name="c-1", run_tags={})
    aws = {"aws_conn_id": "aws_default", "region_name": REGION}
    for _ in range(2):
        IdempotentSageMakerModelOperator(task_id="m", config=dict(model), **aws).execute({})
        IdempotentSageMakerEndpointConfigOperator(task_id="c", config=dict(config), **aws).execute({})
        out = IdempotentSageMakerEndpointOperator(
            task_id="e", config=dict(endpoint), check_interval=1, deferrable=False, **aws
        ).execute({})
        assert out["Endpoint"]["EndpointConfigName"] == "c-1"
    assert [m["ModelName"] for m in sagemaker.list_models()["Models"]] == ["m-1"]
    assert [c["EndpointConfigName"] for c in sagemaker.list_endpoint_configs()["EndpointConfigs"]] == ["c-1"]
    assert [e["EndpointName"] for e in sagemaker.list_endpoints()["Endpoints"]] == [SETTINGS.endpoint_name]
