"""SageMaker hyperparameter tuning jobs, searched with optuna, trained by the training service.

Strategy -> optuna: Bayesian = TPESampler (constant liar, for parallel trials),
Random = RandomSampler, Grid = GridSampler (integer and categorical ranges only, as
SageMaker requires), Hyperband = HyperbandPruner over the StrategyConfig's
Min/MaxResource with random sampling. TrainingJobEarlyStoppingType Auto = the
median stopping rule (optuna's MedianPruner on the objective's intermediate values,
once two trials have finished). A pruned trial is stopped with StopTrainingJob and
counted as Stopped, as AWS does. ``RandomSeed`` seeds the sampler.

Each trial is a real training job named ``<tuning-job>-<3 digits>-<8 hex>``, created
through the training service with StaticHyperParameters plus the tuned values (as
strings), linked back by TuningJobArn. The intermediate values are every value of
the objective metric scraped so far (step = how many have been seen).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import math
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import Trial, TrialState

from local_aws.protocol.api import operation, service_model
from local_aws.protocol.errors import AwsError, validation_error
from local_aws.protocol.validation import require_valid
from local_aws.services.base import Context, Service, now
from local_aws.services.sagemaker.api import SAGEMAKER, not_found
from local_aws.services.sagemaker.listing import list_page
from local_aws.services.sagemaker.training.service import (
    TrainingJob,
    TrainingService,
    checked_training_request,
    list_jobs,
)

log = logging.getLogger("local_aws.tuning")
optuna.logging.set_verbosity(optuna.logging.WARNING)

POLL_SECONDS = 0.2
MEDIAN_STARTUP_TRIALS = 2  # the median rule needs finished trials to compare against
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


# ---------------------------------------------------------------------------------------
# Search space
# ---------------------------------------------------------------------------------------
def _number(value: Any, kind: type, where: str) -> Any:
    try:
        return kind(value)
    except (TypeError, ValueError) as error:
        raise validation_error(f"{where}: {value!r} is not a valid {kind.__name__}.") from error


def _use_log_scale(scaling: str, low: float, high: float, name: str) -> bool:
    if scaling == "ReverseLogarithmic":
        raise validation_error(f"local_aws does not support ReverseLogarithmic scaling ({name}).")
    if scaling == "Logarithmic":
        if low <= 0:
            raise validation_error(f"Logarithmic scaling needs MinValue > 0 ({name}).")
        return True
    # Auto: SageMaker picks; locally a range spanning three orders of magnitude is searched in log space.
    return scaling == "Auto" and low > 0 and high / low >= 1000


def search_space(ranges: dict[str, Any], strategy: str) -> dict[str, BaseDistribution]:
    space: dict[str, BaseDistribution] = {}

    def add(name: str, distribution: BaseDistribution) -> None:
        if name in space:
            raise validation_error(f"Hyperparameter {name!r} appears in more than one range.")
        space[name] = distribution

    for item in ranges.get("IntegerParameterRanges", []):
        name = item["Name"]
        low, high = _number(item["MinValue"], int, name), _number(item["MaxValue"], int, name)
        if low > high:
            raise validation_error(f"MinValue must not exceed MaxValue ({name}).")
        log_scale = _use_log_scale(item.get("ScalingType", "Auto"), low, high, name)
        add(name, IntDistribution(low, high, log=log_scale and strategy != "Grid"))
    for item in ranges.get("ContinuousParameterRanges", []):
        name = item["Name"]
        if strategy == "Grid":
            raise validation_error(
                f"Grid search supports only integer and categorical parameter ranges ({name} is continuous)."
            )
        low, high = _number(item["MinValue"], float, name), _number(item["MaxValue"], float, name)
        if low > high:
            raise validation_error(f"MinValue must not exceed MaxValue ({name}).")
        add(
            name,
            FloatDistribution(
                low, high, log=_use_log_scale(item.get("ScalingType", "Auto"), low, high, name)
            ),
        )
    for item in ranges.get("CategoricalParameterRanges", []):
        if not item.get("Values"):
            raise validation_error(f"Categorical range {item.get('Name')!r} needs at least one value.")
        add(item["Name"], CategoricalDistribution(list(item["Values"])))
    if ranges.get("AutoParameters"):
        raise validation_error("local_aws does not support AutoParameters (Autotune).")
    if not space:
        raise validation_error("HyperParameterTuningJobConfig needs at least one parameter range.")
    return space


def grid(space: dict[str, BaseDistribution]) -> dict[str, list[Any]]:
    values: dict[str, list[Any]] = {}
    for name, distribution in space.items():
        if isinstance(distribution, IntDistribution):
            values[name] = list(range(distribution.low, distribution.high + 1))
        elif isinstance(distribution, CategoricalDistribution):
            values[name] = list(distribution.choices)
    return values


def tuned_value(value: Any) -> str:
    """Hyperparameter values are strings on the wire; the toolkit JSON-decodes numbers back."""
    return str(value)


# ---------------------------------------------------------------------------------------
# The tuning job
# ---------------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------------
# Running one tuning job
# ---------------------------------------------------------------------------------------
class AskTellGridSampler(optuna.samplers.GridSampler):
    """GridSampler stops ``study.optimize`` once the grid is used up, which raises under ask-and-tell;
    the runner caps the trial count at the grid size itself."""

    def after_trial(self, study: optuna.Study, trial: Any, state: TrialState, values: Any) -> None:
        return None


def make_study(tuning: TuningJob) -> optuna.Study:
    config = tuning.config
    strategy = config["Strategy"]
    seed = config.get("RandomSeed")
    sampler: optuna.samplers.BaseSampler
    pruner: optuna.pruners.BasePruner = optuna.pruners.NopPruner()
    if strategy == "Bayesian":
        # TPE starts random; with small budgets let it start modelling after half of them.
        startup = max(2, min(10, tuning.max_jobs // 2))
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, constant_liar=True)
    elif strategy == "Grid":
        sampler = AskTellGridSampler(grid(tuning.space), seed=seed)
    else:
        sampler = optuna.samplers.RandomSampler(seed=seed)
    if strategy == "Hyperband":
        hyperband = config.get("StrategyConfig", {}).get("HyperbandStrategyConfig", {})
        pruner = optuna.pruners.HyperbandPruner(
            min_resource=int(hyperband.get("MinResource", 1)),
            max_resource=int(hyperband.get("MaxResource", "auto")) if "MaxResource" in hyperband else "auto",
        )
    elif config.get("TrainingJobEarlyStoppingType", "Off") == "Auto":
        pruner = optuna.pruners.MedianPruner(n_startup_trials=MEDIAN_STARTUP_TRIALS, n_warmup_steps=2)
    direction = "maximize" if tuning.maximize else "minimize"
    return optuna.create_study(direction=direction, sampler=sampler, pruner=pruner)


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


# ---------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------
def training_definition(request: dict[str, Any]) -> dict[str, Any]:
    definitions = request.get("TrainingJobDefinitions")
    if request.get("TrainingJobDefinition") and definitions:
        raise validation_error("Specify either TrainingJobDefinition or TrainingJobDefinitions, not both.")
    if definitions:
        if len(definitions) > 1:
            raise validation_error("local_aws supports one training job definition per tuning job.")
        return definitions[0]
    if not request.get("TrainingJobDefinition"):
        raise validation_error("TrainingJobDefinition is required.")
    return request["TrainingJobDefinition"]


def objective_of(config: dict[str, Any], definition: dict[str, Any]) -> dict[str, str]:
    objective = config.get("HyperParameterTuningJobObjective") or definition.get("TuningObjective")
    if not objective:  # the model makes it optional in both places, but one is needed
        raise validation_error(
            "HyperParameterTuningJobObjective (or the definition's TuningObjective) is required."
        )
    metric_names = {m["Name"] for m in definition["AlgorithmSpecification"].get("MetricDefinitions", [])}
    if objective["MetricName"] not in metric_names:
        raise validation_error(
            f"The objective metric {objective['MetricName']!r} is not among the MetricDefinitions "
            f"{sorted(metric_names)}."
        )
    return objective


def limits_of(config: dict[str, Any], space: dict[str, BaseDistribution]) -> tuple[int, int]:
    limits = config["ResourceLimits"]
    max_jobs = limits.get("MaxNumberOfTrainingJobs")
    if config["Strategy"] == "Grid":
        combinations = math.prod(len(values) for values in grid(space).values())
        max_jobs = min(max_jobs or combinations, combinations)
    if max_jobs is None:
        raise validation_error(
            "ResourceLimits.MaxNumberOfTrainingJobs is required unless the strategy is Grid."
        )
    return max_jobs, limits["MaxParallelTrainingJobs"]


def checked_tuning_request(request: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str], dict, int, int]:
    """The rules beyond the model's: (definition, objective, search space, max jobs, max parallel)."""
    config = request["HyperParameterTuningJobConfig"]
    strategy = config["Strategy"]
    early_stopping = config.get("TrainingJobEarlyStoppingType", "Off")
    if strategy == "Hyperband" and early_stopping == "Auto":
        raise validation_error(
            "Hyperband has its own early stopping: TrainingJobEarlyStoppingType must be Off."
        )
    if "WarmStartConfig" in request:
        raise validation_error("local_aws does not support WarmStartConfig.")
    definition = training_definition(request)
    objective = objective_of(config, definition)
    ranges = config.get("ParameterRanges") or definition.get("HyperParameterRanges") or {}
    space = search_space(ranges, strategy)
    static = definition.get("StaticHyperParameters", {})
    if clash := sorted(set(space) & set(static)):
        raise validation_error(f"Hyperparameters {clash} are both static and tuned.")
    max_jobs, max_parallel = limits_of(config, space)
    # The trials are CreateTrainingJob requests: a bad definition is this request's error, now.
    probe = {name: tuned_value(d.choices[0] if isinstance(d, CategoricalDistribution) else d.low)
             for name, d in space.items()}  # fmt: skip
    trial = trial_request(definition, "probe-000-00000000", probe)
    require_valid(service_model(SAGEMAKER.name).operation_model("CreateTrainingJob").input_shape, trial)
    checked_training_request(trial)
    return definition, objective, space, max_jobs, max_parallel


# ---------------------------------------------------------------------------------------
# The service
# ---------------------------------------------------------------------------------------
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
        thread = threading.Thread(target=TuningRunner(self, tuning).run, name=f"tuning-{name}", daemon=True)
        self._threads[name] = thread
        thread.start()
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
