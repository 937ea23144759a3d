"""``make demo``: the whole dog-breed pipeline offline, really training and really serving.

Generates a small dogImages-layout dataset (or takes ``DOGIMAGES_DIR``), starts
local_aws, uploads the data to its S3, runs ``dog_breed_pipeline`` with ``airflow dags
test`` under a demo profile of Params, and prints what the run produced. Exits non-zero
if any step failed. With ``--runs 2`` the second run is a retraining: its blue/green canary
is watched while it runs and printed as the traffic shares over time, then the final config.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import sys
import threading
import time
from pathlib import Path
from typing import Any

from local_aws.devtools.registry_summary import format_registry, registry_summary
from local_aws.devtools.sandbox import (
    REPO_ROOT,
    SAMPLE_DATA,
    LocalAwsProcess,
    airflow,
    airflow_environment,
    client,
    generate_sample_dataset,
    upload_directory,
)

DAG_ID = "dog_breed_pipeline"
BUCKET = "dog-breed-pipeline"
DATASET_URI = f"s3://{BUCKET}/dogImages"

# Params for a laptop: small images, few epochs, 4 tuning trials 2 at a time, random init
# (pretrained weights cannot be downloaded offline).
DEMO_PROFILE: dict[str, Any] = {
    "dataset_s3_uri": DATASET_URI,
    "artifacts_s3_uri": f"s3://{BUCKET}/artifacts",
    "image_size": 64,
    "pretrained": False,
    "tuning_strategy": "Bayesian",
    "tuning_max_jobs": 4,
    "tuning_max_parallel_jobs": 2,
    "tuning_epochs": 3,
    "batch_sizes": [16, 32],
    "lr_min": 5e-4,
    "lr_max": 5e-3,
    "epochs": 6,
    "accuracy_threshold": 0.9,
    "smoke_test_images": 5,
    # Two instances, so a retraining rolls out as a canary (it may hold at most half of them).
    "autoscaling_min_capacity": 2,
}

# The end-to-end test's profile: the same path through every task, as small as it gets.
TINY_PROFILE: dict[str, Any] = {
    **DEMO_PROFILE,
    "image_size": 32,
    "tuning_max_jobs": 2,
    "tuning_max_parallel_jobs": 2,
    "tuning_epochs": 1,
    "batch_sizes": [16],
    "epochs": 2,
    "accuracy_threshold": 0.0,
    # A tiny model's accuracy is noise: let the retraining run replace it either way.
    "champion_tolerance": 1.0,
    "smoke_test_images": 3,
}


def prepare_dataset(workdir: Path, profile: str) -> Path:
    given = os.environ.get("DOGIMAGES_DIR")
    if given:
        return Path(given)
    return generate_sample_dataset(workdir / "dogImages", profile)


def run_pipeline(workdir: Path, aws_url: str, conf: dict[str, Any], timeout: float) -> dict[str, str]:
    """``airflow dags test`` one run of the DAG; returns the environment it ran with."""
    env = airflow_environment(workdir / "airflow", aws_url)
    log = workdir / "airflow.log"
    airflow(["db", "migrate"], env, timeout=300, log_path=log)
    airflow(["dags", "test", DAG_ID, "-c", json.dumps(conf)], env, timeout=timeout, log_path=log)
    return env


def latest_run_state(env: dict[str, str]) -> tuple[str, str, dict[str, str]]:
    """(run_id, state, {task_id: state}) of the newest run, read from Airflow's metadata database."""
    db = Path(env["AIRFLOW_HOME"]) / "airflow.db"
    with sqlite3.connect(db) as connection:
        run_id, state = connection.execute(
            "SELECT run_id, state FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1", (DAG_ID,)
        ).fetchone()
        tasks = dict(
            connection.execute(
                "SELECT task_id, state FROM task_instance WHERE dag_id = ? AND run_id = ?", (DAG_ID, run_id)
            ).fetchall()
        )
    return run_id, state, tasks


def xcom(env: dict[str, str], run_id: str, task_id: str) -> Any:
    db = Path(env["AIRFLOW_HOME"]) / "airflow.db"
    with sqlite3.connect(db) as connection:
        row = connection.execute(
            "SELECT value FROM xcom WHERE dag_id = ? AND run_id = ? AND task_id = ? AND key = 'return_value'",
            (DAG_ID, run_id, task_id),
        ).fetchone()
    if row is None:
        return None
    value = row[0]
    return json.loads(value) if isinstance(value, str | bytes) else value


def summarize(aws_url: str, conf: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    """What the run produced, read back from local_aws (as one would from AWS) and the run's XComs."""
    sagemaker = client("sagemaker", aws_url)
    autoscaling = client("application-autoscaling", aws_url)
    run_id, run_state, task_states = latest_run_state(env)
    summary: dict[str, Any] = {"run_id": run_id, "run_state": run_state, "tasks": task_states}

    tuning_jobs = sagemaker.list_hyper_parameter_tuning_jobs(SortBy="CreationTime", SortOrder="Descending")
    if tuning_jobs["HyperParameterTuningJobSummaries"]:
        name = tuning_jobs["HyperParameterTuningJobSummaries"][0]["HyperParameterTuningJobName"]
        tuning = sagemaker.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)
        best = tuning.get("BestTrainingJob", {})
        summary["tuning"] = {
            "job": name,
            "status": tuning["HyperParameterTuningJobStatus"],
            "trials": tuning["TrainingJobStatusCounters"],
            "best_training_job": best.get("TrainingJobName"),
            "best_hyperparameters": best.get("TunedHyperParameters"),
            "best_objective": best.get("FinalHyperParameterTuningJobObjectiveMetric"),
        }

    newest_first = sagemaker.list_training_jobs(SortBy="CreationTime", SortOrder="Descending")
    for job in newest_first["TrainingJobSummaries"]:
        described = sagemaker.describe_training_job(TrainingJobName=job["TrainingJobName"])
        if "TuningJobArn" in described:
            continue
        metrics = {m["MetricName"]: round(m["Value"], 4) for m in described.get("FinalMetricDataList", [])}
        summary["training"] = {
            "job": described["TrainingJobName"],
            "status": described["TrainingJobStatus"],
            "instances": described["ResourceConfig"]["InstanceCount"],
            "seconds": described.get("TrainingTimeInSeconds"),
            "test_accuracy": metrics.get("test:accuracy"),
            "metrics": metrics,
            "debugger_rules": {
                r["RuleConfigurationName"]: r["RuleEvaluationStatus"]
                for r in described.get("DebugRuleEvaluationStatuses", [])
                + described.get("ProfilerRuleEvaluationStatuses", [])
            },
        }
        break

    endpoint_name = conf.get("endpoint_name", "dog-breed-classifier")
    try:
        endpoint = sagemaker.describe_endpoint(EndpointName=endpoint_name)
        summary["endpoint"] = {
            "name": endpoint_name,
            "status": endpoint["EndpointStatus"],
            "config": endpoint["EndpointConfigName"],
            "instances": [v.get("CurrentInstanceCount") for v in endpoint.get("ProductionVariants", [])],
        }
        policies = autoscaling.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"]
        summary["autoscaling"] = [
            {
                "resource": p["ResourceId"],
                "policy": p["PolicyName"],
                "target": p["TargetTrackingScalingPolicyConfiguration"]["TargetValue"],
                "metric": p["TargetTrackingScalingPolicyConfiguration"]
                .get("PredefinedMetricSpecification", {})
                .get("PredefinedMetricType"),
                "scale_out_cooldown": p["TargetTrackingScalingPolicyConfiguration"].get("ScaleOutCooldown"),
                "scale_in_cooldown": p["TargetTrackingScalingPolicyConfiguration"].get("ScaleInCooldown"),
            }
            for p in policies
            if endpoint_name in p["ResourceId"]
        ]
    except sagemaker.exceptions.ClientError as error:
        summary["endpoint"] = {"name": endpoint_name, "error": str(error)}

    summary["rollout"] = rollout_summary(aws_url, endpoint_name)
    summary["smoke_test"] = xcom(env, run_id, "smoke_test")
    group = conf.get("model_package_group", "dog-breed-classifier")
    summary["registry"] = registry_summary(sagemaker, group, endpoint_name)
    return summary


def rollout_summary(aws_url: str, endpoint_name: str) -> dict[str, Any]:
    """How the endpoint's last update rolled out and what watches it: the routing, the rollback
    alarms and their states, and the failure reason if SageMaker rolled it back."""
    try:
        endpoint = client("sagemaker", aws_url).describe_endpoint(EndpointName=endpoint_name)
    except Exception as error:  # no endpoint yet: nothing rolled out
        return {"error": str(error)}
    deployment = endpoint.get("LastDeploymentConfig") or {}
    routing = deployment.get("BlueGreenUpdatePolicy", {}).get("TrafficRoutingConfiguration")
    names = [a["AlarmName"] for a in deployment.get("AutoRollbackConfiguration", {}).get("Alarms", [])]
    alarms = client("cloudwatch", aws_url).describe_alarms(AlarmNames=names)["MetricAlarms"] if names else []
    return {
        "routing": routing or "none yet (the first deployment is CreateEndpoint, no canary)",
        "rollback_alarms": {a["AlarmName"]: a["StateValue"] for a in alarms},
        "failure_reason": endpoint.get("FailureReason"),
    }


class RolloutWatch:
    """DescribeEndpoint sampled in a thread while a run deploys: one line per change of the
    endpoint's status, configs, the share of traffic on the new fleet or the rollout's phase."""

    def __init__(self, aws_url: str, endpoint_name: str, interval: float = 0.25):
        self._sagemaker = client("sagemaker", aws_url)
        self._endpoint = endpoint_name
        self._interval = interval
        self._stop = threading.Event()
        self._started = time.monotonic()
        self.timeline: list[dict[str, Any]] = []
        self._thread = threading.Thread(target=self._watch, name="rollout-watch", daemon=True)

    def __enter__(self) -> RolloutWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _watch(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                endpoint = self._sagemaker.describe_endpoint(EndpointName=self._endpoint)
            except self._sagemaker.exceptions.ClientError:  # not created yet
                continue
            pending = endpoint.get("PendingDeploymentSummary") or {}
            variant = (pending.get("ProductionVariants") or [{}])[0]
            status = (variant.get("VariantStatus") or [{}])[0]
            sample = {
                "status": endpoint["EndpointStatus"],
                "live_config": endpoint.get("EndpointConfigName"),
                "new_config": pending.get("EndpointConfigName"),
                "new_fleet_share": round(float(variant.get("CurrentWeight") or 0.0), 3) if pending else None,
                "phase": status.get("StatusMessage") or status.get("Status"),
            }
            if not self.timeline or {k: v for k, v in self.timeline[-1].items() if k != "seconds"} != sample:
                self.timeline.append({"seconds": round(time.monotonic() - self._started, 1), **sample})

    def lines(self) -> list[str]:
        out = []
        for point in self.timeline:
            share = (
                ""
                if point["new_fleet_share"] is None
                else f"{point['new_fleet_share']:.0%} on the new fleet, "
            )
            phase = f" ({point['phase']})" if point["phase"] else ""
            out.append(
                f"+{point['seconds']:6.1f} s  {point['status']:<11} {share}live {point['live_config']}{phase}"
            )
        return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local_aws.devtools.demo", description=__doc__)
    parser.add_argument("--workdir", default=str(REPO_ROOT / ".demo"))
    parser.add_argument("--profile", choices=sorted(SAMPLE_DATA), default="demo")
    parser.add_argument("--runs", type=int, default=1, help="2 shows retraining update the endpoint")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds allowed for each DAG run")
    args = parser.parse_args(argv)

    workdir = Path(args.workdir).resolve()
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    conf = DEMO_PROFILE if args.profile == "demo" else TINY_PROFILE
    started = time.monotonic()
    print(f"[demo] workdir {workdir}", flush=True)
    dataset = prepare_dataset(workdir, args.profile)
    with LocalAwsProcess(workdir / "local_aws") as aws:
        print(f"[demo] local_aws on {aws.url}; uploading {dataset}", flush=True)
        count = upload_directory(aws.url, dataset, conf["dataset_s3_uri"])
        print(f"[demo] {count} images in {conf['dataset_s3_uri']}", flush=True)
        failed = False
        endpoint_name = conf.get("endpoint_name", "dog-breed-classifier")
        for run in range(1, args.runs + 1):
            print(f"[demo] run {run}: airflow dags test {DAG_ID}; log in {workdir}", flush=True)
            with RolloutWatch(aws.url, endpoint_name) as watch:
                try:
                    env = run_pipeline(workdir, aws.url, conf, args.timeout)
                except Exception as error:  # still print what was reached
                    print(f"[demo] run {run} failed: {error}", file=sys.stderr, flush=True)
                    env = airflow_environment(workdir / "airflow", aws.url)
            summary = summarize(aws.url, conf, env)
            print(json.dumps(summary, indent=2, default=str), flush=True)
            print(format_registry(summary["registry"]), flush=True)
            if run > 1:
                print(f"[demo] run {run}'s rollout of {endpoint_name}, traffic over time:", flush=True)
                for line in watch.lines():
                    print(f"[demo]   {line}", flush=True)
                final = summary.get("endpoint", {})
                print(
                    f"[demo] final: {final.get('status')} on {final.get('config')}; {summary['rollout']}",
                    flush=True,
                )
            failed = failed or summary["run_state"] != "success"
    print(f"[demo] {'FAILED' if failed else 'done'} in {time.monotonic() - started:.0f} s", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
