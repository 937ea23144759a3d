"""``make demo``: the whole dog-breed pipeline offline, really training and really serving.

Generates a small dogImages-layout dataset (or takes ``DOGIMAGES_DIR``), starts
local_aws, uploads the data to its S3, runs ``dog_breed_pipeline`` with ``airflow dags
test`` under a demo profile of Params, and shows its progress while it runs (each task's
state, the tuning trials, the training job's epochs, the endpoint coming up) and a few tables
of what the run produced at the end, with the whole summary as JSON in a file. Exits non-zero
if any step failed. With ``--runs 2`` the second run is a retraining: its blue/green canary
is watched while it runs and shown as the traffic shares over time, then the final config.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sqlite3
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from local_aws.devtools import demo_display as display
from local_aws.devtools.registry_summary import registry_summary
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
from local_aws.devtools.terminal import Terminal

DAG_ID = "dog_breed_pipeline"
BUCKET = "dog-breed-pipeline"
DATASET_URI = f"s3://{BUCKET}/dogImages"
TRAINING_LOG_GROUP = "/aws/sagemaker/TrainingJobs"
# Set by `make demo`: seconds its set-up (the venv install) took before the demo started.
SETUP_SECONDS_ENV = "DEMO_SETUP_SECONDS"
FINISHED = {"Completed", "Failed", "Stopped"}

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


def _metadata_db(env: dict[str, str]) -> sqlite3.Connection:
    """Airflow's metadata database, read-only (never creates it before ``airflow db migrate``)."""
    db = Path(env["AIRFLOW_HOME"]) / "airflow.db"
    return sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)


def latest_run_state(env: dict[str, str]) -> tuple[str, str, dict[str, str]]:
    """(run_id, state, {task_id: state}) of the newest run, read from Airflow's metadata database;
    tasks upstream first (by priority weight, which sums downstream tasks)."""
    with _metadata_db(env) as connection:
        run_id, state = connection.execute(
            "SELECT run_id, state FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1", (DAG_ID,)
        ).fetchone()
        tasks = dict(
            connection.execute(
                "SELECT task_id, state FROM task_instance WHERE dag_id = ? AND run_id = ?"
                " ORDER BY priority_weight DESC, task_id",
                (DAG_ID, run_id),
            ).fetchall()
        )
    return run_id, state, tasks


def run_durations(env: dict[str, str], run_id: str) -> tuple[float | None, list[dict[str, Any]]]:
    """The run's wall time and each task's (start to end, deferrals included), in seconds."""
    with _metadata_db(env) as connection:
        connection.create_function("seconds", 2, _seconds_between, deterministic=True)
        (dag_seconds,) = connection.execute(
            "SELECT seconds(start_date, end_date) FROM dag_run WHERE dag_id = ? AND run_id = ?",
            (DAG_ID, run_id),
        ).fetchone()
        rows = connection.execute(
            "SELECT task_id, state, seconds(start_date, end_date) FROM task_instance"
            " WHERE dag_id = ? AND run_id = ? ORDER BY start_date",
            (DAG_ID, run_id),
        ).fetchall()
    return dag_seconds, [{"task": task, "state": state, "seconds": took} for task, state, took in rows]


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


def _seconds_between(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    return round((datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds(), 1)


def summarize(aws_url: str, conf: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    """What the run produced, read back from local_aws (as one would from AWS) and the run's XComs."""
    sagemaker = client("sagemaker", aws_url)
    autoscaling = client("application-autoscaling", aws_url)
    logs = client("logs", aws_url)
    run_id, run_state, task_states = latest_run_state(env)
    dag_seconds, task_durations = run_durations(env, run_id)
    summary: dict[str, Any] = {
        "run_id": run_id,
        "run_state": run_state,
        "dag_seconds": dag_seconds,
        "tasks": task_states,
        "task_durations": task_durations,
    }

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
            "trials_detail": [_trial(t, logs) for t in tuning_trials(sagemaker, name)],
        }

    newest_first = sagemaker.list_training_jobs(SortBy="CreationTime", SortOrder="Descending")
    for job in newest_first["TrainingJobSummaries"]:
        described = sagemaker.describe_training_job(TrainingJobName=job["TrainingJobName"])
        if "TuningJobArn" in described:
            continue
        metrics = {m["MetricName"]: round(m["Value"], 4) for m in described.get("FinalMetricDataList", [])}
        log_text = job_log(logs, described["TrainingJobName"])
        summary["training"] = {
            "job": described["TrainingJobName"],
            "status": described["TrainingJobStatus"],
            "instances": described["ResourceConfig"]["InstanceCount"],
            "seconds": described.get("TrainingTimeInSeconds"),
            "test_accuracy": metrics.get("test:accuracy"),
            "epochs": len(display.parse_epochs(log_text)),
            "timings": parse_timings(log_text),
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


def tuning_trials(sagemaker: Any, tuning_job: str) -> list[dict[str, Any]]:
    """ListTrainingJobsForHyperParameterTuningJob, every page, oldest trial first."""
    pages = sagemaker.get_paginator("list_training_jobs_for_hyper_parameter_tuning_job").paginate(
        HyperParameterTuningJobName=tuning_job
    )
    trials = [t for page in pages for t in page["TrainingJobSummaries"]]
    return sorted(trials, key=lambda t: t["CreationTime"])


def _trial(trial: dict[str, Any], logs: Any) -> dict[str, Any]:
    started, ended = trial.get("TrainingStartTime"), trial.get("TrainingEndTime")
    objective = trial.get("FinalHyperParameterTuningJobObjectiveMetric") or {}
    return {
        "job": trial["TrainingJobName"],
        "status": trial["TrainingJobStatus"],
        "hyperparameters": trial.get("TunedHyperParameters"),
        "objective": objective.get("Value"),
        "seconds": round((ended - started).total_seconds(), 1) if started and ended else None,
        "timings": parse_timings(job_log(logs, trial["TrainingJobName"])),
    }


def job_log(logs: Any, job_name: str) -> str:
    """The job's first instance's log (``<job>/algo-1-<epoch>``) from CloudWatch Logs, as AWS keeps it."""
    try:
        streams = logs.describe_log_streams(
            logGroupName=TRAINING_LOG_GROUP, logStreamNamePrefix=f"{job_name}/"
        )
    except logs.exceptions.ResourceNotFoundException:  # no job has logged yet
        return ""
    names = sorted(s["logStreamName"] for s in streams["logStreams"])
    if not names:
        return ""
    lines: list[str] = []
    token = None
    while True:
        page = logs.get_log_events(
            logGroupName=TRAINING_LOG_GROUP, logStreamName=names[0], startFromHead=True,
            **({"nextToken": token} if token else {}),
        )  # fmt: skip
        lines += [event["message"] for event in page["events"]]
        if not page["events"] or page.get("nextForwardToken") == token:
            return "\n".join(lines)
        token = page["nextForwardToken"]


def parse_timings(log_text: str) -> dict[str, float]:
    from local_aws.services.sagemaker.training.telemetry import parse_timings as parse

    return {phase: round(seconds, 1) for phase, seconds in parse(log_text).items()}


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
        return [display.rollout_line(point) for point in self.timeline]

    def latest(self) -> dict[str, Any] | None:
        return self.timeline[-1] if self.timeline else None


class DemoProgress:
    """What a run is doing, polled in a thread while the main thread runs the DAG: each task's
    state from Airflow's metadata database, and through the AWS APIs the tuning trials, the
    final training job's epochs (its log) and the endpoint (the canary's share from ``rollout``).
    A line per change, through ``terminal`` (a live table on a terminal, plain lines otherwise)."""

    def __init__(
        self, terminal: Terminal, env: dict[str, str], aws_url: str, endpoint_name: str,
        rollout: RolloutWatch | None = None, interval: float = 1.0,
    ):  # fmt: skip
        self.terminal = terminal
        self._env = env
        self._sagemaker = client("sagemaker", aws_url)
        self._logs = client("logs", aws_url)
        self._endpoint = endpoint_name
        self._rollout = rollout
        self._interval = interval
        self._since = datetime.now(UTC)
        self._previous_run = self._run_state()[0]
        self.tasks: dict[str, str | None] = {}
        self.lines: dict[str, str] = {}
        self._finished: set[str] = set()  # tuning, training: nothing more to poll
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="demo-progress", daemon=True)

    def __enter__(self) -> DemoProgress:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        self._poll_once()  # the final states

    def panel(self) -> Any:
        return display.status_panel(self.tasks, list(self.lines.values()), self.terminal.elapsed())

    def _watch(self) -> None:
        while not self._stop.wait(self._interval):
            self._poll_once()

    def _poll_once(self) -> None:
        try:
            self.poll()
        except Exception as error:  # progress is best effort; the run goes on
            self._show("progress", f"progress: {type(error).__name__}: {error}")

    def poll(self) -> None:
        run_id, tasks = self._run_state()
        if run_id is not None and run_id != self._previous_run:
            for line in display.task_changes(self.tasks, tasks):
                self.terminal.line(line)
            self.tasks = tasks
        self._poll_tuning()
        self._poll_training()
        self._poll_endpoint()

    def _run_state(self) -> tuple[str | None, dict[str, str | None]]:
        try:
            run_id, _, tasks = latest_run_state(self._env)
        except (sqlite3.Error, TypeError):  # no database or no run yet
            return None, {}
        return run_id, tasks

    def _show(self, key: str, line: str) -> None:
        if self.lines.get(key) != line:
            self.lines = {**self.lines, key: line}
            self.terminal.line(line)

    def _newest(self, listing: str, summaries: str, name_key: str) -> str | None:
        found = getattr(self._sagemaker, listing)(
            SortBy="CreationTime", SortOrder="Descending", MaxResults=10
        )
        for item in found[summaries]:
            if item["CreationTime"] >= self._since:
                return item[name_key]
        return None

    def _poll_tuning(self) -> None:
        if "tuning" in self._finished:
            return
        name = self._newest("list_hyper_parameter_tuning_jobs", "HyperParameterTuningJobSummaries",
                            "HyperParameterTuningJobName")  # fmt: skip
        if name:
            tuning = self._sagemaker.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)
            self._show("tuning", display.tuning_line(tuning, tuning_trials(self._sagemaker, name)))
            if tuning["HyperParameterTuningJobStatus"] in FINISHED:
                self._finished.add("tuning")

    def _poll_training(self) -> None:
        if "training" in self._finished:
            return
        found = self._sagemaker.list_training_jobs(
            SortBy="CreationTime", SortOrder="Descending", MaxResults=10
        )
        for item in found["TrainingJobSummaries"]:
            if item["CreationTime"] < self._since:
                break
            job = self._sagemaker.describe_training_job(TrainingJobName=item["TrainingJobName"])
            if "TuningJobArn" not in job:  # the final training job, not a trial
                epochs = display.parse_epochs(job_log(self._logs, job["TrainingJobName"]))
                self._show("training", display.training_line(job, epochs))
                if job["TrainingJobStatus"] in FINISHED:
                    self._finished.add("training")
                return

    def _poll_endpoint(self) -> None:
        if "training" not in self.lines:
            return  # nothing to deploy yet (a retraining's endpoint is the previous run's until then)
        try:
            endpoint = self._sagemaker.describe_endpoint(EndpointName=self._endpoint)
        except self._sagemaker.exceptions.ClientError:  # not created yet
            return
        latest = self._rollout.latest() if self._rollout else None
        self._show("endpoint", display.endpoint_line(endpoint, latest))


def serve_until_interrupted(terminal: Terminal, aws: LocalAwsProcess, conf: dict[str, Any]) -> None:
    """What the run left (registry, endpoint, Lambda, alarms) stays readable by any AWS client."""
    group = conf.get("model_package_group", "dog-breed-classifier")
    terminal.line(
        f"local_aws keeps serving on {aws.url} (Ctrl-C ends it); for example:\n"
        f"  AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local aws --region us-east-1 "
        f"--endpoint-url {aws.url} sagemaker list-model-packages --model-package-group-name {group}"
    )
    try:
        while aws.running:
            time.sleep(1)
    except KeyboardInterrupt:
        terminal.line("stopping local_aws")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local_aws.devtools.demo", description=__doc__)
    parser.add_argument("--workdir", default=str(REPO_ROOT / ".demo"))
    parser.add_argument("--profile", choices=sorted(SAMPLE_DATA), default="demo")
    parser.add_argument("--runs", type=int, default=1, help="2 shows retraining update the endpoint")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds allowed for each DAG run")
    parser.add_argument(
        "--serve", action="store_true", help="then keep local_aws up for the AWS CLI (Ctrl-C ends)"
    )
    args = parser.parse_args(argv)

    terminal = Terminal()
    workdir = Path(args.workdir).resolve()
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    conf = DEMO_PROFILE if args.profile == "demo" else TINY_PROFILE
    setup = os.environ.get(SETUP_SECONDS_ENV)
    if setup:
        terminal.line(f"set-up (make demo's venv install) took {float(setup):.0f} s")
    terminal.line(f"workdir {workdir}")
    dataset = prepare_dataset(workdir, args.profile)
    with LocalAwsProcess(workdir / "local_aws") as aws:
        terminal.line(f"local_aws on {aws.url}; uploading {dataset}")
        count = upload_directory(aws.url, dataset, conf["dataset_s3_uri"])
        terminal.line(f"{count} images in {conf['dataset_s3_uri']}")
        failed = False
        endpoint_name = conf.get("endpoint_name", "dog-breed-classifier")
        env = airflow_environment(workdir / "airflow", aws.url)
        for run in range(1, args.runs + 1):
            terminal.line(f"run {run}: airflow dags test {DAG_ID}; its log in {workdir / 'airflow.log'}")
            # A retraining updates the live endpoint as a canary: sample its traffic shares.
            watch = RolloutWatch(aws.url, endpoint_name) if run > 1 else None
            with (
                watch or contextlib.nullcontext(),
                DemoProgress(terminal, env, aws.url, endpoint_name, rollout=watch) as progress,
                terminal.showing(progress.panel),
            ):
                try:
                    run_pipeline(workdir, aws.url, conf, args.timeout)
                except Exception as error:  # still show what was reached
                    terminal.line(f"run {run} failed: {error}")
            summary = summarize(aws.url, conf, env)
            if watch is not None:
                summary["rollout"]["timeline"] = watch.timeline
            path = workdir / f"summary-run{run}.json"
            path.write_text(json.dumps(summary, indent=2, default=str))
            terminal.print(*display.summary_tables(summary))
            terminal.line(f"run {run}'s whole summary (JSON): {path}")
            failed = failed or summary["run_state"] != "success"
        terminal.line(f"{'FAILED' if failed else 'done'} in {terminal.elapsed():.0f} s")
        if args.serve:
            serve_until_interrupted(terminal, aws, conf)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
