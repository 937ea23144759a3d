"""One training job's record: its status, transitions and what Describe/List show of it."""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass, field
from typing import Any

from local_aws.services.base import now
from local_aws.services.sagemaker.training.metrics import MetricScraper

TERMINAL_STATUSES = frozenset({"Completed", "Failed", "Stopped"})


class JobInterrupted(Exception):
    """The job was asked to stop (StopTrainingJob) or ran out of MaxRuntimeInSeconds."""


class JobFailed(Exception):
    """The job failed for a reason the user should see in FailureReason."""


@dataclass
class TrainingJob:
    name: str
    arn: str
    request: dict[str, Any]
    tuning_job_arn: str | None
    scraper: MetricScraper
    creation_time: dt.datetime = field(default_factory=now)
    status: str = "InProgress"
    secondary_status: str = "Starting"
    transitions: list[dict[str, Any]] = field(default_factory=list)
    failure_reason: str | None = None
    training_start_time: dt.datetime | None = None
    training_end_time: dt.datetime | None = None
    last_modified_time: dt.datetime = field(default_factory=now)
    model_artifacts: str | None = None
    rule_statuses: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    stop_requested: threading.Event = field(default_factory=threading.Event)
    interruption: str | None = None  # "Stopped" or "MaxRuntimeExceeded"
    lock: threading.RLock = field(default_factory=threading.RLock)

    def transition(self, secondary: str, message: str, status: str | None = None) -> None:
        with self.lock:
            stamp = now()
            if self.transitions and "EndTime" not in self.transitions[-1]:
                self.transitions[-1]["EndTime"] = stamp
            entry: dict[str, Any] = {"Status": secondary, "StartTime": stamp, "StatusMessage": message}
            if status in TERMINAL_STATUSES:
                entry["EndTime"] = stamp
            self.transitions.append(entry)
            self.secondary_status = secondary
            if status is not None:
                self.status = status
            self.last_modified_time = stamp

    @property
    def instance_count(self) -> int:
        return int(self.request["ResourceConfig"]["InstanceCount"])

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    def describe(self) -> dict[str, Any]:
        with self.lock:
            request = self.request
            response: dict[str, Any] = {
                "TrainingJobName": self.name,
                "TrainingJobArn": self.arn,
                "TrainingJobStatus": self.status,
                "SecondaryStatus": self.secondary_status,
                "HyperParameters": request.get("HyperParameters", {}),
                "AlgorithmSpecification": request["AlgorithmSpecification"],
                "RoleArn": request["RoleArn"],
                "OutputDataConfig": request["OutputDataConfig"],
                "ResourceConfig": request["ResourceConfig"],
                "StoppingCondition": request["StoppingCondition"],
                "CreationTime": self.creation_time,
                "LastModifiedTime": self.last_modified_time,
                "SecondaryStatusTransitions": [dict(t) for t in self.transitions],
                "FinalMetricDataList": self.scraper.final_metrics(),
                "EnableNetworkIsolation": request.get("EnableNetworkIsolation", False),
                "EnableInterContainerTrafficEncryption": request.get(
                    "EnableInterContainerTrafficEncryption", False
                ),
                "EnableManagedSpotTraining": request.get("EnableManagedSpotTraining", False),
            }
            optional = {
                "TuningJobArn": self.tuning_job_arn,
                "FailureReason": self.failure_reason,
                "InputDataConfig": request.get("InputDataConfig"),
                "VpcConfig": request.get("VpcConfig"),
                "CheckpointConfig": request.get("CheckpointConfig"),
                "DebugHookConfig": request.get("DebugHookConfig"),
                "DebugRuleConfigurations": request.get("DebugRuleConfigurations"),
                "ProfilerConfig": request.get("ProfilerConfig"),
                "ProfilerRuleConfigurations": request.get("ProfilerRuleConfigurations"),
                "TensorBoardOutputConfig": request.get("TensorBoardOutputConfig"),
                "ExperimentConfig": request.get("ExperimentConfig"),
                "Environment": request.get("Environment"),
                "RetryStrategy": request.get("RetryStrategy"),
                "TrainingStartTime": self.training_start_time,
                "TrainingEndTime": self.training_end_time,
                "DebugRuleEvaluationStatuses": self.rule_statuses.get("DebugRuleConfigurations"),
                "ProfilerRuleEvaluationStatuses": self.rule_statuses.get("ProfilerRuleConfigurations"),
            }
            response.update({k: v for k, v in optional.items() if v})
            if self.model_artifacts:
                response["ModelArtifacts"] = {"S3ModelArtifacts": self.model_artifacts}
            if "ProfilerConfig" in request:
                disabled = request["ProfilerConfig"].get("DisableProfiler", False)
                response["ProfilingStatus"] = "Disabled" if disabled else "Enabled"
            if self.training_start_time and self.training_end_time:
                # Whole seconds, at least 1 (the model's minimum: AWS bills a started second).
                seconds = max(1, int((self.training_end_time - self.training_start_time).total_seconds()))
                response["TrainingTimeInSeconds"] = seconds
                response["BillableTimeInSeconds"] = seconds * self.instance_count
            return response

    def summary(self) -> dict[str, Any]:
        with self.lock:
            summary: dict[str, Any] = {
                "TrainingJobName": self.name,
                "TrainingJobArn": self.arn,
                "CreationTime": self.creation_time,
                "LastModifiedTime": self.last_modified_time,
                "TrainingJobStatus": self.status,
                "SecondaryStatus": self.secondary_status,
            }
            if self.training_end_time:
                summary["TrainingEndTime"] = self.training_end_time
            return summary
