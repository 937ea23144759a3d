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

from dog_breed import approval, gate, naming, packaging, registry, specs
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
    static = specs.static_hyperparameters(settings, submit_dir, settings.epochs, serving_export=True)
    hyperparameters = specs.training_hyperparameters(static, best["TunedHyperParameters"], settings.epochs)
    return specs.training_job_request(
        settings,
        training_job_name=names["training_job"],
        training_image_uri=images["training"],
        rule_image_uri=images["debugger_rules"],
        hyperparameters=hyperparameters,
        run_tags={**_run_tags(dag_run), "tuning-job": description["HyperParameterTuningJobName"]},
    )


def model_package_request(
    training: dict, tuning: dict, images: dict, params: dict | None = None, dag_run=None
) -> dict[str, Any]:
    """The registry version of the trained model (multiple outputs: the register operator's
    image_uri, model_url, description and extras). Reads train.py's ``evaluation.json`` from the
    job's ``output.tar.gz`` and writes the per-breed quality report beside ``model.tar.gz``
    (PutObject of the same bytes again on a rerun, so its digest stays what the version says)."""
    from dog_breed.packaging import model_script

    settings = PipelineSettings.from_params(params or {})
    job = training["Training"]
    name, model_url = job["TrainingJobName"], job["ModelArtifacts"]["S3ModelArtifacts"]
    s3 = _s3(settings)
    evaluation_file = model_script("training_telemetry").EVALUATION_FILE
    evaluation = _json_in_archive(s3, registry.output_archive_uri(model_url), evaluation_file, name)
    report = registry.quality_report(
        evaluation, training_job=name, test_data_uri=f"{settings.dataset_s3_uri}/test/"
    )
    payload = registry.report_bytes(report)
    report_uri = registry.report_uri(model_url)
    bucket, key = split_s3_uri(report_uri)
    s3.put_object(Bucket=bucket, Key=key, Body=payload, ContentType=registry.REPORT_CONTENT_TYPE)
    accuracy, loss = registry.report_metrics(report)
    log.info("Quality report of %s at %s: test accuracy %.4f over %d breeds", name, report_uri, accuracy,
             len(report["per_class"]))  # fmt: skip
    metadata = registry.customer_metadata(
        training_job=name,
        tuning_job=tuning["Tuning"]["HyperParameterTuningJobName"],
        dag_id=dag_run.dag_id,
        dag_run_id=dag_run.run_id,
        dataset_s3_uri=settings.dataset_s3_uri,
        test_accuracy=accuracy,
        test_loss=loss,
    )
    return {
        "image_uri": images["inference"],
        "model_url": model_url,
        "description": registry.package_description(name, accuracy, dag_run.run_id),
        "extras": specs.model_package_extras(
            settings,
            inference_image_uri=images["inference"],
            model_data_url=model_url,
            report_uri=report_uri,
            report_digest=registry.content_digest(payload),
            metadata=metadata,
        ),
    }


def _json_in_archive(s3, archive_uri: str, member: str, training_job: str) -> dict[str, Any]:
    import io
    import json
    import tarfile

    bucket, key = split_s3_uri(archive_uri)
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as archive:
        found = next((m for m in archive.getmembers() if m.isfile() and m.name.lstrip("./") == member), None)
        if found is None:
            raise ValueError(f"training job {training_job} left no {member} in {archive_uri}")
        return json.loads(archive.extractfile(found).read())


def _read_json(s3, uri: str) -> dict[str, Any]:
    import json

    bucket, key = split_s3_uri(uri)
    return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def quality_gate(training: dict, registered: dict, params: dict | None = None) -> dict[str, Any]:
    """The registered version against the threshold and the champion (the version behind the
    live endpoint); in ``auto`` mode its verdict is the approval, in ``gate-then-manual`` its
    rejection is. Skips the deploy path when the version is (or becomes) Rejected. A version
    already Approved or Rejected keeps its status: the decision was made."""
    from airflow.sdk.exceptions import AirflowSkipException

    from dog_breed.hooks import describe_or_none

    settings = PipelineSettings.from_params(params or {})
    sagemaker, s3 = _sagemaker(settings), _s3(settings)
    package = sagemaker.describe_model_package(registered["ModelPackage"]["ModelPackageArn"])
    challenger = registry.version_summary(package)
    challenger_report = _read_json(s3, registry.statistics_uri(package))
    endpoint = describe_or_none(sagemaker.describe_endpoint, settings.endpoint_name)
    live_tags = sagemaker.tags(endpoint["EndpointArn"]) if endpoint else {}
    champion_package = _champion_package(sagemaker, live_tags.get(gate.TAG_MODEL_PACKAGE_ARN))
    champion = registry.version_summary(champion_package) if champion_package else None
    champion_report = _champion_report(s3, champion_package) if champion_package else None
    champion_accuracy = champion.test_accuracy if champion else gate.champion_accuracy(live_tags)
    decision = gate.decide(
        gate.final_metric(training["Training"]),
        settings.accuracy_threshold,
        champion_accuracy,
        tolerance=settings.champion_tolerance,
    )
    status = package["ModelApprovalStatus"]
    if status in approval.DECIDED:
        log.info(
            "%s was %s earlier (%s); keeping it",
            challenger.package_arn,
            status,
            package.get("ApprovalDescription"),
        )
    elif verdict := approval.gate_verdict(settings.approval, decision):
        status = verdict
        sagemaker.set_approval(
            challenger.package_arn, status, approval.gate_description(status, decision.reason)
        )
    log.info(
        "Gate: %s; %s is %s (approval: %s)",
        decision.reason,
        challenger.package_arn,
        status,
        settings.approval,
    )
    if status == approval.REJECTED:
        raise AirflowSkipException(f"{challenger.package_arn} is Rejected: quality gate: {decision.reason}")
    comparison = approval.comparison(
        group=settings.model_package_group,
        endpoint=settings.endpoint_name,
        mode=settings.approval,
        decision=decision,
        challenger=challenger,
        champion=champion,
        challenger_report=challenger_report,
        champion_report=champion_report,
    )
    return {**decision.as_dict(), "package_arn": challenger.package_arn, "status": status,
            "mode": settings.approval, "comparison": comparison}  # fmt: skip


def _champion_package(sagemaker, arn: str | None) -> dict | None:
    """DescribeModelPackage of the version behind the live endpoint (None: none, or it is gone)."""
    from dog_breed.hooks import describe_or_none

    if not arn:
        return None
    package = describe_or_none(sagemaker.describe_model_package, arn)
    if package is None:
        log.warning("The live endpoint's model package %s is not in the registry any more", arn)
    return package


def _champion_report(s3, package: dict) -> dict | None:
    """The champion's quality report; None (the review then shows no per-breed changes) if unreadable."""
    uri = registry.statistics_uri(package)
    try:
        return _read_json(s3, uri) if uri else None
    except Exception:
        log.warning("Cannot read the champion's quality report %s", uri, exc_info=True)
        return None


def deploy_configs(training: dict, review: dict, params: dict | None = None, dag_run=None) -> dict[str, Any]:
    """CreateModel (from the approved version), CreateEndpointConfig and CreateEndpoint requests
    (multiple outputs), named after the training job and tagged with its test accuracy and the
    version's ARN."""
    settings = PipelineSettings.from_params(params or {})
    job = training["Training"]
    names = naming.ModelNames.for_training_job(
        dag_run.dag_id, job["TrainingJobName"], settings.endpoint_instance_type
    )
    champion = gate.champion_tags(
        test_accuracy=gate.final_metric(job),
        model_name=names.model,
        training_job=job["TrainingJobName"],
        dag_run=dag_run.run_id,
        model_package_arn=review["package_arn"],
    )
    tags = {**_run_tags(dag_run), **champion}
    return {
        "model": specs.model_request(
            settings, model_name=names.model, model_package_arn=review["package_arn"], run_tags=tags
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
