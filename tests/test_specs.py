"""Every request the builders make is valid against botocore's service models."""

from __future__ import annotations

import json
from dataclasses import replace

import botocore.session
import pytest
from botocore.validate import ParamValidator

from dog_breed import specs
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


def test_hosting_requests_are_valid():
    settings = PipelineSettings.from_params({})
    model = specs.model_request(
        settings,
        model_name="m",
        inference_image_uri=IMAGE,
        model_data_url="s3://b/model.tar.gz",
        run_tags=TAGS,
    )
    assert_valid("sagemaker", "CreateModel", model)
    config = specs.endpoint_config_request(settings, endpoint_config_name="c", model_name="m", run_tags=TAGS)
    assert_valid("sagemaker", "CreateEndpointConfig", config)
    assert config["ProductionVariants"][0]["InstanceType"] == "ml.m5.large"
    endpoint = specs.endpoint_request(settings, endpoint_config_name="c", run_tags=TAGS)
    assert_valid("sagemaker", "CreateEndpoint", endpoint)
    update = {k: v for k, v in endpoint.items() if k != "Tags"}
    assert_valid("sagemaker", "UpdateEndpoint", update)


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
