"""One tuning job's record: its trials, counters, best trial and what Describe/List show."""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass, field
from typing import Any

from optuna.distributions import BaseDistribution
from optuna.trial import Trial

from local_aws.services.base import now
from local_aws.services.sagemaker.training.job import TrainingJob


@dataclass
class TrialRun:
    """One optuna trial and the training job that evaluates it."""

    trial: Trial
    job: TrainingJob
    tuned: dict[str, str]
    reported: int = 0
    pruned: bool = False
    told: bool = False


@dataclass
class TuningJob:
    name: str
    arn: str
    request: dict[str, Any]
    definition: dict[str, Any]
    objective: dict[str, str]
    space: dict[str, BaseDistribution]
    max_jobs: int
    max_parallel: int
    creation_time: dt.datetime = field(default_factory=now)
    status: str = "InProgress"
    failure_reason: str | None = None
    end_time: dt.datetime | None = None
    last_modified_time: dt.datetime = field(default_factory=now)
    trials: list[TrialRun] = field(default_factory=list)
    stop_requested: threading.Event = field(default_factory=threading.Event)
    lock: threading.RLock = field(default_factory=threading.RLock)

    @property
    def config(self) -> dict[str, Any]:
        return self.request["HyperParameterTuningJobConfig"]

    @property
    def maximize(self) -> bool:
        return self.objective["Type"] == "Maximize"

    def set_status(self, status: str, reason: str | None = None) -> None:
        with self.lock:
            self.status = status
            self.last_modified_time = now()
            if reason:
                self.failure_reason = reason
            if status in ("Completed", "Failed", "Stopped"):
                self.end_time = self.last_modified_time

    def objective_value(self, job: TrainingJob) -> float | None:
        for metric in job.scraper.final_metrics():
            if metric["MetricName"] == self.objective["MetricName"]:
                return float(metric["Value"])
        return None

    def trial_summary(self, run: TrialRun) -> dict[str, Any]:
        job = run.job
        summary: dict[str, Any] = {
            "TrainingJobName": job.name,
            "TrainingJobArn": job.arn,
            "TuningJobName": self.name,
            "CreationTime": job.creation_time,
            "TrainingJobStatus": job.status,
            "TunedHyperParameters": run.tuned,
            "ObjectiveStatus": self.objective_status(run),
        }
        if self.definition.get("DefinitionName"):
            summary["TrainingJobDefinitionName"] = self.definition["DefinitionName"]
        for key, value in (
            ("TrainingStartTime", job.training_start_time),
            ("TrainingEndTime", job.training_end_time),
            ("FailureReason", job.failure_reason),
        ):
            if value:
                summary[key] = value
        value = self.objective_value(job)
        if value is not None:
            summary["FinalHyperParameterTuningJobObjectiveMetric"] = {
                "Type": self.objective["Type"],
                "MetricName": self.objective["MetricName"],
                "Value": value,
            }
        return summary

    def objective_status(self, run: TrialRun) -> str:
        if not run.job.is_terminal:
            return "Pending"
        if run.job.status in ("Completed", "Stopped") and self.objective_value(run.job) is not None:
            return "Succeeded"
        return "Failed"

    def best_trial(self) -> TrialRun | None:
        scored = [
            (value, run)
            for run in self.trials
            if run.job.status == "Completed" and (value := self.objective_value(run.job)) is not None
        ]
        if not scored:
            return None
        pick = max if self.maximize else min
        return pick(scored, key=lambda pair: pair[0])[1]

    def counters(self) -> tuple[dict[str, int], dict[str, int]]:
        training = {
            "Completed": 0,
            "InProgress": 0,
            "RetryableError": 0,
            "NonRetryableError": 0,
            "Stopped": 0,
        }
        objective = {"Succeeded": 0, "Pending": 0, "Failed": 0}
        for run in self.trials:
            status = run.job.status
            key = {"Failed": "NonRetryableError", "Stopping": "InProgress"}.get(status, status)
            training[key] += 1
            objective[self.objective_status(run)] += 1
        return training, objective

    def describe(self) -> dict[str, Any]:
        with self.lock:
            training, objective = self.counters()
            response: dict[str, Any] = {
                "HyperParameterTuningJobName": self.name,
                "HyperParameterTuningJobArn": self.arn,
                "HyperParameterTuningJobConfig": self.config,
                "HyperParameterTuningJobStatus": self.status,
                "CreationTime": self.creation_time,
                "LastModifiedTime": self.last_modified_time,
                "TrainingJobStatusCounters": training,
                "ObjectiveStatusCounters": objective,
            }
            for key in ("TrainingJobDefinition", "TrainingJobDefinitions", "WarmStartConfig", "Autotune"):
                if key in self.request:
                    response[key] = self.request[key]
            if self.end_time:
                response["HyperParameterTuningEndTime"] = self.end_time
                response["ConsumedResources"] = {
                    "RuntimeInSeconds": int((self.end_time - self.creation_time).total_seconds())
                }
            if self.failure_reason:
                response["FailureReason"] = self.failure_reason
            best = self.best_trial()
            if best is not None:
                summary = self.trial_summary(best)
                response["BestTrainingJob"] = summary
                response["OverallBestTrainingJob"] = summary
            return response

    def summary(self) -> dict[str, Any]:
        with self.lock:
            training, objective = self.counters()
            summary = {
                "HyperParameterTuningJobName": self.name,
                "HyperParameterTuningJobArn": self.arn,
                "HyperParameterTuningJobStatus": self.status,
                "Strategy": self.config["Strategy"],
                "CreationTime": self.creation_time,
                "LastModifiedTime": self.last_modified_time,
                "TrainingJobStatusCounters": training,
                "ObjectiveStatusCounters": objective,
                "ResourceLimits": self.config["ResourceLimits"],
            }
            if self.end_time:
                summary["HyperParameterTuningEndTime"] = self.end_time
            return summary
