"""SageMaker hyperparameter tuning jobs, searched with optuna (:mod:`.search`), run by
:mod:`.runner` as real training jobs of the training service."""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any

from local_aws.infra.background import in_background
from local_aws.protocol.api import operation
from local_aws.protocol.errors import AwsError, validation_error
from local_aws.services.base import Context, Service
from local_aws.services.sagemaker.api import SAGEMAKER, not_found
from local_aws.services.sagemaker.listing import list_jobs, list_page
from local_aws.services.sagemaker.training.service import TrainingService
from local_aws.services.sagemaker.tuning.job import TuningJob
from local_aws.services.sagemaker.tuning.requests import checked_tuning_request
from local_aws.services.sagemaker.tuning.runner import TuningRunner

log = logging.getLogger("local_aws.tuning")


class TuningService(Service):
    """CreateHyperParameterTuningJob and friends."""

    api = SAGEMAKER

    def __init__(self, context: Context):
        super().__init__(context)
        self.jobs: dict[str, TuningJob] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()

    @property
    def training(self) -> TrainingService:
        service = self.context.services.get("training")
        if service is None:
            raise AwsError("InternalFailure", "local_aws: tuning needs the training service", status=500)
        return service

    @operation("CreateHyperParameterTuningJob")
    def create_tuning_job(self, request: dict[str, Any]) -> dict[str, Any]:
        definition, objective, space, max_jobs, max_parallel = checked_tuning_request(request)
        name = request["HyperParameterTuningJobName"]
        tuning = TuningJob(
            name=name,
            arn=self.context.arn("sagemaker", f"hyper-parameter-tuning-job/{name.lower()}"),
            request=request,
            definition=definition,
            objective=objective,
            space=space,
            max_jobs=max_jobs,
            max_parallel=max_parallel,
        )
        with self._lock:
            if name in self.jobs:
                raise AwsError("ResourceInUse", f"Hyperparameter tuning job {name!r} already exists.")
            self.jobs[name] = tuning
        self.context.tags.add(tuning.arn, request.get("Tags"))
        self._threads[name] = in_background(f"tuning-{name}", TuningRunner(self, tuning).run)
        return {"HyperParameterTuningJobArn": tuning.arn}

    def job(self, name: str) -> TuningJob:
        with self._lock:
            tuning = self.jobs.get(name)
        if tuning is None:
            raise not_found("hyper-parameter tuning job", name)
        return tuning

    @operation("DescribeHyperParameterTuningJob")
    def describe_tuning_job(self, request: dict[str, Any]) -> dict[str, Any]:
        return self.job(request["HyperParameterTuningJobName"]).describe()

    @operation("ListHyperParameterTuningJobs")
    def list_tuning_jobs(self, request: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            jobs = list(self.jobs.values())
        page, token = list_jobs(request, jobs)
        return {"HyperParameterTuningJobSummaries": [job.summary() for job in page], **token}

    @operation("ListTrainingJobsForHyperParameterTuningJob")
    def list_training_jobs_for_tuning_job(self, request: dict[str, Any]) -> dict[str, Any]:
        tuning = self.job(request["HyperParameterTuningJobName"])
        with tuning.lock:
            summaries = [tuning.trial_summary(run) for run in tuning.trials]
        if request.get("StatusEquals"):
            summaries = [s for s in summaries if s["TrainingJobStatus"] == request["StatusEquals"]]
        if request.get("SortBy") == "FinalObjectiveMetricValue":
            # As AWS does: jobs without an objective value are not listed when sorting by it.
            summaries = [s for s in summaries if "FinalHyperParameterTuningJobObjectiveMetric" in s]
        page, token = list_page(
            request,
            summaries,
            name=lambda s: s["TrainingJobName"],
            times={},
            sort_keys={
                "Name": lambda s: s["TrainingJobName"],
                "CreationTime": lambda s: s["CreationTime"],
                "Status": lambda s: s["TrainingJobStatus"],
                "FinalObjectiveMetricValue": lambda s: s["FinalHyperParameterTuningJobObjectiveMetric"][
                    "Value"
                ],
            },
        )
        return {"TrainingJobSummaries": page, **token}

    @operation("StopHyperParameterTuningJob")
    def stop_tuning_job(self, request: dict[str, Any]) -> dict[str, Any]:
        tuning = self.job(request["HyperParameterTuningJobName"])
        with tuning.lock:
            if tuning.status != "InProgress":
                raise validation_error(
                    f"The request was rejected because the tuning job is in status {tuning.status}."
                )
            tuning.set_status("Stopping")
            tuning.stop_requested.set()
        return {}

    def shutdown(self) -> None:
        with self._lock:
            jobs = list(self.jobs.values())
            threads = list(self._threads.values())
        for tuning in jobs:
            with contextlib.suppress(Exception), tuning.lock:
                if tuning.status == "InProgress":
                    tuning.set_status("Stopping")
                    tuning.stop_requested.set()
        for thread in threads:
            thread.join(timeout=30)
