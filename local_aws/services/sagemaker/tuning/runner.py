"""Runs one tuning job: launches trials up to the limits, feeds optuna, prunes, ends the job.

Each trial is a real training job named ``<tuning-job>-<3 digits>-<8 hex>``, created
through the training service with StaticHyperParameters plus the tuned values (as
strings), linked back by TuningJobArn. The intermediate values are every value of
the objective metric scraped so far (step = how many have been seen). A pruned trial is
stopped as StopTrainingJob would and counted as Stopped, as AWS does.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

from optuna.trial import TrialState

from local_aws.services.base import now
from local_aws.services.sagemaker.training.service import TrainingService
from local_aws.services.sagemaker.tuning.job import TrialRun, TuningJob
from local_aws.services.sagemaker.tuning.search import make_study, tuned_value

if TYPE_CHECKING:
    from local_aws.services.sagemaker.tuning.service import TuningService

log = logging.getLogger("local_aws.tuning")

POLL_SECONDS = 0.2
TRIAL_DEFINITION_FIELDS = (
    "RoleArn",
    "InputDataConfig",
    "VpcConfig",
    "OutputDataConfig",
    "ResourceConfig",
    "StoppingCondition",
    "EnableNetworkIsolation",
    "EnableInterContainerTrafficEncryption",
    "EnableManagedSpotTraining",
    "CheckpointConfig",
    "RetryStrategy",
    "Environment",
)


class TuningRunner:
    """Launches trials up to the limits, feeds optuna, prunes, and ends the tuning job."""

    def __init__(self, service: TuningService, tuning: TuningJob):
        self.service = service
        self.training: TrainingService = service.training
        self.tuning = tuning
        self.study = make_study(tuning)
        self.started = time.monotonic()

    def run(self) -> None:
        tuning = self.tuning
        try:
            while True:
                self._observe_trials()
                if tuning.stop_requested.is_set() or self._out_of_time() or self._target_reached():
                    self._stop_running_trials()
                elif self._can_launch():
                    self._launch_trial()
                    continue
                if not self._running() and (not self._can_launch() or tuning.stop_requested.is_set()):
                    break
                time.sleep(POLL_SECONDS)
            self._finish()
        except Exception as error:  # never leave a tuning job InProgress forever
            log.exception("tuning job %s failed inside local_aws", tuning.name)
            self._stop_running_trials()
            tuning.set_status("Failed", f"InternalServerError: local_aws: {type(error).__name__}: {error}")

    # -- limits --------------------------------------------------------------------------
    def _running(self) -> list[TrialRun]:
        return [run for run in self.tuning.trials if not run.job.is_terminal]

    def _can_launch(self) -> bool:
        tuning = self.tuning
        if tuning.stop_requested.is_set() or self._out_of_time() or self._target_reached():
            return False
        return len(tuning.trials) < tuning.max_jobs and len(self._running()) < tuning.max_parallel

    def _out_of_time(self) -> bool:
        limit = self.tuning.config["ResourceLimits"].get("MaxRuntimeInSeconds")
        return bool(limit) and time.monotonic() - self.started >= limit

    def _target_reached(self) -> bool:
        target = self.tuning.config.get("TuningJobCompletionCriteria", {}).get("TargetObjectiveMetricValue")
        best = self.tuning.best_trial()
        if target is None or best is None:
            return False
        value = self.tuning.objective_value(best.job)
        assert value is not None
        return value >= target if self.tuning.maximize else value <= target

    # -- trials --------------------------------------------------------------------------
    def _launch_trial(self) -> None:
        tuning = self.tuning
        trial = self.study.ask(tuning.space)
        tuned = {name: tuned_value(value) for name, value in trial.params.items()}
        name = f"{tuning.name}-{len(tuning.trials) + 1:03d}-{uuid.uuid4().hex[:8]}"
        request = trial_request(tuning.definition, name, tuned, tuning.request.get("Tags"))
        job = self.training.start_job(request, tuning_job_arn=tuning.arn)
        with tuning.lock:
            tuning.trials.append(TrialRun(trial, job, tuned))
            tuning.last_modified_time = now()

    def _observe_trials(self) -> None:
        for run in self.tuning.trials:
            if run.told:
                continue
            self._report_progress(run)
            if run.job.is_terminal:
                self._tell(run)
            elif not run.pruned and run.reported and run.trial.should_prune():
                run.pruned = True
                log.info("early stopping %s at step %d", run.job.name, run.reported)
                self.training.interrupt(run.job, "Stopped")

    def _report_progress(self, run: TrialRun) -> None:
        values = [
            value for _, value in run.job.scraper.history().get(self.tuning.objective["MetricName"], [])
        ]
        for step in range(run.reported + 1, len(values) + 1):
            run.trial.report(values[step - 1], step)
        run.reported = max(run.reported, len(values))

    def _tell(self, run: TrialRun) -> None:
        value = self.tuning.objective_value(run.job)
        if run.job.status == "Completed" and value is not None:
            self.study.tell(run.trial, value)
        elif run.job.status == "Stopped" and run.reported:
            self.study.tell(run.trial, state=TrialState.PRUNED)
        else:
            self.study.tell(run.trial, state=TrialState.FAIL)
        run.told = True
        with self.tuning.lock:
            self.tuning.last_modified_time = now()

    def _stop_running_trials(self) -> None:
        for run in self._running():
            self.training.interrupt(run.job, "Stopped")

    def _finish(self) -> None:
        tuning = self.tuning
        if tuning.stop_requested.is_set():
            tuning.set_status("Stopped")
        elif tuning.best_trial() is None:
            tuning.set_status(
                "Failed",
                f"No training job succeeded after {len(tuning.trials)} attempts. "
                "Please take a look at the training job failures to get more details.",
            )
        else:
            tuning.set_status("Completed")


def trial_request(
    definition: dict[str, Any], name: str, tuned: dict[str, str], tags: list[dict[str, str]] | None = None
) -> dict[str, Any]:
    """The CreateTrainingJob request SageMaker makes for one trial."""
    request: dict[str, Any] = {
        "TrainingJobName": name,
        "AlgorithmSpecification": dict(definition.get("AlgorithmSpecification") or {}),
        "HyperParameters": {**definition.get("StaticHyperParameters", {}), **tuned},
        **{key: definition[key] for key in TRIAL_DEFINITION_FIELDS if key in definition},
    }
    if "CheckpointConfig" in request:  # trials must not overwrite each other's checkpoints
        checkpoint = dict(request["CheckpointConfig"])
        checkpoint["S3Uri"] = f"{checkpoint['S3Uri'].rstrip('/')}/{name}"
        request["CheckpointConfig"] = checkpoint
    if tags:
        request["Tags"] = tags
    return request
