"""Bodies of the DAG's Python tasks. The DAG file wraps them with ``@task``.

Each takes the run's ``params`` (and ``dag_run`` where names derive from the run) and
makes its AWS calls through hooks on ``aws_default`` (the provider's, or ours in
``dog_breed.hooks``), so the connection's ``endpoint_url`` / ``service_config`` extras
apply. Hooks, the sagemaker SDK and anything else heavy are imported inside the function,
keeping a DAG parse light.
"""

from __future__ import annotations

import logging
from typing import Any

from dog_breed import gate, naming, packaging, specs
from dog_breed.params import AWS_CONN_ID, PipelineSettings
from dog_breed.s3uri import split_s3_uri

log = logging.getLogger(__name__)


def _hook_kwargs(settings: PipelineSettings) -> dict[str, str]:
    return {"aws_conn_id": AWS_CONN_ID, "region_name": settings.region}


def _s3(settings: PipelineSettings):
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    return S3Hook(**_hook_kwargs(settings)).conn


def _sagemaker(settings: PipelineSettings):
    from dog_breed.hooks import PipelineSageMakerHook

    return PipelineSageMakerHook(**_hook_kwargs(settings))


def _run_tags(dag_run) -> dict[str, str]:
    return {"project": "dog-breed-pipeline", gate.TAG_DAG_RUN: dag_run.run_id[:256]}


def check_dataset(params: dict | None = None) -> dict[str, Any]:
    """ListObjectsV2 over the dataset; fails with every layout problem listed."""
    from dog_breed.dataset import check_dataset as check

    settings = PipelineSettings.from_params(params or {})
    summary = check(_s3(settings), settings.dataset_s3_uri).as_dict()
    log.info("Dataset: %d classes, images per split %s", summary["num_classes"], summary["images_per_split"])
    return summary


def package_source(params: dict | None = None) -> dict[str, Any]:
    """HeadObject, then PutObject only when this exact code is not there yet."""
    settings = PipelineSettings.from_params(params or {})
    payload = packaging.build_tarball(packaging.default_model_scripts_dir())
    bucket, prefix = split_s3_uri(settings.artifacts_s3_uri)
    key = packaging.content_key(prefix, payload)
    uploaded = packaging.upload_if_absent(_s3(settings), bucket, key, payload)
    log.info("sourcedir.tar.gz at s3://%s/%s (%s)", bucket, key, "uploaded" if uploaded else "already there")
    return {"s3_uri": f"s3://{bucket}/{key}", "uploaded": uploaded, "bytes": len(payload)}


def resolve_images(settings: PipelineSettings) -> dict[str, str]:
    """AWS Deep Learning Container and Debugger rule image URIs for the region (sagemaker SDK, ~2 s)."""
    from sagemaker.core import image_uris
    from sagemaker.core.debugger import get_rule_container_image_uri

    def pytorch(scope: str, instance_type: str) -> str:
        return image_uris.retrieve(
            "pytorch",
            region=settings.region,
            version=specs.PYTORCH_VERSION,
            py_version=specs.PYTHON_VERSION,
            instance_type=instance_type,
            image_scope=scope,
        )

    return {
        "tuning": pytorch("training", settings.tuning_instance_type),
        "training": pytorch("training", settings.training_instance_type),
        "inference": pytorch("inference", settings.endpoint_instance_type),
        "debugger_rules": get_rule_container_image_uri(specs.PROFILER_RULE, settings.region),
    }


def build_configs(source: dict, params: dict | None = None, dag_run=None) -> dict[str, Any]:
    """Names, image URIs and the tuning request (multiple outputs: tuning, names, images)."""
    settings = PipelineSettings.from_params(params or {})
    names = naming.RunNames.for_run(dag_run.dag_id, dag_run.run_id)
    images = resolve_images(settings)
    tuning = specs.tuning_job_request(
        settings,
        tuning_job_name=names.tuning_job,
        training_image_uri=images["tuning"],
        submit_dir=source["s3_uri"],
        run_tags=_run_tags(dag_run),
    )
    return {
        "tuning": tuning,
        "names": {"tuning_job": names.tuning_job, "training_job": names.training_job},
        "images": images,
        "submit_dir": source["s3_uri"],
    }


def best_training_config(
    tuning: dict, names: dict, images: dict, submit_dir: str, params: dict | None = None, dag_run=None
) -> dict[str, Any]:
    """DescribeHyperParameterTuningJob (the tune task's XCom) -> BestTrainingJob's tuned
    hyperparameters merged into the final CreateTrainingJob request."""
    settings = PipelineSettings.from_params(params or {})
    description = tuning["Tuning"]
    best = description.get("BestTrainingJob")
    if not best or not best.get("TunedHyperParameters"):
        raise ValueError(
            f"tuning job {description.get('HyperParameterTuningJobName')} "
            f"({description.get('HyperParameterTuningJobStatus')}) has no best training job"
        )
    log.info(
        "Best trial %s: %s",
        best.get("TrainingJobName"),
        best.get("FinalHyperParameterTuningJobObjectiveMetric"),
    )
    static = specs.static_hyperparameters(settings, submit_dir, settings.epochs)
    hyperparameters = specs.training_hyperparameters(static, best["TunedHyperParameters"], settings.epochs)
    return specs.training_job_request(
        settings,
        training_job_name=names["training_job"],
        training_image_uri=images["training"],
        rule_image_uri=images["debugger_rules"],
        hyperparameters=hyperparameters,
        run_tags={**_run_tags(dag_run), "tuning-job": description["HyperParameterTuningJobName"]},
    )


def quality_gate(training: dict, params: dict | None = None) -> dict[str, Any]:
    """test:accuracy vs the threshold and the live endpoint's tag; skips the deploy path when worse."""
    from airflow.sdk.exceptions import AirflowSkipException

    from dog_breed.hooks import describe_or_none

    settings = PipelineSettings.from_params(params or {})
    challenger = gate.final_metric(training["Training"])
    sagemaker = _sagemaker(settings)
    endpoint = describe_or_none(sagemaker.describe_endpoint, settings.endpoint_name)
    live_tags = sagemaker.tags(endpoint["EndpointArn"]) if endpoint else {}
    decision = gate.decide(
        challenger,
        settings.accuracy_threshold,
        gate.champion_accuracy(live_tags),
        tolerance=settings.champion_tolerance,
    )
    if not decision.deploy:
        log.warning("Not deploying: %s", decision.reason)
        raise AirflowSkipException(f"quality gate: {decision.reason}")
    log.info("Deploying: %s", decision.reason)
    return decision.as_dict()


def deploy_configs(
    training: dict, images: dict, decision: dict, params: dict | None = None, dag_run=None
) -> dict[str, Any]:
    """CreateModel, CreateEndpointConfig and CreateEndpoint requests (multiple outputs), named
    after the training job and tagged with its test accuracy."""
    settings = PipelineSettings.from_params(params or {})
    job = training["Training"]
    names = naming.ModelNames.for_training_job(
        dag_run.dag_id, job["TrainingJobName"], settings.endpoint_instance_type
    )
    champion = gate.champion_tags(
        test_accuracy=decision["challenger_accuracy"],
        model_name=names.model,
        training_job=job["TrainingJobName"],
        dag_run=dag_run.run_id,
    )
    tags = {**_run_tags(dag_run), **champion}
    return {
        "model": specs.model_request(
            settings,
            model_name=names.model,
            inference_image_uri=images["inference"],
            model_data_url=job["ModelArtifacts"]["S3ModelArtifacts"],
            run_tags=tags,
        ),
        "endpoint_config": specs.endpoint_config_request(
            settings, endpoint_config_name=names.endpoint_config, model_name=names.model, run_tags=tags
        ),
        "endpoint": specs.endpoint_request(
            settings, endpoint_config_name=names.endpoint_config, run_tags=tags
        ),
    }


def prepare_endpoint_update(
    endpoint_config: dict, rollback_alarms: list[str], params: dict | None = None
) -> dict[str, Any]:
    """Before create/update: record the config to roll back to (kept as a tag on the new config,
    so a rerun after the update still knows it), deregister autoscaling when the instance type
    changes (UpdateEndpoint refuses that on an auto-scaled variant), and choose how the update
    rolls out: a blue/green DeploymentConfig watched by ``rollback_alarms`` (none for the first
    deployment, which CreateEndpoint makes with nothing to shift traffic from)."""
    from dog_breed.hooks import ApplicationAutoScalingHook, describe_or_none

    settings = PipelineSettings.from_params(params or {})
    described = endpoint_config["EndpointConfig"]
    new_name, new_arn = described["EndpointConfigName"], described["EndpointConfigArn"]
    sagemaker = _sagemaker(settings)
    endpoint = describe_or_none(sagemaker.describe_endpoint, settings.endpoint_name)
    if endpoint is None:
        log.info("First deployment of %s: CreateEndpoint, no canary.", settings.endpoint_name)
        return {
            "previous_endpoint_config": None,
            "deregistered_autoscaling": False,
            "deployment_config": None,
        }
    instances = sum(int(v["InitialInstanceCount"]) for v in described["ProductionVariants"])
    deployment, why = specs.deployment_config(settings, instances, rollback_alarms)
    log.info("Rolling %s out as %s; rolls back on %s.", new_name, why, rollback_alarms)
    current = endpoint["EndpointConfigName"]
    if current == new_name:
        return {
            "previous_endpoint_config": sagemaker.tags(new_arn).get(gate.TAG_PREVIOUS_ENDPOINT_CONFIG),
            "deregistered_autoscaling": False,
            "deployment_config": deployment,
        }
    sagemaker.add_tags(new_arn, {gate.TAG_PREVIOUS_ENDPOINT_CONFIG: current})
    old_type = sagemaker.describe_endpoint_config(current)["ProductionVariants"][0]["InstanceType"]
    deregistered = False
    if old_type != settings.endpoint_instance_type:
        autoscaling = ApplicationAutoScalingHook(**_hook_kwargs(settings))
        deregistered = autoscaling.deregister_variant(specs.variant_resource_id(settings.endpoint_name))
        log.info(
            "Instance type %s -> %s: autoscaling deregistered=%s",
            old_type,
            settings.endpoint_instance_type,
            deregistered,
        )
    return {
        "previous_endpoint_config": current,
        "deregistered_autoscaling": deregistered,
        "deployment_config": deployment,
    }


def tag_endpoint(deployed: dict, params: dict | None = None) -> dict[str, str]:
    """AddTags: the endpoint now carries the champion tags of the config it serves."""
    settings = PipelineSettings.from_params(params or {})
    return _sagemaker(settings).copy_champion_tags(
        endpoint_name=deployed["Endpoint"]["EndpointName"],
        endpoint_config_name=deployed["Endpoint"]["EndpointConfigName"],
    )
