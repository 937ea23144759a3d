"""Pure builders: PipelineSettings -> boto3-shaped request dicts (SageMaker, Application Auto
Scaling, CloudWatch alarms).

Image URIs and the Debugger rule image are arguments: a task resolves them at run
time with the sagemaker SDK (``sagemaker.core.image_uris.retrieve`` and
``sagemaker.core.debugger.get_rule_container_image_uri``), so nothing here imports it.

Container choice: PyTorch 2.6 / py312 (the newest version the SDK lists for both
training and inference). Debugger in PyTorch >= 2.0 containers: no smdebug hook, so
tensor rules (VanishingGradient, Overfit, Overtraining, PoorWeightInitialization,
LossNotDecreasing) have no tensors to read. What works there is system profiling
(ProfilerConfig) with the ProfilerReport rule, which is always on. The tensor rules
and their DebugHookConfig are added only when ``debugger_tensor_rules`` is set, for
containers that ship smdebug.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

from dog_breed.metrics import METRIC_DEFINITIONS, TUNING_OBJECTIVE
from dog_breed.naming import rollback_alarm_name
from dog_breed.params import PipelineSettings
from dog_breed.registry import REPORT_CONTENT_TYPE

PYTORCH_VERSION = "2.6"
PYTHON_VERSION = "py312"
ENTRY_POINT = "train.py"
INFERENCE_ENTRY_POINT = "inference.py"
VARIANT_NAME = "AllTraffic"
CHANNELS = ("train", "valid", "test")
CHECKPOINT_LOCAL_PATH = "/opt/ml/checkpoints"
# The inference toolkit loads user code from model.tar.gz's code/ directory.
INFERENCE_CODE_DIR = "/opt/ml/model/code"
VOLUME_SIZE_GB = 30
PROFILING_INTERVAL_MS = 500
TENSOR_RULES = (
    "VanishingGradient",
    "Overfit",
    "Overtraining",
    "PoorWeightInitialization",
    "LossNotDecreasing",
)
# Collections the tensor rules read (as the SDK's rule_configs define them).
TENSOR_RULE_COLLECTIONS = {"VanishingGradient": "gradients", "PoorWeightInitialization": "relu_input"}
PROFILER_RULE = "ProfilerReport"
HYPERBAND_OBJECTIVE = {"Type": "Maximize", "MetricName": "valid:accuracy"}
# What a registered version declares it serves (InferenceSpecification).
SERVED_CONTENT_TYPES = ("image/jpeg", "image/png")
RESPONSE_CONTENT_TYPE = "application/json"
REALTIME_INSTANCE_TYPES = ("ml.c5.large", "ml.c5.xlarge", "ml.m5.large", "ml.m5.xlarge")
# Application Auto Scaling of an endpoint variant.
SERVICE_NAMESPACE = "sagemaker"
SCALABLE_DIMENSION = "sagemaker:variant:DesiredInstanceCount"
PREDEFINED_METRIC = "SageMakerVariantInvocationsPerInstance"
# The endpoint's CloudWatch metrics (per minute, by endpoint and variant) the rollback alarms watch.
ENDPOINT_METRICS_NAMESPACE = "AWS/SageMaker"
ALARM_PERIOD_S = 60
ERRORS_5XX, LATENCY_P99, SHARE_4XX = "5xx-errors", "model-latency-p99", "4xx-share"
MIN_CANARY_INSTANCES = 2  # a canary holds at most half of the instances


def encode_hyperparameters(values: dict[str, Any]) -> dict[str, str]:
    """JSON-encode every value, as the SageMaker Python SDK does for framework containers."""
    return {str(key): json.dumps(value) for key, value in values.items()}


def framework_hyperparameters(submit_dir: str, region: str) -> dict[str, Any]:
    """What the sagemaker-training toolkit needs to fetch and run ``train.py``."""
    return {
        "sagemaker_program": ENTRY_POINT,
        "sagemaker_submit_directory": submit_dir,
        "sagemaker_region": region,
        "sagemaker_container_log_level": 20,
    }


def static_hyperparameters(
    settings: PipelineSettings, submit_dir: str, epochs: int, *, serving_export: bool
) -> dict[str, str]:
    """Hyperparameters shared by tuning trials and the final job (train.py's CLI flags).

    Only the final job's model is served, so only it pays for the int8 ONNX export."""
    return encode_hyperparameters(
        {
            "epochs": epochs,
            "image-size": settings.image_size,
            "pretrained": settings.pretrained,
            "export-onnx": serving_export,
            **framework_hyperparameters(submit_dir, settings.region),
        }
    )


def training_hyperparameters(static: dict[str, str], tuned: dict[str, str], epochs: int) -> dict[str, str]:
    """The final job's hyperparameters: the static ones, the tuner's best, the final epoch count."""
    merged = {**static, **tuned}
    merged["epochs"] = json.dumps(epochs)
    # The tuner may carry its own bookkeeping keys; they are not train.py flags.
    return {k: v for k, v in merged.items() if not k.startswith("_tuning_objective")}


def parameter_ranges(settings: PipelineSettings) -> dict[str, list[dict[str, Any]]]:
    batch_sizes = {"Name": "batch-size", "Values": [json.dumps(b) for b in settings.batch_sizes]}
    if settings.tuning_strategy == "Grid":
        # Grid search accepts categorical ranges only.
        return {
            "CategoricalParameterRanges": [
                {"Name": "lr", "Values": _grid_values(settings.lr_min, settings.lr_max)},
                {
                    "Name": "weight-decay",
                    "Values": _grid_values(settings.weight_decay_min, settings.weight_decay_max),
                },
                batch_sizes,
            ]
        }
    return {
        "ContinuousParameterRanges": [
            {
                "Name": "lr",
                "MinValue": str(settings.lr_min),
                "MaxValue": str(settings.lr_max),
                "ScalingType": "Logarithmic",
            },
            {
                "Name": "weight-decay",
                "MinValue": str(settings.weight_decay_min),
                "MaxValue": str(settings.weight_decay_max),
                "ScalingType": "Logarithmic",
            },
        ],
        "CategoricalParameterRanges": [batch_sizes],
    }


def _grid_values(low: float, high: float) -> list[str]:
    values = sorted({low, math.sqrt(low * high), high})
    return [json.dumps(float(f"{v:.3g}")) for v in values]


def _algorithm(image_uri: str, *, time_series: bool = True) -> dict[str, Any]:
    algorithm: dict[str, Any] = {
        "TrainingImage": image_uri,
        "TrainingInputMode": "File",
        "MetricDefinitions": METRIC_DEFINITIONS,
    }
    if time_series:  # CreateTrainingJob only; the tuning job's definition has no such field
        algorithm["EnableSageMakerMetricsTimeSeries"] = True
    return algorithm


def input_data_config(dataset_s3_uri: str) -> list[dict[str, Any]]:
    """One channel per split; FullyReplicated so every DDP host sees the data and shards it itself."""
    return [
        {
            "ChannelName": channel,
            "DataSource": {
                "S3DataSource": {
                    "S3DataType": "S3Prefix",
                    "S3Uri": f"{dataset_s3_uri}/{channel}/",
                    "S3DataDistributionType": "FullyReplicated",
                }
            },
            "ContentType": "application/x-image",
            "InputMode": "File",
        }
        for channel in CHANNELS
    ]


def _stopping(settings: PipelineSettings) -> dict[str, int]:
    return {"MaxRuntimeInSeconds": settings.training_max_runtime_hours * 3600}


def tags(values: Mapping[str, str]) -> list[dict[str, str]]:
    """``{"k": "v"}`` -> ``[{"Key": "k", "Value": "v"}]``, sorted: the one way tags go to AWS."""
    return [{"Key": key, "Value": value} for key, value in sorted(values.items())]


def tags_as_dict(aws_tags: Iterable[Mapping[str, str]]) -> dict[str, str]:
    """``[{"Key": "k", "Value": "v"}]`` -> ``{"k": "v"}``: the one way tags come back from AWS."""
    return {tag["Key"]: tag["Value"] for tag in aws_tags}


def tuning_job_request(
    settings: PipelineSettings,
    *,
    tuning_job_name: str,
    training_image_uri: str,
    submit_dir: str,
    run_tags: dict[str, str],
) -> dict[str, Any]:
    """CreateHyperParameterTuningJob."""
    strategy = settings.tuning_strategy
    limits: dict[str, int] = {"MaxParallelTrainingJobs": settings.tuning_max_parallel_jobs}
    if strategy != "Grid":  # Grid runs every combination; it rejects a job cap.
        limits["MaxNumberOfTrainingJobs"] = settings.tuning_max_jobs
    job_config: dict[str, Any] = {
        "Strategy": strategy,
        "HyperParameterTuningJobObjective": HYPERBAND_OBJECTIVE
        if strategy == "Hyperband"
        else TUNING_OBJECTIVE,
        "ResourceLimits": limits,
        "ParameterRanges": parameter_ranges(settings),
        "TrainingJobEarlyStoppingType": "Auto" if strategy in ("Bayesian", "Random") else "Off",
    }
    if strategy == "Hyperband":
        # Hyperband stops trials on the per-epoch metric; epochs are its resource.
        job_config["StrategyConfig"] = {
            "HyperbandStrategyConfig": {"MinResource": 1, "MaxResource": settings.tuning_epochs}
        }
    return {
        "HyperParameterTuningJobName": tuning_job_name,
        "HyperParameterTuningJobConfig": job_config,
        "TrainingJobDefinition": {
            "StaticHyperParameters": static_hyperparameters(
                settings, submit_dir, settings.tuning_epochs, serving_export=False
            ),
            "AlgorithmSpecification": _algorithm(training_image_uri, time_series=False),
            "RoleArn": settings.sagemaker_role_arn,
            "InputDataConfig": input_data_config(settings.dataset_s3_uri),
            # A trial's model is never served: uploaded as files, it skips tar.gz packing (the
            # definition takes OutputDataConfig.CompressionType, as CreateTrainingJob does).
            "OutputDataConfig": {
                "S3OutputPath": f"{settings.artifacts_s3_uri}/tuning/",
                "CompressionType": "NONE",
            },
            "ResourceConfig": {
                "InstanceType": settings.tuning_instance_type,
                "InstanceCount": 1,
                "VolumeSizeInGB": VOLUME_SIZE_GB,
            },
            "StoppingCondition": _stopping(settings),
        },
        "Tags": tags(run_tags),
    }


def debugger_config(
    settings: PipelineSettings, *, training_job_name: str, rule_image_uri: str
) -> dict[str, Any]:
    """ProfilerConfig + ProfilerReport always; DebugHookConfig + tensor rules when asked for."""
    base = f"{settings.artifacts_s3_uri}/debugger/{training_job_name}"
    config: dict[str, Any] = {
        "ProfilerConfig": {
            "S3OutputPath": f"{settings.artifacts_s3_uri}/profiler/",
            "ProfilingIntervalInMilliseconds": PROFILING_INTERVAL_MS,
        },
        "ProfilerRuleConfigurations": [
            {
                "RuleConfigurationName": PROFILER_RULE,
                "RuleEvaluatorImage": rule_image_uri,
                "RuleParameters": {"rule_to_invoke": PROFILER_RULE},
            }
        ],
    }
    if settings.debugger_tensor_rules:
        collections = sorted({"losses", *TENSOR_RULE_COLLECTIONS.values()})
        config["DebugHookConfig"] = {
            "S3OutputPath": f"{base}/tensors",
            "CollectionConfigurations": [
                {"CollectionName": name, "CollectionParameters": {"save_interval": "100"}}
                for name in collections
            ],
        }
        config["DebugRuleConfigurations"] = [
            {
                "RuleConfigurationName": rule,
                "RuleEvaluatorImage": rule_image_uri,
                "RuleParameters": {"rule_to_invoke": rule},
            }
            for rule in TENSOR_RULES
        ]
    return config


def training_job_request(
    settings: PipelineSettings,
    *,
    training_job_name: str,
    training_image_uri: str,
    rule_image_uri: str,
    hyperparameters: dict[str, str],
    run_tags: dict[str, str],
) -> dict[str, Any]:
    """CreateTrainingJob: final training with checkpoints, Debugger and profiler."""
    return {
        "TrainingJobName": training_job_name,
        "HyperParameters": hyperparameters,
        "AlgorithmSpecification": _algorithm(training_image_uri),
        "RoleArn": settings.sagemaker_role_arn,
        "InputDataConfig": input_data_config(settings.dataset_s3_uri),
        "OutputDataConfig": {"S3OutputPath": f"{settings.artifacts_s3_uri}/output/"},
        "ResourceConfig": {
            "InstanceType": settings.training_instance_type,
            "InstanceCount": settings.training_instance_count,
            "VolumeSizeInGB": VOLUME_SIZE_GB,
        },
        "StoppingCondition": _stopping(settings),
        "CheckpointConfig": {
            "S3Uri": f"{settings.artifacts_s3_uri}/checkpoints/{training_job_name}/",
            "LocalPath": CHECKPOINT_LOCAL_PATH,
        },
        **debugger_config(settings, training_job_name=training_job_name, rule_image_uri=rule_image_uri),
        "Tags": tags(run_tags),
    }


def serving_environment(settings: PipelineSettings) -> dict[str, str]:
    """The inference container's environment: it loads code/inference.py from model.tar.gz."""
    return {
        "SAGEMAKER_PROGRAM": INFERENCE_ENTRY_POINT,
        "SAGEMAKER_SUBMIT_DIRECTORY": INFERENCE_CODE_DIR,
        "SAGEMAKER_REGION": settings.region,
        "SAGEMAKER_CONTAINER_LOG_LEVEL": "20",
    }


def inference_specification(
    settings: PipelineSettings, *, inference_image_uri: str, model_data_url: str
) -> dict[str, Any]:
    """A model package's InferenceSpecification: the container CreateModel will run, what it
    accepts and answers, and where it may serve in real time (the Param's type among them)."""
    return {
        "Containers": [
            {
                "Image": inference_image_uri,
                "ModelDataUrl": model_data_url,
                "Environment": serving_environment(settings),
            }
        ],
        "SupportedContentTypes": list(SERVED_CONTENT_TYPES),
        "SupportedResponseMIMETypes": [RESPONSE_CONTENT_TYPE],
        "SupportedRealtimeInferenceInstanceTypes": sorted(
            {*REALTIME_INSTANCE_TYPES, settings.endpoint_instance_type}
        ),
    }


def model_package_extras(
    settings: PipelineSettings,
    *,
    inference_image_uri: str,
    model_data_url: str,
    report_uri: str,
    report_digest: str,
    metadata: Mapping[str, str],
) -> dict[str, Any]:
    """CreateModelPackage's members beyond group, description and status (the registering
    operator's ``extras``): the inference specification, the quality report as the ModelQuality
    statistics, and the customer metadata (provenance and test metrics)."""
    return {
        "InferenceSpecification": inference_specification(
            settings, inference_image_uri=inference_image_uri, model_data_url=model_data_url
        ),
        "ModelMetrics": {
            "ModelQuality": {
                "Statistics": {
                    "ContentType": REPORT_CONTENT_TYPE,
                    "S3Uri": report_uri,
                    "ContentDigest": report_digest,
                }
            }
        },
        "CustomerMetadataProperties": dict(metadata),
    }


def model_request(
    settings: PipelineSettings, *, model_name: str, model_package_arn: str, run_tags: dict[str, str]
) -> dict[str, Any]:
    """CreateModel from a registered version: SageMaker takes the container from its
    InferenceSpecification."""
    return {
        "ModelName": model_name,
        "ExecutionRoleArn": settings.sagemaker_role_arn,
        "PrimaryContainer": {"ModelPackageName": model_package_arn},
        "Tags": tags(run_tags),
    }


def endpoint_config_request(
    settings: PipelineSettings, *, endpoint_config_name: str, model_name: str, run_tags: dict[str, str]
) -> dict[str, Any]:
    """CreateEndpointConfig: one variant, starting at the autoscaling minimum."""
    return {
        "EndpointConfigName": endpoint_config_name,
        "ProductionVariants": [
            {
                "VariantName": VARIANT_NAME,
                "ModelName": model_name,
                "InitialInstanceCount": settings.autoscaling_min_capacity,
                "InstanceType": settings.endpoint_instance_type,
                "InitialVariantWeight": 1.0,
            }
        ],
        "Tags": tags(run_tags),
    }


def endpoint_request(
    settings: PipelineSettings, *, endpoint_config_name: str, run_tags: dict[str, str]
) -> dict[str, Any]:
    """CreateEndpoint (the provider operator turns it into UpdateEndpoint when the endpoint exists)."""
    return {
        "EndpointName": settings.endpoint_name,
        "EndpointConfigName": endpoint_config_name,
        "Tags": tags(run_tags),
    }


def endpoint_arn(region: str, account: str, endpoint_name: str) -> str:
    # SageMaker lower-cases resource names in ARNs.
    return f"arn:aws:sagemaker:{region}:{account}:endpoint/{endpoint_name.lower()}"


def variant_resource_id(endpoint_name: str, variant_name: str = VARIANT_NAME) -> str:
    return f"endpoint/{endpoint_name}/variant/{variant_name}"


def register_target_request(resource_id: str, min_capacity: int, max_capacity: int) -> dict[str, Any]:
    """RegisterScalableTarget (an upsert: a rerun updates the one target)."""
    return {
        "ServiceNamespace": SERVICE_NAMESPACE,
        "ResourceId": resource_id,
        "ScalableDimension": SCALABLE_DIMENSION,
        "MinCapacity": min_capacity,
        "MaxCapacity": max_capacity,
    }


def scaling_policy_request(
    resource_id: str,
    policy_name: str,
    target_value: float,
    scale_in_cooldown: int,
    scale_out_cooldown: int,
) -> dict[str, Any]:
    """PutScalingPolicy: target tracking on invocations per instance (an upsert by policy name)."""
    return {
        "PolicyName": policy_name,
        "ServiceNamespace": SERVICE_NAMESPACE,
        "ResourceId": resource_id,
        "ScalableDimension": SCALABLE_DIMENSION,
        "PolicyType": "TargetTrackingScaling",
        "TargetTrackingScalingPolicyConfiguration": {
            "TargetValue": float(target_value),
            "PredefinedMetricSpecification": {"PredefinedMetricType": PREDEFINED_METRIC},
            "ScaleInCooldown": scale_in_cooldown,
            "ScaleOutCooldown": scale_out_cooldown,
        },
    }


# -- blue/green rollout ------------------------------------------------------------------------
def endpoint_dimensions(endpoint_name: str, variant_name: str = VARIANT_NAME) -> list[dict[str, str]]:
    return [{"Name": "EndpointName", "Value": endpoint_name}, {"Name": "VariantName", "Value": variant_name}]


def _rollback_alarm(
    endpoint_name: str, variant_name: str, kind: str, description: str, **metric: Any
) -> dict[str, Any]:
    return {
        "AlarmName": rollback_alarm_name(endpoint_name, variant_name, kind),
        "AlarmDescription": f"{description} Rolls a blue/green update of {endpoint_name} back.",
        "ActionsEnabled": False,  # SageMaker reads its state during a rollout; nothing else acts on it
        "ComparisonOperator": "GreaterThanThreshold",
        # No traffic is no evidence against the new model.
        "TreatMissingData": "notBreaching",
        **metric,
    }


def rollback_alarm_requests(
    settings: PipelineSettings, variant_name: str = VARIANT_NAME
) -> list[dict[str, Any]]:
    """PutMetricAlarm requests (upserts) for the alarms that roll a retraining's rollout back:
    any 5XX answer within a minute, the model's p99 latency above the threshold in 2 of 3
    minutes (one slow first request of a fresh instance is not a verdict), and the share of 4XX
    answers above ``four_xx_share_threshold`` in a minute."""
    endpoint = settings.endpoint_name
    metric = {
        "Namespace": ENDPOINT_METRICS_NAMESPACE,
        "Dimensions": endpoint_dimensions(endpoint, variant_name),
        "Period": ALARM_PERIOD_S,
    }
    return [
        _rollback_alarm(
            endpoint, variant_name, ERRORS_5XX, "The model answered 5XX errors.",
            MetricName="Invocation5XXErrors", Statistic="Sum", Threshold=0.0,
            EvaluationPeriods=1, DatapointsToAlarm=1, **metric,
        ),
        _rollback_alarm(
            endpoint, variant_name, LATENCY_P99,
            f"The model's p99 latency exceeded {settings.latency_p99_threshold_ms} ms.",
            MetricName="ModelLatency", ExtendedStatistic="p99",
            Threshold=float(settings.latency_p99_threshold_ms * 1000),  # ModelLatency is in microseconds
            EvaluationPeriods=3, DatapointsToAlarm=2, **metric,
        ),
        four_xx_share_alarm_request(endpoint, settings.four_xx_share_threshold, variant_name),
    ]  # fmt: skip


def four_xx_share_alarm_request(
    endpoint_name: str, share: float, variant_name: str = VARIANT_NAME
) -> dict[str, Any]:
    """PutMetricAlarm: the share of 4XX answers (metric math ``errors / invocations``) above
    ``share`` in a minute: a model that refuses requests its registry version says it accepts
    (content types ``image/jpeg`` and ``image/png``). A minute without requests has no
    datapoint (division by zero), which counts as not breaching."""

    def metric(query_id: str, name: str) -> dict[str, Any]:
        stat = {"Namespace": ENDPOINT_METRICS_NAMESPACE, "MetricName": name,
                "Dimensions": endpoint_dimensions(endpoint_name, variant_name)}  # fmt: skip
        return {"Id": query_id, "MetricStat": {"Metric": stat, "Period": ALARM_PERIOD_S, "Stat": "Sum"},
                "ReturnData": False}  # fmt: skip

    return _rollback_alarm(
        endpoint_name, variant_name, SHARE_4XX, f"More than {share:.0%} of the requests got a 4XX answer.",
        Metrics=[
            metric("errors", "Invocation4XXErrors"),
            metric("invocations", "Invocations"),
            {"Id": "share", "Expression": "errors / invocations", "Label": "4XX share", "ReturnData": True},
        ],
        Threshold=float(share), EvaluationPeriods=1, DatapointsToAlarm=1,
    )  # fmt: skip


def deployment_config(
    settings: PipelineSettings, instance_count: int, alarm_names: Iterable[str]
) -> tuple[dict[str, Any], str]:
    """UpdateEndpoint's DeploymentConfig for a retraining run, and why it routes as it does: the
    routing Param, except that a canary (at most half of the instances) or a linear step needs at
    least two instances, so with one the update is blue/green ALL_AT_ONCE with a baking period
    watched by the same alarms."""
    routing_type = settings.rollout_traffic_routing
    wait, termination = settings.rollout_wait_interval_s, settings.rollout_termination_wait_s
    why = f"{routing_type} as the rollout_traffic_routing Param asks"
    if routing_type != "ALL_AT_ONCE" and instance_count < MIN_CANARY_INSTANCES:
        why = (
            f"ALL_AT_ONCE, not {routing_type}: the new fleet has {instance_count} instance(s) and a "
            f"{routing_type.lower()} step may hold at most half of them; it bakes {wait} s + "
            f"{termination} s watched by the alarms"
        )
        routing_type = "ALL_AT_ONCE"
    routing: dict[str, Any] = {"Type": routing_type, "WaitIntervalInSeconds": wait}
    if routing_type == "CANARY":
        routing["CanarySize"] = {"Type": "CAPACITY_PERCENT", "Value": settings.rollout_canary_percent}
    elif routing_type == "LINEAR":
        step = settings.rollout_linear_step_percent
        routing["LinearStepSize"] = {"Type": "CAPACITY_PERCENT", "Value": step}
    config = {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": routing,
            "TerminationWaitInSeconds": termination,
            "MaximumExecutionTimeoutInSeconds": settings.rollout_max_execution_s,
        },
        "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": name} for name in alarm_names]},
    }
    return config, why
