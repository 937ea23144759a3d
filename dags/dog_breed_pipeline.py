"""Tune, train, register and approve, deploy, autoscale, front with Lambda, smoke-test a dog-breed classifier.

Wiring only: the logic lives in the ``dog_breed`` plugin package. Every AWS call goes
through the ``aws_default`` connection; pointing its ``endpoint_url`` extra at
``local_aws`` runs the same DAG offline. Deferrable waits follow
``[operators] default_deferrable`` (the provider's own default).
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.configuration import conf
from airflow.sdk import Asset, AssetOrTimeSchedule, CronTriggerTimetable, Param, dag, task

from dog_breed import registry, tasks
from dog_breed.operators.approval import ModelVersionApprovalOperator
from dog_breed.operators.autoscaling import SageMakerEndpointAutoscalingOperator
from dog_breed.operators.lambda_deploy import LambdaDeployFunctionOperator
from dog_breed.operators.rollback_alarms import EndpointRollbackAlarmsOperator
from dog_breed.operators.sagemaker_rerun import (
    IdempotentSageMakerEndpointConfigOperator,
    IdempotentSageMakerEndpointOperator,
    IdempotentSageMakerModelOperator,
    IdempotentSageMakerRegisterModelVersionOperator,
    ResumableSageMakerTrainingOperator,
    ResumableSageMakerTuningOperator,
)
from dog_breed.operators.smoke_test import EndpointSmokeTestOperator
from dog_breed.params import AWS_CONN_ID, DEFAULT_DATASET_URI, PARAM_SPECS

DOG_IMAGES = Asset(DEFAULT_DATASET_URI)
HOUR = 3600
# How often waits poll SageMaker and how long a failed task waits to retry: real jobs take
# minutes to hours, local_aws runs take seconds; AIRFLOW__DOG_BREED__POLL_INTERVAL_SECONDS
# and AIRFLOW__DOG_BREED__RETRY_DELAY_SECONDS change them.
POLL_S = conf.getint("dog_breed", "poll_interval_seconds", fallback=60)
RETRY_DELAY_S = conf.getint("dog_breed", "retry_delay_seconds", fallback=120)
# Waits outlast SageMaker's own StoppingCondition (at most 24 h per job), so SageMaker decides.
TRAINING_WAIT_S = 26 * HOUR
TUNING_CHECK_INTERVAL_S = 3 * POLL_S  # the tuning trigger polls at most 480 times: 24 h at 180 s
ENDPOINT_WAIT_S = 2 * HOUR
ROLLBACK_WAIT_S = HOUR
LAMBDA_WAIT_S = 15 * 60  # function Active, provisioned concurrency Ready: minutes on AWS

aws = {"aws_conn_id": AWS_CONN_ID, "region_name": "{{ params.region }}"}
# The registry version this run deploys (the review's decision); a rollback marks it Rejected.
PACKAGE_ARN = "{{ ti.xcom_pull(task_ids='review')['package_arn'] }}"


@dag(
    dag_id="dog_breed_pipeline",
    description=__doc__.splitlines()[0],
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("0 3 * * 1", timezone="UTC"), assets=[DOG_IMAGES]
    ),
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(seconds=RETRY_DELAY_S), "owner": "mlops"},
    params={name: Param(**spec) for name, spec in PARAM_SPECS.items()},
    render_template_as_native_obj=True,
    tags=["sagemaker", "mlops", "dog-breed"],
    doc_md=__doc__,
)
def dog_breed_pipeline():
    dataset = task(tasks.check_dataset, task_id="check_dataset", inlets=[DOG_IMAGES])()
    source = task(tasks.package_source, task_id="package_source")()
    configs = task(tasks.build_configs, task_id="build_configs", multiple_outputs=True)(source)

    tune = ResumableSageMakerTuningOperator(
        task_id="tune",
        config=configs["tuning"],
        check_interval=TUNING_CHECK_INTERVAL_S,
        max_ingestion_time=480 * TUNING_CHECK_INTERVAL_S,
        **aws,
    )
    training_config = task(tasks.best_training_config, task_id="best_hyperparameters")(
        tune.output, configs["names"], configs["images"], configs["submit_dir"]
    )
    train = ResumableSageMakerTrainingOperator(
        task_id="train",
        config=training_config,
        check_interval=POLL_S,
        max_attempts=TRAINING_WAIT_S // POLL_S,
        max_ingestion_time=TRAINING_WAIT_S,
        **aws,
    )
    package = task(tasks.model_package_request, task_id="model_package_request", multiple_outputs=True)(
        train.output, tune.output, configs["images"]
    )
    register = IdempotentSageMakerRegisterModelVersionOperator(
        task_id="register_model",
        package_group_name="{{ params.model_package_group }}",
        package_group_desc=registry.GROUP_DESCRIPTION,
        image_uri=package["image_uri"],
        model_url=package["model_url"],
        package_desc=package["description"],
        extras=package["extras"],
        **aws,
    )
    decision = task(tasks.quality_gate, task_id="quality_gate")(train.output, register.output)
    review = ModelVersionApprovalOperator(
        task_id="review", gate=decision, approval_timeout_hours="{{ params.approval_timeout_hours }}", **aws
    )
    requests = task(tasks.deploy_configs, task_id="deploy_configs", multiple_outputs=True)(
        train.output, review.output
    )
    model = IdempotentSageMakerModelOperator(task_id="create_model", config=requests["model"], **aws)
    endpoint_config = IdempotentSageMakerEndpointConfigOperator(
        task_id="create_endpoint_config", config=requests["endpoint_config"], **aws
    )
    alarms = EndpointRollbackAlarmsOperator(
        task_id="rollback_alarms",
        endpoint_name="{{ params.endpoint_name }}",
        latency_p99_threshold_ms="{{ params.latency_p99_threshold_ms }}",
        four_xx_share_threshold="{{ params.four_xx_share_threshold }}",
        **aws,
    )
    rollout = task(tasks.prepare_endpoint_update, task_id="prepare_endpoint_update", multiple_outputs=True)(
        endpoint_config.output, alarms.output
    )
    endpoint = IdempotentSageMakerEndpointOperator(
        task_id="deploy_endpoint",
        config=requests["endpoint"],
        operation="create",  # falls back to update when the endpoint exists
        deployment_config=rollout["deployment_config"],  # blue/green with alarm rollback
        model_package_arn=PACKAGE_ARN,
        check_interval=POLL_S,
        max_ingestion_time=ENDPOINT_WAIT_S,
        **aws,
    )
    tagged = task(tasks.tag_endpoint, task_id="tag_endpoint")(endpoint.output)
    autoscale = SageMakerEndpointAutoscalingOperator(
        task_id="autoscale",
        endpoint_name="{{ params.endpoint_name }}",
        min_capacity="{{ params.autoscaling_min_capacity }}",
        max_capacity="{{ params.autoscaling_max_capacity }}",
        target_invocations_per_instance="{{ params.autoscaling_target_invocations }}",
        scale_in_cooldown="{{ params.scale_in_cooldown_s }}",
        scale_out_cooldown="{{ params.scale_out_cooldown_s }}",
        **aws,
    )
    deploy_lambda = LambdaDeployFunctionOperator(
        task_id="deploy_lambda",
        function_name="{{ params.lambda_function_name }}",
        endpoint_name="{{ params.endpoint_name }}",
        memory_size="{{ params.lambda_memory_mb }}",
        timeout="{{ params.lambda_timeout_s }}",
        provisioned_concurrency="{{ params.lambda_provisioned_concurrency }}",
        waiter_delay=POLL_S,
        waiter_max_attempts=LAMBDA_WAIT_S // POLL_S,
        **aws,
    )
    smoke_test = EndpointSmokeTestOperator(
        task_id="smoke_test",
        function_name="{{ params.lambda_function_name }}",
        qualifier=deploy_lambda.alias_name,
        dataset_s3_uri="{{ params.dataset_s3_uri }}",
        endpoint_name="{{ params.endpoint_name }}",
        image_count="{{ params.smoke_test_images }}",
        rollback_endpoint_config=rollout["previous_endpoint_config"],
        model_package_arn=PACKAGE_ARN,
        waiter_delay=POLL_S,
        waiter_max_attempts=ROLLBACK_WAIT_S // POLL_S,
        **aws,
    )

    dataset >> source
    model >> endpoint_config >> alarms
    tagged >> autoscale >> deploy_lambda >> smoke_test


dog_breed_pipeline()
