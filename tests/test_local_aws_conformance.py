"""Every operation local_aws serves itself, against botocore's model of it.

The list of operations comes from the running server's routing table: an operation added to
a service without a case here fails ``test_every_served_operation_has_a_case`` by name. For
each one, a valid call through boto3 must succeed, its parsed response must validate
against the operation's output shape (botocore's ParamValidator: required members, types)
with nothing dropped for being outside the model, and a request that breaks the input shape
(sent with client-side validation off) must get the API's validation error in AWS's words.

Resources are tiny and shared (one trivial training script, one torch-free model server,
one trivial Lambda), created on first use, so the module takes tens of seconds.
"""

from __future__ import annotations

import io
import json
import logging
import tarfile
import textwrap
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import pytest
from botocore.exceptions import ClientError
from botocore.validate import ParamValidator

from local_aws.devtools.sandbox import client
from local_aws.protocol.server import LocalAwsServer

BUCKET = "conformance"
ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.5-cpu-py311"
WAIT = {"Delay": 0.2, "MaxAttempts": 300}
VALIDATION_CODES = {"sagemaker": "ValidationException", "lambda": "ValidationException",
                    "sagemaker-runtime": "ValidationError",
                    "application-autoscaling": "ValidationException"}  # fmt: skip
VARIANT_DIMENSION = "sagemaker:variant:DesiredInstanceCount"
# Prints the objective; sleeps --seconds (the last argument) so a job can be stopped while it runs.
TRAIN_SCRIPT = "import sys, time\nprint('valid_accuracy=0.5', flush=True)\ntime.sleep(float(sys.argv[-1]))\n"
HANDLER = textwrap.dedent(
    """
    import json
    def model_fn(model_dir):
        return "model"
    def input_fn(body, content_type):
        return body
    def predict_fn(data, model):
        return {"model": model}
    def output_fn(prediction, accept):
        return json.dumps(prediction), "application/json"
    """
)
LAMBDA_SOURCE = "def handler(event, context):\n    return {'echo': event}\n"
TRUST_LAMBDA = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
    ],
}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def tar_gz(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def lambda_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", LAMBDA_SOURCE)
    return buffer.getvalue()


class World:
    """The resources the cases call with, made once (and put back where a case changes them)."""

    def __init__(self, server: LocalAwsServer):
        self.server = server

    def client(self, service: str, validate: bool = True) -> Any:
        config = {"retries": {"total_max_attempts": 1}, "read_timeout": 60}
        return client(service, self.server.url, parameter_validation=validate, **config)

    @cached_property
    def sm(self) -> Any:
        return self.client("sagemaker")

    @cached_property
    def lam(self) -> Any:
        return self.client("lambda")

    @cached_property
    def runtime(self) -> Any:
        return self.client("sagemaker-runtime")

    @cached_property
    def s3(self) -> Any:
        s3 = self.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        s3.put_object(Bucket=BUCKET, Key="data/train/a.txt", Body=b"x")
        s3.put_object(Bucket=BUCKET, Key="code/sourcedir.tar.gz", Body=tar_gz({"train.py": TRAIN_SCRIPT}))
        s3.put_object(Bucket=BUCKET, Key="model/model.tar.gz", Body=tar_gz({"code/inference.py": HANDLER}))
        return s3

    # -- SageMaker training and tuning ------------------------------------------------------------
    def training_request(self, name: str, seconds: float = 0) -> dict[str, Any]:
        assert self.s3
        return {
            "TrainingJobName": name,
            "AlgorithmSpecification": {
                "TrainingImage": IMAGE,
                "TrainingInputMode": "File",
                "MetricDefinitions": [{"Name": "valid:accuracy", "Regex": r"valid_accuracy=([0-9.]+)"}],
            },
            "RoleArn": ROLE,
            "HyperParameters": {
                "sagemaker_program": '"train.py"',
                "sagemaker_submit_directory": f'"s3://{BUCKET}/code/sourcedir.tar.gz"',
                "seconds": str(seconds),
            },
            "InputDataConfig": [
                {
                    "ChannelName": "train",
                    "DataSource": {
                        "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/data/train"}
                    },
                }
            ],
            "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/output"},
            "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
            "StoppingCondition": {"MaxRuntimeInSeconds": 120},
        }

    @cached_property
    def training_job(self) -> str:
        """A Completed training job (its description then carries every required member)."""
        name = unique("conformance")
        self.sm.create_training_job(**self.training_request(name))
        self.sm.get_waiter("training_job_completed_or_stopped").wait(TrainingJobName=name, WaiterConfig=WAIT)
        return name

    def tuning_request(self, name: str, seconds: float = 0) -> dict[str, Any]:
        training = self.training_request("unused", seconds)
        definition = {
            key: training[key]
            for key in ("AlgorithmSpecification", "RoleArn", "InputDataConfig", "OutputDataConfig",
                        "ResourceConfig", "StoppingCondition")
        }  # fmt: skip
        definition["StaticHyperParameters"] = training["HyperParameters"]
        return {
            "HyperParameterTuningJobName": name,
            "HyperParameterTuningJobConfig": {
                "Strategy": "Random",
                "HyperParameterTuningJobObjective": {"Type": "Maximize", "MetricName": "valid:accuracy"},
                "ResourceLimits": {"MaxNumberOfTrainingJobs": 1, "MaxParallelTrainingJobs": 1},
                "ParameterRanges": {
                    "CategoricalParameterRanges": [{"Name": "flavour", "Values": ["a", "b"]}]
                },
            },
            "TrainingJobDefinition": definition,
        }

    @cached_property
    def tuning_job(self) -> str:
        name = unique("tune")[:32]
        self.sm.create_hyper_parameter_tuning_job(**self.tuning_request(name))
        self.wait_tuning(name)
        return name

    def wait_tuning(self, name: str) -> None:
        """botocore has no waiter for tuning jobs; poll as the Airflow provider does."""
        deadline = time.monotonic() + 120
        while self.sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)[
            "HyperParameterTuningJobStatus"
        ] not in ("Completed", "Failed", "Stopped"):
            assert time.monotonic() < deadline, f"tuning job {name} did not end"
            time.sleep(0.2)

    # -- SageMaker hosting ------------------------------------------------------------------------
    def new_model(self) -> str:
        assert self.s3
        name = unique("model")
        self.sm.create_model(
            ModelName=name,
            ExecutionRoleArn=ROLE,
            PrimaryContainer={"Image": IMAGE, "ModelDataUrl": f"s3://{BUCKET}/model/model.tar.gz"},
        )
        return name

    def config_request(self, name: str) -> dict[str, Any]:
        variant = {"VariantName": "AllTraffic", "ModelName": self.model, "InitialInstanceCount": 1,
                   "InstanceType": "ml.m5.large"}  # fmt: skip
        return {"EndpointConfigName": name, "ProductionVariants": [variant]}

    def new_config(self) -> str:
        name = unique("config")
        self.sm.create_endpoint_config(**self.config_request(name))
        return name

    @cached_property
    def model(self) -> str:
        return self.new_model()

    @cached_property
    def config(self) -> str:
        return self.new_config()

    @cached_property
    def endpoint(self) -> str:
        name = unique("endpoint")
        self.sm.create_endpoint(EndpointName=name, EndpointConfigName=self.config)
        self.wait_in_service(name)
        return name

    def wait_in_service(self, endpoint: str) -> None:
        self.sm.get_waiter("endpoint_in_service").wait(EndpointName=endpoint, WaiterConfig=WAIT)

    # -- SageMaker Model Registry -----------------------------------------------------------------
    def new_group(self) -> str:
        name = unique("group")
        self.sm.create_model_package_group(
            ModelPackageGroupName=name, ModelPackageGroupDescription="versions"
        )
        return name

    @cached_property
    def group(self) -> str:
        return self.new_group()

    def create_package(self) -> dict[str, Any]:
        assert self.s3
        return self.sm.create_model_package(
            ModelPackageGroupName=self.group,
            InferenceSpecification={
                "Containers": [{"Image": IMAGE, "ModelDataUrl": f"s3://{BUCKET}/model/model.tar.gz"}],
                "SupportedContentTypes": ["application/json"],
                "SupportedResponseMIMETypes": ["application/json"],
            },
            CustomerMetadataProperties={"TrainingJobName": "conformance"},
        )

    def new_package(self) -> str:
        return self.create_package()["ModelPackageArn"]

    @cached_property
    def package(self) -> str:
        return self.new_package()

    # -- Lambda -----------------------------------------------------------------------------------
    @cached_property
    def role(self) -> str:
        iam = self.client("iam")
        return iam.create_role(RoleName=unique("lambda"), AssumeRolePolicyDocument=json.dumps(TRUST_LAMBDA))[
            "Role"
        ]["Arn"]

    def create_function(self, name: str) -> dict[str, Any]:
        return self.lam.create_function(
            FunctionName=name, Runtime="python3.12", Role=self.role, Handler="app.handler",
            Code={"ZipFile": lambda_zip()}, Timeout=30,
        )  # fmt: skip

    @cached_property
    def function(self) -> str:
        name = unique("fn")
        self.create_function(name)
        self.lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig=WAIT)
        return name

    @cached_property
    def function_arn(self) -> str:
        return self.lam.get_function(FunctionName=self.function)["Configuration"]["FunctionArn"]

    @cached_property
    def version(self) -> str:
        version = self.lam.publish_version(FunctionName=self.function)["Version"]
        self.lam.get_waiter("published_version_active").wait(
            FunctionName=self.function, Qualifier=version, WaiterConfig=WAIT
        )
        return version

    @cached_property
    def alias(self) -> str:
        self.lam.create_alias(FunctionName=self.function, Name="live", FunctionVersion=self.version)
        return "live"

    def provisioned(self) -> dict[str, Any]:
        return self.lam.put_provisioned_concurrency_config(
            FunctionName=self.function, Qualifier=self.version, ProvisionedConcurrentExecutions=1
        )

    def wait_updated(self, name: str) -> None:
        self.lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig=WAIT)

    # -- Application Auto Scaling (moto's, extended with target tracking's alarms) ---------------
    @cached_property
    def aas(self) -> Any:
        return self.client("application-autoscaling")

    def scalable_target(self) -> str:
        """A registered SageMaker variant (no endpoint needed: the controller skips it)."""
        resource = f"endpoint/{unique('scaled')}/variant/AllTraffic"
        self.aas.register_scalable_target(
            ServiceNamespace="sagemaker", ResourceId=resource, ScalableDimension=VARIANT_DIMENSION,
            MinCapacity=1, MaxCapacity=2,
        )  # fmt: skip
        return resource

    def policy_request(self, resource: str) -> dict[str, Any]:
        tracking = {
            "TargetValue": 10.0,
            "PredefinedMetricSpecification": {
                "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"
            },
        }
        return {"PolicyName": "tracking", "ServiceNamespace": "sagemaker", "ResourceId": resource,
                "ScalableDimension": VARIANT_DIMENSION, "PolicyType": "TargetTrackingScaling",
                "TargetTrackingScalingPolicyConfiguration": tracking}  # fmt: skip

    @cached_property
    def tracked(self) -> str:
        """A variant with a target-tracking policy (and so its two alarms)."""
        resource = self.scalable_target()
        self.aas.put_scaling_policy(**self.policy_request(resource))
        return resource


@dataclass(frozen=True)
class Case:
    valid: Callable[[World], dict[str, Any]]  # a call that must succeed
    invalid: dict[str, Any] | Callable[[World], dict[str, Any]]  # arguments that break the input shape


TOO_LONG = "x" * 64  # names of training jobs, models, endpoints: at most 63
BAD_NAME = "bad_name"  # SageMaker names: letters, digits and hyphens
BAD_FUNCTION = "no spaces allowed"


def _stop_training_job(w: World) -> dict[str, Any]:
    name = unique("stopme")
    w.sm.create_training_job(**w.training_request(name, seconds=60))
    response = w.sm.stop_training_job(TrainingJobName=name)
    w.sm.get_waiter("training_job_completed_or_stopped").wait(TrainingJobName=name, WaiterConfig=WAIT)
    return response


def _stop_tuning_job(w: World) -> dict[str, Any]:
    name = unique("stoptune")[:32]
    w.sm.create_hyper_parameter_tuning_job(**w.tuning_request(name, seconds=60))
    response = w.sm.stop_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)
    w.wait_tuning(name)
    return response


def _create_endpoint(w: World) -> dict[str, Any]:
    name = unique("created")
    response = w.sm.create_endpoint(EndpointName=name, EndpointConfigName=w.config)
    w.sm.delete_endpoint(EndpointName=name)  # its model server need not come up
    return response


def _update_endpoint(w: World) -> dict[str, Any]:
    response = w.sm.update_endpoint(EndpointName=w.endpoint, EndpointConfigName=w.new_config())
    w.wait_in_service(w.endpoint)
    return response


def _update_weights(w: World) -> dict[str, Any]:
    response = w.sm.update_endpoint_weights_and_capacities(
        EndpointName=w.endpoint,
        DesiredWeightsAndCapacities=[{"VariantName": "AllTraffic", "DesiredWeight": 1.0}],
    )
    w.wait_in_service(w.endpoint)
    return response


def _delete_endpoint(w: World) -> dict[str, Any]:
    name = unique("deleted")
    w.sm.create_endpoint(EndpointName=name, EndpointConfigName=w.config)
    return w.sm.delete_endpoint(EndpointName=name)


def _delete_model_package_group(w: World) -> dict[str, Any]:
    return w.sm.delete_model_package_group(ModelPackageGroupName=w.new_group())


def _create_function(w: World) -> dict[str, Any]:
    name = unique("created")
    response = w.create_function(name)
    w.lam.delete_function(FunctionName=name)
    return response


def _update_code(w: World) -> dict[str, Any]:
    response = w.lam.update_function_code(FunctionName=w.function, ZipFile=lambda_zip())
    w.wait_updated(w.function)
    return response


def _update_configuration(w: World) -> dict[str, Any]:
    response = w.lam.update_function_configuration(FunctionName=w.function, Description="conformance")
    w.wait_updated(w.function)
    return response


def _delete_alias(w: World) -> dict[str, Any]:
    w.lam.create_alias(FunctionName=w.function, Name="doomed", FunctionVersion=w.version)
    return w.lam.delete_alias(FunctionName=w.function, Name="doomed")


def _delete_provisioned(w: World) -> dict[str, Any]:
    w.provisioned()
    return w.lam.delete_provisioned_concurrency_config(FunctionName=w.function, Qualifier=w.version)


def _get_provisioned(w: World) -> dict[str, Any]:
    w.provisioned()
    return w.lam.get_provisioned_concurrency_config(FunctionName=w.function, Qualifier=w.version)


def _list_provisioned(w: World) -> dict[str, Any]:
    w.provisioned()
    return w.lam.list_provisioned_concurrency_configs(FunctionName=w.function)


def _delete_function(w: World) -> dict[str, Any]:
    name = unique("deleted")
    w.create_function(name)
    return w.lam.delete_function(FunctionName=name)


SAGEMAKER: dict[str, Case] = {
    # -- SageMaker tags
    "AddTags": Case(
        lambda w: w.sm.add_tags(
            ResourceArn=w.sm.describe_model(ModelName=w.model)["ModelArn"], Tags=[{"Key": "k", "Value": "v"}]
        ),
        lambda w: {"ResourceArn": "not-an-arn", "Tags": []},
    ),
    "ListTags": Case(
        lambda w: w.sm.list_tags(ResourceArn=w.sm.describe_model(ModelName=w.model)["ModelArn"]),
        {"ResourceArn": "not-an-arn"},
    ),
    "DeleteTags": Case(
        lambda w: w.sm.delete_tags(
            ResourceArn=w.sm.describe_model(ModelName=w.model)["ModelArn"], TagKeys=["k"]
        ),
        lambda w: {"ResourceArn": w.sm.describe_model(ModelName=w.model)["ModelArn"], "TagKeys": []},
    ),
    # -- training
    "CreateTrainingJob": Case(
        lambda w: w.sm.create_training_job(**w.training_request(unique("created"))),
        lambda w: {**w.training_request(BAD_NAME), "RoleArn": None},
    ),
    "DescribeTrainingJob": Case(
        lambda w: w.sm.describe_training_job(TrainingJobName=w.training_job), {"TrainingJobName": TOO_LONG}
    ),
    "ListTrainingJobs": Case(lambda w: w.sm.list_training_jobs(MaxResults=5), {"MaxResults": 1000}),
    "StopTrainingJob": Case(_stop_training_job, {"TrainingJobName": BAD_NAME}),
    # -- tuning
    "CreateHyperParameterTuningJob": Case(
        lambda w: w.sm.create_hyper_parameter_tuning_job(**w.tuning_request(unique("created")[:32])),
        lambda w: w.tuning_request("x" * 33),
    ),
    "DescribeHyperParameterTuningJob": Case(
        lambda w: w.sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=w.tuning_job),
        {"HyperParameterTuningJobName": "x" * 33},
    ),
    "ListHyperParameterTuningJobs": Case(
        lambda w: w.sm.list_hyper_parameter_tuning_jobs(SortBy="Name"), {"SortBy": "Colour"}
    ),
    "ListTrainingJobsForHyperParameterTuningJob": Case(
        lambda w: w.sm.list_training_jobs_for_hyper_parameter_tuning_job(
            HyperParameterTuningJobName=w.tuning_job
        ),
        {"HyperParameterTuningJobName": BAD_NAME},
    ),
    "StopHyperParameterTuningJob": Case(_stop_tuning_job, {"HyperParameterTuningJobName": "x" * 33}),
    # -- hosting
    "CreateModel": Case(
        lambda w: w.sm.create_model(ModelName=unique("model"), PrimaryContainer={"Image": IMAGE}),
        {"ModelName": TOO_LONG},
    ),
    "DescribeModel": Case(lambda w: w.sm.describe_model(ModelName=w.model), {"ModelName": BAD_NAME}),
    "ListModels": Case(lambda w: w.sm.list_models(), {"SortOrder": "Sideways"}),
    "DeleteModel": Case(lambda w: w.sm.delete_model(ModelName=w.new_model()), {"ModelName": TOO_LONG}),
    "CreateEndpointConfig": Case(
        lambda w: w.sm.create_endpoint_config(**w.config_request(unique("config"))),
        lambda w: {"EndpointConfigName": unique("c"), "ProductionVariants": [{"VariantName": BAD_NAME}]},
    ),
    "DescribeEndpointConfig": Case(
        lambda w: w.sm.describe_endpoint_config(EndpointConfigName=w.config), {"EndpointConfigName": TOO_LONG}
    ),
    "ListEndpointConfigs": Case(lambda w: w.sm.list_endpoint_configs(), {"MaxResults": 0}),
    "DeleteEndpointConfig": Case(
        lambda w: w.sm.delete_endpoint_config(EndpointConfigName=w.new_config()),
        {"EndpointConfigName": BAD_NAME},
    ),
    "CreateEndpoint": Case(_create_endpoint, {"EndpointName": BAD_NAME, "EndpointConfigName": BAD_NAME}),
    "DescribeEndpoint": Case(
        lambda w: w.sm.describe_endpoint(EndpointName=w.endpoint), {"EndpointName": TOO_LONG}
    ),
    "ListEndpoints": Case(
        lambda w: w.sm.list_endpoints(StatusEquals="InService"), {"StatusEquals": "Asleep"}
    ),
    "UpdateEndpoint": Case(_update_endpoint, {"EndpointName": BAD_NAME}),
    "UpdateEndpointWeightsAndCapacities": Case(
        _update_weights,
        lambda w: {
            "EndpointName": w.endpoint,
            "DesiredWeightsAndCapacities": [{"VariantName": "AllTraffic", "DesiredInstanceCount": -1}],
        },
    ),
    "DeleteEndpoint": Case(_delete_endpoint, {"EndpointName": TOO_LONG}),
    # -- model registry
    "CreateModelPackageGroup": Case(
        lambda w: w.sm.create_model_package_group(ModelPackageGroupName=unique("group")),
        {"ModelPackageGroupName": BAD_NAME},
    ),
    "DescribeModelPackageGroup": Case(
        lambda w: w.sm.describe_model_package_group(ModelPackageGroupName=w.group),
        {"ModelPackageGroupName": TOO_LONG * 3},
    ),
    "ListModelPackageGroups": Case(
        lambda w: w.sm.list_model_package_groups(SortBy="Name"), {"SortBy": "Colour"}
    ),
    "DeleteModelPackageGroup": Case(_delete_model_package_group, {"ModelPackageGroupName": BAD_NAME}),
    "CreateModelPackage": Case(
        lambda w: w.create_package(),
        lambda w: {"ModelPackageGroupName": w.group, "ModelApprovalStatus": "Maybe"},
    ),
    "DescribeModelPackage": Case(
        lambda w: w.sm.describe_model_package(ModelPackageName=w.package), {"ModelPackageName": BAD_NAME}
    ),
    "ListModelPackages": Case(
        lambda w: w.sm.list_model_packages(ModelPackageGroupName=w.group, ModelApprovalStatus="Approved"),
        {"ModelPackageType": "Sometimes"},
    ),
    "UpdateModelPackage": Case(
        lambda w: w.sm.update_model_package(
            ModelPackageArn=w.package, ModelApprovalStatus="Approved", ApprovalDescription="conformance"
        ),
        lambda w: {"ModelPackageArn": w.package, "ApprovalDescription": "d" * 1025},
    ),
    "DeleteModelPackage": Case(
        lambda w: w.sm.delete_model_package(ModelPackageName=w.new_package()), {"ModelPackageName": BAD_NAME}
    ),
}


def _delete_policy(w: World) -> dict[str, Any]:
    resource = w.scalable_target()
    w.aas.put_scaling_policy(**w.policy_request(resource))
    return w.aas.delete_scaling_policy(
        PolicyName="tracking",
        ServiceNamespace="sagemaker",
        ResourceId=resource,
        ScalableDimension=VARIANT_DIMENSION,
    )


def _deregister_target(w: World) -> dict[str, Any]:
    resource = w.scalable_target()
    w.aas.put_scaling_policy(**w.policy_request(resource))
    return w.aas.deregister_scalable_target(
        ServiceNamespace="sagemaker", ResourceId=resource, ScalableDimension=VARIANT_DIMENSION
    )


APPLICATION_AUTOSCALING: dict[str, Case] = {
    "PutScalingPolicy": Case(
        lambda w: w.aas.put_scaling_policy(**w.policy_request(w.scalable_target())),
        lambda w: {**w.policy_request(w.tracked), "PolicyName": ""},
    ),
    "DescribeScalingPolicies": Case(
        lambda w: w.aas.describe_scaling_policies(ServiceNamespace="sagemaker", ResourceId=w.tracked),
        {"ServiceNamespace": "nowhere"},
    ),
    "DeleteScalingPolicy": Case(
        _delete_policy,
        lambda w: {
            "PolicyName": "tracking",
            "ServiceNamespace": "sagemaker",
            "ResourceId": w.tracked,
            "ScalableDimension": "sagemaker:variant:Colour",
        },
    ),
    "DeregisterScalableTarget": Case(
        _deregister_target,
        {"ServiceNamespace": "sagemaker", "ResourceId": "", "ScalableDimension": VARIANT_DIMENSION},
    ),
}
SAGEMAKER_RUNTIME: dict[str, Case] = {
    "InvokeEndpoint": Case(
        lambda w: w.runtime.invoke_endpoint(
            EndpointName=w.endpoint, ContentType="application/json", Body=b"{}"
        ),
        {"EndpointName": BAD_NAME, "Body": b"{}"},
    ),
}
LAMBDA: dict[str, Case] = {
    # -- functions
    "CreateFunction": Case(
        _create_function, lambda w: {"FunctionName": unique("f"), "Role": w.role, "Code": {}, "Timeout": 0}
    ),
    "GetFunction": Case(
        lambda w: w.lam.get_function(FunctionName=w.function), {"FunctionName": BAD_FUNCTION}
    ),
    "GetFunctionConfiguration": Case(
        lambda w: w.lam.get_function_configuration(FunctionName=w.function), {"FunctionName": "f" * 141}
    ),
    "ListFunctions": Case(lambda w: w.lam.list_functions(MaxItems=10), {"MaxItems": 0}),
    "UpdateFunctionCode": Case(_update_code, lambda w: {"FunctionName": w.function, "S3Bucket": "x"}),
    "UpdateFunctionConfiguration": Case(
        _update_configuration, lambda w: {"FunctionName": w.function, "MemorySize": 64}
    ),
    "DeleteFunction": Case(_delete_function, {"FunctionName": BAD_FUNCTION}),
    # -- versions and aliases
    "PublishVersion": Case(
        lambda w: w.lam.publish_version(FunctionName=w.function), lambda w: {"FunctionName": "f" * 141}
    ),
    "ListVersionsByFunction": Case(
        lambda w: w.lam.list_versions_by_function(FunctionName=w.function),
        lambda w: {"FunctionName": w.function, "MaxItems": 100000},
    ),
    "CreateAlias": Case(
        lambda w: w.lam.create_alias(FunctionName=w.function, Name=unique("a"), FunctionVersion=w.version),
        lambda w: {"FunctionName": w.function, "Name": "123", "FunctionVersion": w.version},
    ),
    "GetAlias": Case(
        lambda w: w.lam.get_alias(FunctionName=w.function, Name=w.alias),
        lambda w: {"FunctionName": w.function, "Name": "no spaces"},
    ),
    "UpdateAlias": Case(
        lambda w: w.lam.update_alias(FunctionName=w.function, Name=w.alias, Description="conformance"),
        lambda w: {"FunctionName": w.function, "Name": w.alias, "Description": "d" * 257},
    ),
    "ListAliases": Case(
        lambda w: w.lam.list_aliases(FunctionName=w.function),
        lambda w: {"FunctionName": w.function, "MaxItems": 0},
    ),
    "DeleteAlias": Case(_delete_alias, lambda w: {"FunctionName": w.function, "Name": "x" * 129}),
    # -- concurrency
    "PutFunctionConcurrency": Case(
        lambda w: w.lam.put_function_concurrency(FunctionName=w.function, ReservedConcurrentExecutions=5),
        lambda w: {"FunctionName": w.function, "ReservedConcurrentExecutions": -1},
    ),
    "GetFunctionConcurrency": Case(
        lambda w: w.lam.get_function_concurrency(FunctionName=w.function), {"FunctionName": BAD_FUNCTION}
    ),
    "DeleteFunctionConcurrency": Case(
        lambda w: w.lam.delete_function_concurrency(FunctionName=w.function), {"FunctionName": "f" * 141}
    ),
    "PutProvisionedConcurrencyConfig": Case(
        lambda w: w.provisioned(),
        lambda w: {"FunctionName": w.function, "Qualifier": w.version, "ProvisionedConcurrentExecutions": 0},
    ),
    "GetProvisionedConcurrencyConfig": Case(
        _get_provisioned, lambda w: {"FunctionName": w.function, "Qualifier": "no spaces"}
    ),
    "ListProvisionedConcurrencyConfigs": Case(
        _list_provisioned, lambda w: {"FunctionName": w.function, "MaxItems": 51}
    ),
    "DeleteProvisionedConcurrencyConfig": Case(
        _delete_provisioned, lambda w: {"FunctionName": w.function, "Qualifier": "q" * 129}
    ),
    # -- tags and invoke
    "TagResource": Case(
        lambda w: w.lam.tag_resource(Resource=w.function_arn, Tags={"k": "v"}),
        lambda w: {"Resource": w.function_arn, "Tags": {"k" * 129: "v"}},
    ),
    "ListTags": Case(lambda w: w.lam.list_tags(Resource=w.function_arn), {"Resource": "not an arn"}),
    "UntagResource": Case(
        lambda w: w.lam.untag_resource(Resource=w.function_arn, TagKeys=["k"]),
        lambda w: {"Resource": w.function_arn, "TagKeys": []},
    ),
    "Invoke": Case(
        lambda w: w.lam.invoke(FunctionName=w.function, Payload=b'{"x": 1}'),
        lambda w: {"FunctionName": w.function, "InvocationType": "Sometimes"},
    ),
}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with LocalAwsServer(tmp_path_factory.mktemp("conformance")) as server:
        yield World(server)


CASES: dict[tuple[str, str], Case] = {
    **{("sagemaker", name): case for name, case in SAGEMAKER.items()},
    **{("sagemaker-runtime", name): case for name, case in SAGEMAKER_RUNTIME.items()},
    **{("lambda", name): case for name, case in LAMBDA.items()},
    **{("application-autoscaling", name): case for name, case in APPLICATION_AUTOSCALING.items()},
}


def served() -> list[tuple[str, str]]:
    return sorted(CASES)


def test_every_served_operation_has_a_case(world: World) -> None:
    table = world.server.app.routing_table()
    served_ops = {(api, name) for api, names in table.items() for name in names}
    uncovered = sorted(served_ops - set(served()))
    assert not uncovered, f"operations local_aws serves without a conformance case: {uncovered}"
    stale = sorted(set(served()) - served_ops)
    assert not stale, f"cases for operations local_aws does not serve: {stale}"


@pytest.mark.parametrize(("api", "operation"), served(), ids=lambda value: value)
def test_a_valid_call_returns_what_the_output_shape_describes(
    world: World, api: str, operation: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="local_aws.protocol")
    response = CASES[api, operation].valid(world)

    assert response["ResponseMetadata"]["HTTPStatusCode"] < 300
    model = world.client(api).meta.service_model.operation_model(operation)
    result = {key: value for key, value in response.items() if key != "ResponseMetadata"}
    report = ParamValidator().validate(result, model.output_shape) if model.output_shape else None
    assert report is None or not report.has_errors(), report.generate_report()
    dropped = [
        r.getMessage() for r in caplog.records if r.name == "local_aws.protocol" and "lacks" in r.getMessage()
    ]
    assert not dropped, dropped


@pytest.mark.parametrize(("api", "operation"), served(), ids=lambda value: value)
def test_a_request_breaking_the_input_shape_gets_the_validation_error(
    world: World, api: str, operation: str
) -> None:
    invalid = CASES[api, operation].invalid
    arguments = invalid(world) if callable(invalid) else invalid
    client = world.client(api, validate=False)
    method = getattr(client, _python_name(client, operation))

    with pytest.raises(ClientError) as raised:
        method(**{key: value for key, value in arguments.items() if value is not None})

    error = raised.value.response
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 400, error
    assert error["Error"]["Code"] == VALIDATION_CODES[api], error
    assert (
        " validation error" in error["Error"]["Message"] and " detected: Value " in error["Error"]["Message"]
    )


def _python_name(client: Any, operation: str) -> str:
    return next(name for name, api_name in client.meta.method_to_api_mapping.items() if api_name == operation)
