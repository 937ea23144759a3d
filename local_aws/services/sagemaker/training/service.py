"""SageMaker training jobs, really executed on this machine (see :mod:`.runner`).

CreateTrainingJob checks the request (:mod:`.requests`), records the job (:mod:`.job`) and
starts its runner in a thread; the tuning service starts its trials the same way.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from local_aws.infra.background import in_background
from local_aws.protocol.api import operation
from local_aws.protocol.errors import AwsError, validation_error
from local_aws.services.base import Context, Service
from local_aws.services.sagemaker.api import SAGEMAKER, not_found
from local_aws.services.sagemaker.listing import list_jobs
from local_aws.services.sagemaker.training import debugger_rules
from local_aws.services.sagemaker.training.job import TrainingJob
from local_aws.services.sagemaker.training.metrics import MetricScraper
from local_aws.services.sagemaker.training.requests import checked_training_request
from local_aws.services.sagemaker.training.runner import JobRunner


class TrainingService(Service):
    """CreateTrainingJob, DescribeTrainingJob, ListTrainingJobs, StopTrainingJob."""

    api = SAGEMAKER
    stop_grace_seconds = 10.0  # AWS allows 120 s between SIGTERM and SIGKILL; locally less is enough
    profiler_upload_seconds = 60.0  # how often the system metrics so far go to S3 while a job runs

    def __init__(self, context: Context):
        super().__init__(context)
        self.root = context.state_dir / "training"
        self.root.mkdir(parents=True, exist_ok=True)
        self.jobs: dict[str, TrainingJob] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()
        self._closed = False

    # -- operations ----------------------------------------------------------------------
    @operation("CreateTrainingJob")
    def create_training_job(self, request: dict[str, Any]) -> dict[str, Any]:
        return {"TrainingJobArn": self.start_job(request).arn}

    @operation("DescribeTrainingJob")
    def describe_training_job(self, request: dict[str, Any]) -> dict[str, Any]:
        return self.job(request["TrainingJobName"]).describe()

    @operation("ListTrainingJobs")
    def list_training_jobs(self, request: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            jobs = list(self.jobs.values())
        page, token = list_jobs(request, jobs)
        return {"TrainingJobSummaries": [job.summary() for job in page], **token}

    @operation("StopTrainingJob")
    def stop_training_job(self, request: dict[str, Any]) -> dict[str, Any]:
        job = self.job(request["TrainingJobName"])
        with job.lock:
            if job.status != "InProgress":
                raise validation_error(
                    f"The request was rejected because the training job is in status {job.status}."
                )
            self.interrupt(job, "Stopped")
        return {}

    # -- for the tuning service and the runner ------------------------------------------
    def start_job(self, request: dict[str, Any], tuning_job_arn: str | None = None) -> TrainingJob:
        request = checked_training_request(request)
        name = request["TrainingJobName"]
        definitions = request["AlgorithmSpecification"].get("MetricDefinitions", [])
        job = TrainingJob(
            name=name,
            arn=self.context.arn("sagemaker", f"training-job/{name.lower()}"),
            request=request,
            tuning_job_arn=tuning_job_arn,
            scraper=MetricScraper(definitions),
        )
        with self._lock:
            if self._closed:
                raise AwsError("ServiceUnavailable", "local_aws is shutting down", status=503)
            if name in self.jobs:
                raise AwsError(
                    "ResourceInUse",
                    f"Training job names must be unique within an AWS account and region, and a training "
                    f"job with this name already exists ({self.jobs[name].arn})",
                )
            self.jobs[name] = job
        job.rule_statuses = debugger_rules.initial_statuses(request, job.arn)
        self.context.tags.add(job.arn, request.get("Tags"))
        self._threads[name] = in_background(f"training-{name}", JobRunner(self, job).run)
        return job

    def job(self, name: str) -> TrainingJob:
        with self._lock:
            job = self.jobs.get(name)
        if job is None:
            raise not_found("training job", name)
        return job

    def interrupt(self, job: TrainingJob, reason: str) -> None:
        with job.lock:
            if job.is_terminal or job.stop_requested.is_set():
                return
            job.interruption = reason
            if reason == "Stopped":
                job.transition("Stopping", "Stopping the training job", status="Stopping")
            job.stop_requested.set()

    def fair_thread_count(self) -> int:
        """This machine's cores shared among the processes of every unfinished job (one per instance)."""
        with self._lock:
            processes = sum(job.instance_count for job in self.jobs.values() if not job.is_terminal)
        return max(1, (os.cpu_count() or 1) // max(1, processes))

    def shutdown(self) -> None:
        with self._lock:
            self._closed = True
            jobs = [job for job in self.jobs.values() if not job.is_terminal]
            threads = list(self._threads.values())
        for job in jobs:
            self.interrupt(job, "Stopped")
        for thread in threads:
            thread.join(timeout=self.stop_grace_seconds + 10)
