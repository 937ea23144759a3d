"""The provider's SageMaker operators made rerun-safe, against moto (jobs complete at once)."""

from __future__ import annotations

import airflow_fixtures
import boto3
import pytest
from airflow.sdk.exceptions import AirflowFailException
from moto import mock_aws

from dog_breed import specs
from dog_breed.naming import RunNames
from dog_breed.operators.sagemaker_rerun import (
    EndpointRolledBack,
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


# -- deploying a model registry version, and its rollback -----------------------------------------
GATE_APPROVAL = "Approved by the quality gate: test accuracy 0.9100 >= threshold 0.5000 and no live model"
ROLLBACK_REASON = "Alarm dog-breed-classifier/rollback/AllTraffic/5xx-errors is in ALARM; rolled back."


def registered_version(sagemaker, status: str = "Approved", description: str = GATE_APPROVAL) -> str:
    """A version of the group, decided as the gate or a reviewer decides it."""
    sagemaker.create_model_package_group(ModelPackageGroupName="dog-breed-classifier")
    arn = sagemaker.create_model_package(
        ModelPackageGroupName="dog-breed-classifier",
        InferenceSpecification={
            "Containers": [{"Image": IMAGE, "ModelDataUrl": "s3://b/model.tar.gz"}],
            "SupportedContentTypes": ["image/jpeg"],
            "SupportedResponseMIMETypes": ["application/json"],
        },
        ModelApprovalStatus="PendingManualApproval",
    )["ModelPackageArn"]
    sagemaker.update_model_package(
        ModelPackageArn=arn, ModelApprovalStatus=status, ApprovalDescription=description
    )
    return arn


def test_model_endpoint_config_and_endpoint_are_created_once(sagemaker):
    package = registered_version(sagemaker)
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
            task_id="e", config=dict(endpoint), model_package_arn=package, check_interval=1,
            deferrable=False, **aws,
        ).execute({})  # fmt: skip
        assert out["Endpoint"]["EndpointConfigName"] == "c-1"
    assert [m["ModelName"] for m in sagemaker.list_models()["Models"]] == ["m-1"]
    assert [c["EndpointConfigName"] for c in sagemaker.list_endpoint_configs()["EndpointConfigs"]] == ["c-1"]
    assert [e["EndpointName"] for e in sagemaker.list_endpoints()["Endpoints"]] == [SETTINGS.endpoint_name]


def live_on(sagemaker, *configs: str) -> None:
    """The endpoint InService on the first of ``configs``; the others exist beside it."""
    sagemaker.create_model(
        ModelName="m-old",
        PrimaryContainer={"Image": IMAGE, "ModelDataUrl": "s3://b/model.tar.gz"},
        ExecutionRoleArn=SETTINGS.sagemaker_role_arn,
    )
    variant = {"VariantName": "AllTraffic", "ModelName": "m-old", "InitialInstanceCount": 1,
               "InstanceType": "ml.m5.large"}  # fmt: skip
    for config in configs:
        sagemaker.create_endpoint_config(EndpointConfigName=config, ProductionVariants=[variant])
    sagemaker.create_endpoint(EndpointName=SETTINGS.endpoint_name, EndpointConfigName=configs[0])


def deploy_operator(package_arn: str | None) -> IdempotentSageMakerEndpointOperator:
    config = {"EndpointName": SETTINGS.endpoint_name, "EndpointConfigName": "c-new", "Tags": []}
    return IdempotentSageMakerEndpointOperator(
        task_id="deploy_endpoint", config=config, model_package_arn=package_arn, check_interval=1,
        deferrable=False, aws_conn_id="aws_default", region_name=REGION,
    )  # fmt: skip


@pytest.fixture
def rolled_back(sagemaker, monkeypatch):
    """The endpoint after SageMaker rolled the update to c-new back: InService on c-old, with
    SageMaker's FailureReason (moto cannot update an endpoint; this plays SageMaker's part)."""
    from dog_breed.hooks import PipelineSageMakerHook

    live_on(sagemaker, "c-old", "c-new")
    real = PipelineSageMakerHook.describe_endpoint

    def describe(self, name):
        return {**real(self, name), "FailureReason": ROLLBACK_REASON}

    monkeypatch.setattr(PipelineSageMakerHook, "describe_endpoint", describe)
    return sagemaker


def test_a_rollback_marks_the_registry_version_rejected_with_why_and_fails_the_task(rolled_back):
    package = registered_version(rolled_back)
    operator = deploy_operator(package)
    with pytest.raises(EndpointRolledBack) as failed:
        # The deferred update's end: the trigger saw InService, the endpoint serves c-old.
        operator.execute_complete({}, {"status": "success", "job_name": SETTINGS.endpoint_name})
    assert ROLLBACK_REASON in str(failed.value) and "not on c-new" in str(failed.value)
    assert f"{package} is now Rejected" in str(failed.value)
    described = rolled_back.describe_model_package(ModelPackageName=package)
    assert described["ModelApprovalStatus"] == "Rejected"  # no longer a deployable candidate
    assert described["ApprovalDescription"] == (
        f"Rejected: rolled back from endpoint {SETTINGS.endpoint_name} by SageMaker's auto-rollback "
        f"(deployment guardrails): {ROLLBACK_REASON} (was: {GATE_APPROVAL})"
    )
    # A cleared task meets the Rejected version and deploys nothing (moto's UpdateEndpoint would
    # fail differently: it does not exist there).
    with pytest.raises(AirflowFailException, match=r"is Rejected: Rejected: rolled back .*only Approved"):
        deploy_operator(package).execute({})


def test_a_rollback_fails_with_its_reason_even_when_the_registry_cannot_be_written(rolled_back):
    missing = "arn:aws:sagemaker:us-east-1:123456789012:model-package/dog-breed-classifier/7"
    with pytest.raises(EndpointRolledBack, match="could NOT be marked Rejected") as failed:
        deploy_operator(missing).execute_complete(
            {}, {"status": "success", "job_name": SETTINGS.endpoint_name}
        )
    assert ROLLBACK_REASON in str(failed.value)


def test_without_a_registry_version_a_rollback_still_fails_with_the_reason(rolled_back):
    with pytest.raises(EndpointRolledBack, match=f"{ROLLBACK_REASON}$"):
        deploy_operator(None).execute_complete({}, {"status": "success", "job_name": SETTINGS.endpoint_name})


def test_a_version_that_is_not_approved_is_never_deployed(sagemaker):
    package = registered_version(sagemaker, status="PendingManualApproval", description="waiting")
    with pytest.raises(AirflowFailException, match="is PendingManualApproval: waiting; only Approved"):
        deploy_operator(package).execute({})
    assert sagemaker.list_endpoints()["Endpoints"] == []


def test_a_training_wait_describes_the_job_at_its_check_interval_not_every_30_s(monkeypatch):
    """The provider's hook, streaming a job's logs, describes it when 30 s have passed since the
    last DescribeTrainingJob; ours hands it the last call's time shifted so that happens every
    check_interval, and keeps its own clock unshifted."""
    from airflow.providers.amazon.aws.hooks.sagemaker import SageMakerHook

    from dog_breed.hooks import PipelineSageMakerHook

    clock = {"now": 0.0}
    described: list[float] = []

    def provider(self, job_name, positions, stream_names, instance_count, state, last_description, last_call):
        if clock["now"] - last_call >= 30:  # the provider's rule
            described.append(clock["now"])
            return state, {"at": clock["now"]}, clock["now"]
        return state, last_description, last_call

    monkeypatch.setattr(SageMakerHook, "describe_training_job_with_log", provider)
    hook = PipelineSageMakerHook(aws_conn_id=None)
    hook._describe_interval = 2.0  # what check_training_status_with_log sets from check_interval
    last_call, description = 0.0, {}
    for second in range(1, 11):
        clock["now"] = float(second)
        _, description, last_call = hook.describe_training_job_with_log(
            "job", {}, [], 1, 0, description, last_call
        )
    assert described == [2.0, 4.0, 6.0, 8.0, 10.0]
    assert (last_call, description) == (10.0, {"at": 10.0})
