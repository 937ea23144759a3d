"""Every request the builders make is valid against botocore's service models."""

from __future__ import annotations

import json
from dataclasses import replace

import botocore.session
import pytest
from botocore.validate import ParamValidator

from dog_breed import registry, specs
from dog_breed.metrics import METRIC_DEFINITIONS, TUNING_OBJECTIVE
from dog_breed.operators.lambda_deploy import desired_configuration
from dog_breed.params import PipelineSettings

SESSION = botocore.session.get_session()
IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.6-cpu-py312"
RULES = "503895931360.dkr.ecr.us-east-1.amazonaws.com/sagemaker-debugger-rules:latest"
SUBMIT = "s3://bucket/artifacts/code/0123456789abcdef/sourcedir.tar.gz"
TAGS = {"project": "dog-breed-pipeline"}


def assert_valid(service: str, operation: str, request: dict) -> None:
    shape = SESSION.get_service_model(service).operation_model(operation).input_shape
    report = ParamValidator().validate(request, shape)
    assert not report.has_errors(), report.generate_report()


def test_the_validator_rejects_a_broken_request():
    shape = SESSION.get_service_model("sagemaker").operation_model("CreateModel").input_shape
    assert ParamValidator().validate({"ModelName": 3}, shape).has_errors()


@pytest.mark.parametrize("strategy", ["Bayesian", "Random", "Grid", "Hyperband"])
def test_tuning_request_is_valid_for_every_strategy(strategy):
    settings = replace(PipelineSettings.from_params({}), tuning_strategy=strategy)
    request = specs.tuning_job_request(
        settings,
        tuning_job_name="dogbreed-hpo-1234abcd",
        training_image_uri=IMAGE,
        submit_dir=SUBMIT,
        run_tags=TAGS,
    )
    assert_valid("sagemaker", "CreateHyperParameterTuningJob", request)
    job_config = request["HyperParameterTuningJobConfig"]
    assert job_config["Strategy"] == strategy
    if strategy == "Grid":
        assert "ContinuousParameterRanges" not in job_config["ParameterRanges"]
        assert "MaxNumberOfTrainingJobs" not in job_config["ResourceLimits"]
    if strategy != "Hyperband":
        assert job_config["HyperParameterTuningJobObjective"] == TUNING_OBJECTIVE


def test_tuning_uses_the_shared_metric_definitions_and_sdk_style_hyperparameters():
    settings = PipelineSettings.from_params({"epochs": 7, "tuning_epochs": 2})
    request = specs.tuning_job_request(
        settings, tuning_job_name="t", training_image_uri=IMAGE, submit_dir=SUBMIT, run_tags=TAGS
    )
    definition = request["TrainingJobDefinition"]
    assert definition["AlgorithmSpecification"]["MetricDefinitions"] == METRIC_DEFINITIONS
    static = definition["StaticHyperParameters"]
    assert json.loads(static["sagemaker_program"]) == "train.py"
    assert json.loads(static["sagemaker_submit_directory"]) == SUBMIT
    assert json.loads(static["epochs"]) == 2
    assert json.loads(static["export-onnx"]) is False  # a trial's model is never served
    assert definition["OutputDataConfig"]["CompressionType"] == "NONE"  # ... so it is not packed either
    assert all(isinstance(v, str) for v in static.values())
    ranges = request["HyperParameterTuningJobConfig"]["ParameterRanges"]
    assert {r["Name"] for r in ranges["ContinuousParameterRanges"]} == {"lr", "weight-decay"}
    assert ranges["CategoricalParameterRanges"][0] == {"Name": "batch-size", "Values": ["32", "64"]}
    channels = [c["DataSource"]["S3DataSource"]["S3Uri"] for c in definition["InputDataConfig"]]
    assert channels == [f"{settings.dataset_s3_uri}/{s}/" for s in ("train", "valid", "test")]


@pytest.mark.parametrize("tensor_rules", [False, True])
@pytest.mark.parametrize("instances", [1, 4])
def test_training_request_is_valid_with_debugger_profiler_and_checkpoints(tensor_rules, instances):
    settings = PipelineSettings.from_params(
        {"debugger_tensor_rules": tensor_rules, "training_instance_count": instances}
    )
    static = specs.static_hyperparameters(settings, SUBMIT, settings.epochs, serving_export=True)
    hyperparameters = specs.training_hyperparameters(
        static, {"lr": "0.001", "batch-size": "32"}, settings.epochs
    )
    request = specs.training_job_request(
        settings,
        training_job_name="dog-breed-pipeline-train-1234abcd",
        training_image_uri=IMAGE,
        rule_image_uri=RULES,
        hyperparameters=hyperparameters,
        run_tags=TAGS,
    )
    assert_valid("sagemaker", "CreateTrainingJob", request)
    assert request["ResourceConfig"]["InstanceCount"] == instances
    assert request["HyperParameters"]["lr"] == "0.001"
    assert json.loads(request["HyperParameters"]["export-onnx"]) is True  # the served model gets int8
    # CreateModel's ModelDataUrl takes the model.tar.gz that the default (GZIP) output makes.
    assert "CompressionType" not in request["OutputDataConfig"]
    assert request["CheckpointConfig"]["S3Uri"].endswith("/checkpoints/dog-breed-pipeline-train-1234abcd/")
    assert [r["RuleConfigurationName"] for r in request["ProfilerRuleConfigurations"]] == ["ProfilerReport"]
    if tensor_rules:
        assert {r["RuleConfigurationName"] for r in request["DebugRuleConfigurations"]} == set(
            specs.TENSOR_RULES
        )
        assert "DebugHookConfig" in request
    else:
        assert "DebugRuleConfigurations" not in request and "DebugHookConfig" not in request


PACKAGE_ARN = "arn:aws:sagemaker:us-east-1:123456789012:model-package/dog-breed-classifier/3"


def test_hosting_requests_are_valid():
    settings = PipelineSettings.from_params({})
    model = specs.model_request(settings, model_name="m", model_package_arn=PACKAGE_ARN, run_tags=TAGS)
    assert_valid("sagemaker", "CreateModel", model)
    assert model["PrimaryContainer"] == {"ModelPackageName": PACKAGE_ARN}, (
        "the container comes from the package"
    )
    config = specs.endpoint_config_request(settings, endpoint_config_name="c", model_name="m", run_tags=TAGS)
    assert_valid("sagemaker", "CreateEndpointConfig", config)
    assert config["ProductionVariants"][0]["InstanceType"] == "ml.m5.large"
    endpoint = specs.endpoint_request(settings, endpoint_config_name="c", run_tags=TAGS)
    assert_valid("sagemaker", "CreateEndpoint", endpoint)
    update = {k: v for k, v in endpoint.items() if k != "Tags"}
    assert_valid("sagemaker", "UpdateEndpoint", update)


def test_a_model_version_is_registered_with_what_serves_it_its_report_and_its_provenance():
    settings = PipelineSettings.from_params({"endpoint_instance_type": "ml.c5.2xlarge"})
    metadata = registry.customer_metadata(
        training_job="dog-breed-pipeline-train-1234abcd",
        tuning_job="dogbreed-hpo-1234abcd",
        dag_id="dog_breed_pipeline",
        dag_run_id="manual__2025-01-06T03:00:00.123456+00:00",
        dataset_s3_uri=settings.dataset_s3_uri,
        test_accuracy=0.8123,
        test_loss=0.61,
    )
    extras = specs.model_package_extras(
        settings,
        inference_image_uri=IMAGE,
        model_data_url="s3://b/artifacts/output/job/output/model.tar.gz",
        report_uri="s3://b/artifacts/output/job/output/model-quality.json",
        report_digest=registry.content_digest(b"{}"),
        metadata=metadata,
    )
    request = {  # what the provider's register operator sends, extras on top
        "ModelPackageGroupName": settings.model_package_group,
        "ModelPackageDescription": "d",
        "ModelApprovalStatus": "PendingManualApproval",
        **extras,
    }
    assert_valid("sagemaker", "CreateModelPackage", request)
    specification = extras["InferenceSpecification"]
    (container,) = specification["Containers"]
    assert container["Environment"] == specs.serving_environment(settings)
    assert container["Environment"]["SAGEMAKER_PROGRAM"] == "inference.py"
    assert specification["SupportedContentTypes"] == ["image/jpeg", "image/png"]
    assert specification["SupportedResponseMIMETypes"] == ["application/json"]
    assert {"ml.m5.large", "ml.c5.2xlarge"} <= set(specification["SupportedRealtimeInferenceInstanceTypes"])
    statistics = extras["ModelMetrics"]["ModelQuality"]["Statistics"]
    assert statistics["S3Uri"].endswith("/output/model-quality.json")
    assert statistics["ContentType"] == "application/json"
    assert extras["CustomerMetadataProperties"]["TrainingJobName"] == "dog-breed-pipeline-train-1234abcd"
    assert extras["CustomerMetadataProperties"]["TestAccuracy"] == "0.812300"


def test_autoscaling_and_lambda_requests_are_valid():
    resource = specs.variant_resource_id("dog-breed-classifier")
    assert resource == "endpoint/dog-breed-classifier/variant/AllTraffic"
    target = specs.register_target_request(resource, 1, 3)
    assert_valid("application-autoscaling", "RegisterScalableTarget", target)
    policy = specs.scaling_policy_request(resource, "p", 10, 120, 30)
    assert_valid("application-autoscaling", "PutScalingPolicy", policy)
    config = desired_configuration(
        function_name="f",
        role_arn="arn:aws:iam::123456789012:role/r",
        endpoint_name="e",
        memory_size=512,
        timeout=60,
    )
    assert_valid("lambda", "UpdateFunctionConfiguration", config)
    assert_valid("lambda", "CreateFunction", {**config, "Code": {"ZipFile": b"zip"}, "PackageType": "Zip"})


def test_training_hyperparameters_take_the_tuned_values_and_the_final_epochs():
    static = specs.encode_hyperparameters({"epochs": 2, "lr": 0.1, "sagemaker_program": "train.py"})
    merged = specs.training_hyperparameters(static, {"lr": "0.003"}, 9)
    assert merged == {"epochs": "9", "lr": "0.003", "sagemaker_program": '"train.py"'}


def test_tags_go_to_aws_sorted_and_come_back_as_they_were():
    values = {"b": "2", "a": "1"}
    assert specs.tags(values) == [{"Key": "a", "Value": "1"}, {"Key": "b", "Value": "2"}]
    assert specs.tags_as_dict(specs.tags(values)) == values
    assert_valid("sagemaker", "AddTags", {"ResourceArn": "arn:aws:sagemaker:x", "Tags": specs.tags(values)})


# -- blue/green rollout ----------------------------------------------------------------------------
def test_rollback_alarms_are_valid_put_metric_alarm_requests_named_after_the_endpoint():
    settings = PipelineSettings.from_params(
        {"endpoint_name": "dogs", "latency_p99_threshold_ms": 750, "four_xx_share_threshold": 0.1}
    )
    requests = specs.rollback_alarm_requests(settings)
    dimensions = [{"Name": "EndpointName", "Value": "dogs"}, {"Name": "VariantName", "Value": "AllTraffic"}]
    for request in requests:
        assert_valid("cloudwatch", "PutMetricAlarm", request)
        assert request["AlarmName"].startswith("dogs/rollback/AllTraffic/")
        queries = [q["MetricStat"]["Metric"] for q in request.get("Metrics", []) if "MetricStat" in q]
        assert all(metric["Dimensions"] == dimensions for metric in queries or [request])
        assert request["TreatMissingData"] == "notBreaching"  # no traffic is no verdict
    errors, latency, four_xx = requests
    assert four_xx == specs.four_xx_share_alarm_request("dogs", 0.1)
    assert (errors["MetricName"], errors["Statistic"]) == ("Invocation5XXErrors", "Sum")
    assert errors["Threshold"] == 0 and errors["ComparisonOperator"] == "GreaterThanThreshold"
    assert (latency["MetricName"], latency["ExtendedStatistic"]) == ("ModelLatency", "p99")
    assert latency["Threshold"] == 750_000  # ModelLatency is in microseconds
    # A rerun builds the same requests: PutMetricAlarm then updates the same alarms.
    assert specs.rollback_alarm_requests(settings) == requests


def test_the_4xx_share_alarm_is_metric_math_over_the_endpoints_metrics():
    request = specs.four_xx_share_alarm_request("dogs", 0.2)
    assert_valid("cloudwatch", "PutMetricAlarm", request)
    returned = [query for query in request["Metrics"] if query["ReturnData"]]
    assert [query["Expression"] for query in returned] == ["errors / invocations"]
    assert request["AlarmName"] == "dogs/rollback/AllTraffic/4xx-share"
    assert (request["Threshold"], request["ComparisonOperator"]) == (0.2, "GreaterThanThreshold")


@pytest.mark.parametrize(
    ("routing", "instances", "expected"),
    [
        ("CANARY", 2, "CANARY"),
        ("CANARY", 1, "ALL_AT_ONCE"),
        ("LINEAR", 4, "LINEAR"),
        ("LINEAR", 1, "ALL_AT_ONCE"),
        ("ALL_AT_ONCE", 3, "ALL_AT_ONCE"),
    ],
)
def test_the_deployment_config_is_a_valid_update_and_falls_back_to_all_at_once_below_two_instances(
    routing, instances, expected
):
    settings = PipelineSettings.from_params(
        {"rollout_traffic_routing": routing, "rollout_canary_percent": 50, "rollout_linear_step_percent": 25}
    )
    config, why = specs.deployment_config(settings, instances, ["a", "b"])
    update = {"EndpointName": "e", "EndpointConfigName": "c", "DeploymentConfig": config}
    assert_valid("sagemaker", "UpdateEndpoint", update)
    traffic = config["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]
    assert traffic["Type"] == expected and why.startswith(expected)
    assert ("CanarySize" in traffic) == (expected == "CANARY")
    assert ("LinearStepSize" in traffic) == (expected == "LINEAR")
    assert config["AutoRollbackConfiguration"] == {"Alarms": [{"AlarmName": "a"}, {"AlarmName": "b"}]}
    policy = config["BlueGreenUpdatePolicy"]
    assert (policy["TerminationWaitInSeconds"], policy["MaximumExecutionTimeoutInSeconds"]) == (300, 3600)


def test_rollout_params_must_leave_the_timeout_room_for_the_waits():
    from dog_breed.params import SettingsError

    with pytest.raises(SettingsError, match="rollout_max_execution_s"):
        PipelineSettings.from_params(
            {
                "rollout_wait_interval_s": 600,
                "rollout_termination_wait_s": 600,
                "rollout_max_execution_s": 1000,
            }
        )
