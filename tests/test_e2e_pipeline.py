"""The whole DAG offline: ``airflow dags test`` against local_aws with the tiny profile.

One finished run is shared by every test here (a DAG run costs minutes):

* the first run succeeds end to end: tuning, training with test accuracy, version 1 in the
  model registry approved by the quality gate (``approval: auto``) and deployed from the
  package, an InService endpoint with its scaling policy, the smoke test through the Lambda;
* every task of that run, re-run with ``airflow tasks test <dag> <task> <run_id>``,
  succeeds and creates nothing new (jobs, models, endpoint configs, endpoints, Lambda
  versions and aliases, scaling targets and policies, roles are counted before and after);
* ``airflow dags test`` on the same logical date again (a retraining, as the schedule would
  start) succeeds, registers version 2, updates the one endpoint in place to a new config
  serving it through a blue/green canary watched by the rollback alarms (watched while it
  runs), and loses nothing;
* a run whose training data makes train.py crash fails before anything is deployed, and
  the live endpoint keeps its config, its status and its answers.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from local_aws.devtools import demo
from local_aws.devtools.registry_summary import registry_summary
from local_aws.devtools.sandbox import LocalAwsProcess, airflow, client, rerun_tasks, upload_directory

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(3000)]

CONF = demo.TINY_PROFILE
ENDPOINT = CONF.get("endpoint_name", "dog-breed-classifier")
GROUP = CONF.get("model_package_group", "dog-breed-classifier")
LIVE_PACKAGE_TAG = "dog-breed:model-package-arn"
CORRUPT_DATASET_URI = f"s3://{demo.BUCKET}/corrupt-dogImages"


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("e2e")
    dataset = demo.prepare_dataset(workdir, "tiny")
    with LocalAwsProcess(workdir / "local_aws") as aws:
        upload_directory(aws.url, dataset, CONF["dataset_s3_uri"])
        env = demo.run_pipeline(workdir, aws.url, CONF, timeout=1200)
        summary = demo.summarize(aws.url, CONF, env)
        yield {
            "url": aws.url,
            "env": env,
            "run_id": summary["run_id"],
            "summary": summary,
            "workdir": workdir,
            "dataset": dataset,
        }


def test_first_run_succeeds_end_to_end(finished_run):
    summary = finished_run["summary"]
    assert summary["run_state"] == "success", summary["tasks"]
    assert set(summary["tasks"].values()) == {"success"}, summary["tasks"]


def test_tuning_ran_every_trial_and_found_a_best_one(finished_run):
    tuning = finished_run["summary"]["tuning"]
    assert tuning["status"] == "Completed"
    assert tuning["trials"]["Completed"] == CONF["tuning_max_jobs"]
    assert tuning["best_hyperparameters"]


def test_final_training_reports_test_accuracy(finished_run):
    training = finished_run["summary"]["training"]
    assert training["status"] == "Completed"
    assert 0.0 <= training["test_accuracy"] <= 1.0


def test_endpoint_serves_and_scales(finished_run):
    summary = finished_run["summary"]
    assert summary["endpoint"]["status"] == "InService"
    assert summary["endpoint"]["instances"] == [CONF["autoscaling_min_capacity"]]
    (policy,) = summary["autoscaling"]
    assert policy["metric"] == "SageMakerVariantInvocationsPerInstance"
    assert (policy["scale_out_cooldown"], policy["scale_in_cooldown"]) == (30, 120)
    (described,) = client("application-autoscaling", finished_run["url"]).describe_scaling_policies(
        ServiceNamespace="sagemaker"
    )["ScalingPolicies"]
    kinds = sorted(
        kind
        for a in described["Alarms"]
        for kind in ("AlarmHigh", "AlarmLow")
        if f"-{kind}-" in a["AlarmName"]
    )
    assert kinds == ["AlarmHigh", "AlarmLow"]  # target tracking's two alarms


def test_the_first_deployment_has_no_canary_but_its_rollback_alarms_exist(finished_run):
    rollout = finished_run["summary"]["rollout"]
    assert str(rollout["routing"]).startswith("none yet")  # CreateEndpoint: nothing to shift from
    alarms = client("cloudwatch", finished_run["url"]).describe_alarms(
        AlarmNamePrefix=f"{ENDPOINT}/rollback/"
    )
    assert sorted(a["AlarmName"] for a in alarms["MetricAlarms"]) == [
        f"{ENDPOINT}/rollback/AllTraffic/4xx-share", f"{ENDPOINT}/rollback/AllTraffic/5xx-errors",
        f"{ENDPOINT}/rollback/AllTraffic/model-latency-p99",
    ]  # fmt: skip


def test_smoke_test_went_through_the_lambda_to_the_model(finished_run):
    smoke = finished_run["summary"]["smoke_test"]
    assert smoke["images"] == CONF["smoke_test_images"] and not smoke["problems"]
    assert smoke["runtime"] == "openvino-int8"  # model_fn's default where OpenVINO is installed
    assert len(smoke["predictions"]) == CONF["smoke_test_images"]


def test_the_model_is_registered_approved_by_the_gate_and_deployed_from_its_package(finished_run):
    registry = finished_run["summary"]["registry"]
    (version,) = registry["versions"]
    assert (version["version"], version["status"], version["live"]) == (1, "Approved", True), registry
    assert version["approval"].startswith("Approved by the quality gate: test accuracy")
    assert version["test_accuracy"] == pytest.approx(
        finished_run["summary"]["training"]["test_accuracy"], abs=1e-4
    )
    sagemaker = client("sagemaker", finished_run["url"])
    package = sagemaker.describe_model_package(ModelPackageName=version["arn"])
    assert (
        package["CustomerMetadataProperties"]["TrainingJobName"] == finished_run["summary"]["training"]["job"]
    )
    assert package["CustomerMetadataProperties"]["DagRunId"] == finished_run["run_id"]
    report_uri = package["ModelMetrics"]["ModelQuality"]["Statistics"]["S3Uri"]
    bucket, key = report_uri[len("s3://") :].split("/", 1)
    report = json.loads(client("s3", finished_run["url"]).get_object(Bucket=bucket, Key=key)["Body"].read())
    assert len(report["per_class"]) == demo.SAMPLE_DATA["tiny"]["classes"]
    assert key.endswith("/output/model-quality.json")
    endpoint = sagemaker.describe_endpoint(EndpointName=ENDPOINT)
    config = sagemaker.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    model = sagemaker.describe_model(ModelName=config["ProductionVariants"][0]["ModelName"])
    assert model["PrimaryContainer"]["ModelPackageName"] == version["arn"]
    for arn in (endpoint["EndpointArn"], config["EndpointConfigArn"]):
        tags = {t["Key"]: t["Value"] for t in sagemaker.list_tags(ResourceArn=arn)["Tags"]}
        assert tags[LIVE_PACKAGE_TAG] == version["arn"], arn


def resource_counts(url: str) -> dict[str, Any]:
    """What the pipeline creates, as names per kind (so a duplicate shows up by name)."""
    sagemaker, lam = client("sagemaker", url), client("lambda", url)
    autoscaling, iam = client("application-autoscaling", url), client("iam", url)
    functions = [f["FunctionName"] for f in lam.list_functions()["Functions"]]
    return {
        "tuning_jobs": sorted(
            j["HyperParameterTuningJobName"]
            for j in sagemaker.list_hyper_parameter_tuning_jobs(MaxResults=100)[
                "HyperParameterTuningJobSummaries"
            ]
        ),
        "training_jobs": sorted(
            j["TrainingJobName"] for j in sagemaker.list_training_jobs(MaxResults=100)["TrainingJobSummaries"]
        ),
        "models": sorted(m["ModelName"] for m in sagemaker.list_models(MaxResults=100)["Models"]),
        "endpoint_configs": sorted(
            c["EndpointConfigName"]
            for c in sagemaker.list_endpoint_configs(MaxResults=100)["EndpointConfigs"]
        ),
        "endpoints": sorted(e["EndpointName"] for e in sagemaker.list_endpoints(MaxResults=100)["Endpoints"]),
        "lambda_functions": sorted(functions),
        "lambda_versions": sorted(
            f"{name}:{v['Version']}"
            for name in functions
            for v in lam.list_versions_by_function(FunctionName=name)["Versions"]
        ),
        "lambda_aliases": sorted(
            f"{name}:{a['Name']}->{a['FunctionVersion']}"
            for name in functions
            for a in lam.list_aliases(FunctionName=name)["Aliases"]
        ),
        "scalable_targets": sorted(
            t["ResourceId"]
            for t in autoscaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
        ),
        "scaling_policies": sorted(
            p["PolicyName"]
            for p in autoscaling.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"]
        ),
        "roles": sorted(r["RoleName"] for r in iam.list_roles()["Roles"]),
        "model_packages": sorted(
            p["ModelPackageArn"]
            for page in sagemaker.get_paginator("list_model_packages").paginate(ModelPackageGroupName=GROUP)
            for p in page["ModelPackageSummaryList"]
        ),
        "alarms": sorted(a["AlarmName"] for a in client("cloudwatch", url).describe_alarms()["MetricAlarms"]),
    }


def dag_task_ids(env: dict[str, str]) -> list[str]:
    """The DAG's tasks in dependency order, as the finished run recorded them."""
    db = Path(env["AIRFLOW_HOME"]) / "airflow.db"
    with sqlite3.connect(db) as connection:
        rows = connection.execute(
            "SELECT task_id FROM task_instance WHERE dag_id = ? ORDER BY start_date", (demo.DAG_ID,)
        ).fetchall()
    ordered: list[str] = []
    for (task_id,) in rows:
        if task_id not in ordered:
            ordered.append(task_id)
    return ordered


def logical_date_of(env: dict[str, str], run_id: str) -> str:
    db = Path(env["AIRFLOW_HOME"]) / "airflow.db"
    with sqlite3.connect(db) as connection:
        (logical_date,) = connection.execute(
            "SELECT logical_date FROM dag_run WHERE dag_id = ? AND run_id = ?", (demo.DAG_ID, run_id)
        ).fetchone()
    return str(logical_date)


def good_prediction(url: str) -> str:
    from bad_input_corpus import good_jpeg

    answer = client("sagemaker-runtime", url).invoke_endpoint(
        EndpointName=ENDPOINT, ContentType="image/jpeg", Body=good_jpeg()
    )
    return json.loads(answer["Body"].read())["predictions"][0]["class_folder"]


def test_rerunning_each_task_of_a_finished_run_creates_nothing_new(finished_run):
    url, env, run_id = finished_run["url"], finished_run["env"], finished_run["run_id"]
    before = resource_counts(url)
    log = finished_run["workdir"] / "reruns.log"
    failed = rerun_tasks(demo.DAG_ID, run_id, dag_task_ids(env), env, timeout=1800, log_path=log)
    assert not failed, "re-running these tasks failed:\n" + "\n".join(f"{t}: {r}" for t, r in failed.items())
    after = resource_counts(url)
    assert after == before, {k: (before[k], after[k]) for k in before if before[k] != after[k]}
    assert client("sagemaker", url).describe_endpoint(EndpointName=ENDPOINT)["EndpointStatus"] == "InService"


# Resources of which the pipeline keeps exactly one, whatever the number of runs.
SINGLETONS = (
    "endpoints",
    "lambda_functions",
    "lambda_aliases",
    "scalable_targets",
    "scaling_policies",
    "roles",
    "alarms",  # the rollback alarms and target tracking's: put again, never duplicated
)
# Resources a run creates under names derived from its run_id.
PER_RUN = ("tuning_jobs", "training_jobs", "models", "endpoint_configs", "lambda_versions", "model_packages")


def test_triggering_the_same_logical_date_again_retrains_in_place(finished_run):
    """``airflow dags test`` on an existing logical date replaces that run with a new run_id.
    Safe means: it succeeds, keeps one of every singleton, loses nothing earlier runs made,
    and the endpoint ends InService and answering. (Names derive from the run_id, so the
    new run trains again under new names; the test prints what it added.)"""
    url, env, run_id = finished_run["url"], finished_run["env"], finished_run["run_id"]
    before = resource_counts(url)
    config_before = client("sagemaker", url).describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"]
    log = finished_run["workdir"] / "same_date.log"
    with demo.RolloutWatch(url, ENDPOINT) as watch:
        airflow(
            ["dags", "test", demo.DAG_ID, logical_date_of(env, run_id), "-c", json.dumps(CONF)],
            env,
            timeout=1200,
            log_path=log,
        )
    print("\nthe retraining's rollout:\n  " + "\n  ".join(watch.lines()))
    _, state, tasks = demo.latest_run_state(env)
    assert state == "success", tasks
    after = resource_counts(url)
    for kind in SINGLETONS:
        assert after[kind] == before[kind], (kind, before[kind], after[kind])
    for kind in PER_RUN:
        assert set(before[kind]) <= set(after[kind]), f"{kind} lost: {set(before[kind]) - set(after[kind])}"
    added = {kind: sorted(set(after[kind]) - set(before[kind])) for kind in PER_RUN}
    print(f"\nre-triggering logical date {logical_date_of(env, demo.latest_run_state(env)[0])} added {added}")
    endpoint = client("sagemaker", url).describe_endpoint(EndpointName=ENDPOINT)
    assert endpoint["EndpointStatus"] == "InService"
    # The retrained model replaced the live one in place: same endpoint, new config, by a canary.
    assert endpoint["EndpointConfigName"] != config_before
    assert good_prediction(url)
    # ... as version 2 of the registry, approved by the gate and now the live one.
    registry = registry_summary(client("sagemaker", url), GROUP, ENDPOINT)
    assert [(v["version"], v["status"], v["live"]) for v in registry["versions"]] == [
        (1, "Approved", False),
        (2, "Approved", True),
    ], registry
    routing = endpoint["LastDeploymentConfig"]["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]
    assert routing["Type"] == "CANARY"
    alarms = endpoint["LastDeploymentConfig"]["AutoRollbackConfiguration"]["Alarms"]
    assert {a["AlarmName"] for a in alarms} == {
        a for a in after["alarms"] if a.startswith(f"{ENDPOINT}/rollback/")
    }
    canary = [p for p in watch.timeline if p["new_fleet_share"] == 0.5 and p["status"] == "Updating"]
    assert canary, f"the canary step was never seen: {watch.lines()}"
    assert watch.timeline[-1]["live_config"] == endpoint["EndpointConfigName"]


def test_an_injected_training_failure_fails_the_run_before_deploying(finished_run):
    """Injected through data, not code: every training image is garbage, so train.py exits
    non-zero in each trial. The run must fail before create_model and leave the endpoint be."""
    url, env = finished_run["url"], finished_run["env"]
    corrupt = finished_run["workdir"] / "corrupt-dogImages"
    shutil.copytree(finished_run["dataset"], corrupt)
    for image in (corrupt / "train").rglob("*.jpg"):
        image.write_bytes(b"not a jpeg, a training failure injected through the data")
    upload_directory(url, corrupt, CORRUPT_DATASET_URI)

    sagemaker = client("sagemaker", url)
    live_config = sagemaker.describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"]
    answer_before = good_prediction(url)
    before = resource_counts(url)

    conf = {**CONF, "dataset_s3_uri": CORRUPT_DATASET_URI}
    log = finished_run["workdir"] / "injected_failure.log"
    with pytest.raises(RuntimeError):
        airflow(["dags", "test", demo.DAG_ID, "-c", json.dumps(conf)], env, timeout=1200, log_path=log)
    _, state, tasks = demo.latest_run_state(env)
    assert state == "failed", tasks
    deploying = ["create_model", "create_endpoint_config", "deploy_endpoint", "deploy_lambda", "smoke_test"]
    assert all(tasks.get(task) != "success" for task in deploying), tasks

    after = resource_counts(url)
    for kind in (
        "models",
        "endpoint_configs",
        "endpoints",
        "lambda_versions",
        "lambda_aliases",
        "model_packages",
    ):
        assert after[kind] == before[kind], (kind, before[kind], after[kind])
    endpoint = sagemaker.describe_endpoint(EndpointName=ENDPOINT)
    assert (endpoint["EndpointConfigName"], endpoint["EndpointStatus"]) == (live_config, "InService")
    assert good_prediction(url) == answer_before
