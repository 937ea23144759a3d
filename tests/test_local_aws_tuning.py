"""local_aws hyperparameter tuning jobs, driven with plain boto3 (and once through the Airflow hook)."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest
from botocore.exceptions import ClientError
from local_aws_training_support import (
    ROLE,
    client,
    local_aws_fixture,  # noqa: F401 - the local_aws fixture
    training_request,
    upload_source,
    wait_until,
)

# valid:accuracy rises each epoch towards a level set by the hyperparameters.
OBJECTIVE_SCRIPT = """
import argparse, time
parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, default=0.5)
parser.add_argument("--layers", type=int, default=1)
parser.add_argument("--optimizer", default="sgd")
parser.add_argument("--epochs", type=int)
parser.add_argument("--fail", default="no")
args = parser.parse_args()
if args.fail == "yes":
    raise SystemExit("failing on purpose")
level = args.lr * 0.5 + args.layers * 0.1 + (0.2 if args.optimizer == "adam" else 0.0)
for epoch in range(1, args.epochs + 1):
    time.sleep(EPOCH_SECONDS)
    accuracy = level * epoch / args.epochs
    print(f"[metrics] epoch={epoch} train_loss={1 / epoch} valid_accuracy={accuracy:.6f}", flush=True)
"""


def objective_source(server: Any, epoch_seconds: float = 0.2) -> str:
    return upload_source(server, OBJECTIVE_SCRIPT.replace("EPOCH_SECONDS", str(epoch_seconds)))


def tuning_request(
    name: str,
    source: str,
    strategy: str = "Random",
    max_jobs: int = 4,
    max_parallel: int = 2,
    ranges: dict | None = None,
    epochs: int = 2,
    **config: Any,
) -> dict[str, Any]:
    training = training_request("unused", source, {"epochs": str(epochs)})
    definition = {
        "StaticHyperParameters": training["HyperParameters"],
        "AlgorithmSpecification": training["AlgorithmSpecification"],
        "RoleArn": ROLE,
        "InputDataConfig": training["InputDataConfig"],
        "OutputDataConfig": training["OutputDataConfig"],
        "ResourceConfig": training["ResourceConfig"],
        "StoppingCondition": {"MaxRuntimeInSeconds": 120},
    }
    return {
        "HyperParameterTuningJobName": name,
        "HyperParameterTuningJobConfig": {
            "Strategy": strategy,
            "HyperParameterTuningJobObjective": {"Type": "Maximize", "MetricName": "valid:accuracy"},
            "ResourceLimits": {"MaxNumberOfTrainingJobs": max_jobs, "MaxParallelTrainingJobs": max_parallel},
            "ParameterRanges": ranges
            or {
                "ContinuousParameterRanges": [
                    {"Name": "lr", "MinValue": "0.001", "MaxValue": "1", "ScalingType": "Logarithmic"}
                ],
                "IntegerParameterRanges": [{"Name": "layers", "MinValue": "1", "MaxValue": "3"}],
                "CategoricalParameterRanges": [{"Name": "optimizer", "Values": ["sgd", "adam"]}],
            },
            **config,
        },
        "TrainingJobDefinition": definition,
        "Tags": [{"Key": "project", "Value": "dogs"}],
    }


def wait_for_tuning(sagemaker: Any, name: str, timeout: float = 90) -> dict[str, Any]:
    wait_until(
        lambda: (
            sagemaker.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)[
                "HyperParameterTuningJobStatus"
            ]
            not in ("InProgress", "Stopping")
        ),
        timeout=timeout,
        interval=0.2,
    )
    return sagemaker.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)


def trials_of(sagemaker: Any, name: str, **filters: Any) -> list[dict[str, Any]]:
    return sagemaker.list_training_jobs_for_hyper_parameter_tuning_job(
        HyperParameterTuningJobName=name, MaxResults=100, **filters
    )["TrainingJobSummaries"]


def most_at_once(trials: list[dict[str, Any]]) -> int:
    """The largest number of trials alive at the same moment (creation to end)."""
    events = sorted(
        [(t["CreationTime"], 1) for t in trials] + [(t["TrainingEndTime"], -1) for t in trials],
        key=lambda event: (event[0], event[1]),  # an end before a start at the same instant
    )
    alive = peak = 0
    for _, change in events:
        alive += change
        peak = max(peak, alive)
    return peak


GRID_RANGES = {
    "IntegerParameterRanges": [{"Name": "layers", "MinValue": "1", "MaxValue": "2"}],
    "CategoricalParameterRanges": [{"Name": "optimizer", "Values": ["sgd", "adam"]}],
}


@pytest.mark.parametrize(
    ("strategy", "extra"),
    [
        ("Bayesian", {}),
        ("Random", {"RandomSeed": 7}),
        ("Grid", {}),
        ("Hyperband", {"StrategyConfig": {"HyperbandStrategyConfig": {"MinResource": 1, "MaxResource": 2}}}),
    ],
)
def test_each_strategy_runs_its_trials_within_the_parallel_limit(local_aws, strategy, extra):
    sagemaker = client(local_aws, "sagemaker")
    ranges = GRID_RANGES if strategy == "Grid" else None
    name = f"tune-{strategy.lower()}"
    request = tuning_request(name, objective_source(local_aws), strategy, max_jobs=4, ranges=ranges, **extra)
    arn = sagemaker.create_hyper_parameter_tuning_job(**request)["HyperParameterTuningJobArn"]

    description = wait_for_tuning(sagemaker, name)
    trials = trials_of(sagemaker, name)

    assert description["HyperParameterTuningJobArn"] == arn
    assert description["HyperParameterTuningJobStatus"] == "Completed", description.get("FailureReason")
    assert len(trials) == 4
    counters = description["TrainingJobStatusCounters"]
    assert counters["Completed"] + counters["Stopped"] == 4 and counters["InProgress"] == 0
    assert description["ObjectiveStatusCounters"]["Succeeded"] == 4
    assert most_at_once(trials) == 2
    assert all(re.fullmatch(rf"{name}-00[1-4]-[0-9a-f]{{8}}", t["TrainingJobName"]) for t in trials)
    assert all(isinstance(v, str) for t in trials for v in t["TunedHyperParameters"].values())
    if strategy == "Grid":
        combinations = {
            (t["TunedHyperParameters"]["layers"], t["TunedHyperParameters"]["optimizer"]) for t in trials
        }
        assert combinations == {("1", "sgd"), ("1", "adam"), ("2", "sgd"), ("2", "adam")}
    else:
        for t in trials:
            assert 0.001 <= float(t["TunedHyperParameters"]["lr"]) <= 1
            assert t["TunedHyperParameters"]["layers"] in {"1", "2", "3"}
    completed = [t for t in trials if t["TrainingJobStatus"] == "Completed"]
    best = max(completed, key=lambda t: t["FinalHyperParameterTuningJobObjectiveMetric"]["Value"])
    assert description["BestTrainingJob"]["TrainingJobName"] == best["TrainingJobName"]
    assert description["BestTrainingJob"]["TunedHyperParameters"] == best["TunedHyperParameters"]
    assert description["BestTrainingJob"]["FinalHyperParameterTuningJobObjectiveMetric"]["MetricName"] == (
        "valid:accuracy"
    )
    assert description["HyperParameterTuningEndTime"] >= max(t["TrainingEndTime"] for t in trials)
    trial = sagemaker.describe_training_job(TrainingJobName=best["TrainingJobName"])
    assert trial["TuningJobArn"] == arn
    assert trial["HyperParameters"]["epochs"] == "2"
    assert sagemaker.list_tags(ResourceArn=trial["TrainingJobArn"])["Tags"] == [
        {"Key": "project", "Value": "dogs"}
    ]


def test_early_stopping_stops_clearly_bad_trials(local_aws):
    sagemaker = client(local_aws, "sagemaker")
    ranges = {
        "ContinuousParameterRanges": [
            {"Name": "lr", "MinValue": "0", "MaxValue": "1", "ScalingType": "Linear"}
        ]
    }
    request = tuning_request(
        "tune-early-stop",
        objective_source(local_aws, epoch_seconds=0.25),
        "Random",
        max_jobs=6,
        max_parallel=1,
        ranges=ranges,
        epochs=6,
        TrainingJobEarlyStoppingType="Auto",
        RandomSeed=3,
    )
    sagemaker.create_hyper_parameter_tuning_job(**request)

    description = wait_for_tuning(sagemaker, "tune-early-stop", timeout=120)
    trials = sorted(trials_of(sagemaker, "tune-early-stop"), key=lambda t: t["CreationTime"])

    stopped = [t for t in trials if t["TrainingJobStatus"] == "Stopped"]
    assert stopped, [(t["TunedHyperParameters"], t["TrainingJobStatus"]) for t in trials]
    assert description["TrainingJobStatusCounters"]["Stopped"] == len(stopped)
    for trial in stopped:
        earlier = [
            t
            for t in trials
            if t["CreationTime"] < trial["CreationTime"] and t["TrainingJobStatus"] == "Completed"
        ]
        lr = float(trial["TunedHyperParameters"]["lr"])
        # Only a trial below the median of the finished ones is stopped, and it is stopped early.
        assert len(earlier) >= 2
        assert lr < sorted(float(t["TunedHyperParameters"]["lr"]) for t in earlier)[len(earlier) // 2]
        final_level = lr * 0.5 + 0.1  # what OBJECTIVE_SCRIPT reaches at its last epoch
        assert trial["FinalHyperParameterTuningJobObjectiveMetric"]["Value"] < final_level - 1e-6
    assert description["BestTrainingJob"]["TrainingJobStatus"] == "Completed"


def test_list_training_jobs_for_tuning_job_sorts_by_objective_and_filters(local_aws):
    sagemaker = client(local_aws, "sagemaker")
    ranges = {
        "CategoricalParameterRanges": [
            {"Name": "layers", "Values": ["1", "3", "2"]},
            {"Name": "fail", "Values": ["no", "yes"]},
        ]
    }
    request = tuning_request(
        "tune-list", objective_source(local_aws, 0.05), "Grid", max_jobs=6, max_parallel=3, ranges=ranges
    )
    sagemaker.create_hyper_parameter_tuning_job(**request)
    description = wait_for_tuning(sagemaker, "tune-list")

    by_objective = trials_of(
        sagemaker, "tune-list", SortBy="FinalObjectiveMetricValue", SortOrder="Descending"
    )
    failed = trials_of(sagemaker, "tune-list", StatusEquals="Failed")
    paged = sagemaker.list_training_jobs_for_hyper_parameter_tuning_job(
        HyperParameterTuningJobName="tune-list", MaxResults=4
    )

    assert [t["TunedHyperParameters"]["layers"] for t in by_objective] == ["3", "2", "1"]
    assert by_objective[0]["TrainingJobName"] == description["BestTrainingJob"]["TrainingJobName"]
    assert len(failed) == 3 and all(t["TunedHyperParameters"]["fail"] == "yes" for t in failed)
    assert all(
        t["ObjectiveStatus"] == "Failed" and "failing on purpose" in t["FailureReason"] for t in failed
    )
    assert description["TrainingJobStatusCounters"]["NonRetryableError"] == 3
    assert description["ObjectiveStatusCounters"] == {"Succeeded": 3, "Pending": 0, "Failed": 3}
    assert len(paged["TrainingJobSummaries"]) == 4 and paged["NextToken"]
    summaries = sagemaker.list_hyper_parameter_tuning_jobs(NameContains="tune-")[
        "HyperParameterTuningJobSummaries"
    ]
    assert [s["HyperParameterTuningJobName"] for s in summaries] == ["tune-list"]
    assert summaries[0]["Strategy"] == "Grid"


def test_tuning_job_fails_only_when_no_trial_succeeds(local_aws):
    sagemaker = client(local_aws, "sagemaker")
    ranges = {"CategoricalParameterRanges": [{"Name": "fail", "Values": ["yes"]}]}
    request = tuning_request(
        "tune-all-fail", objective_source(local_aws, 0.0), "Random", max_jobs=2, ranges=ranges
    )
    sagemaker.create_hyper_parameter_tuning_job(**request)

    description = wait_for_tuning(sagemaker, "tune-all-fail")

    assert description["HyperParameterTuningJobStatus"] == "Failed"
    assert "No training job succeeded after 2 attempts" in description["FailureReason"]
    assert "BestTrainingJob" not in description


def test_stop_tuning_job_stops_its_running_trials(local_aws):
    sagemaker = client(local_aws, "sagemaker")
    request = tuning_request("tune-stop", objective_source(local_aws, 5.0), "Random", max_jobs=4, epochs=20)
    sagemaker.create_hyper_parameter_tuning_job(**request)
    wait_until(lambda: len(trials_of(sagemaker, "tune-stop")) == 2)

    sagemaker.stop_hyper_parameter_tuning_job(HyperParameterTuningJobName="tune-stop")
    description = wait_for_tuning(sagemaker, "tune-stop", timeout=30)

    assert description["HyperParameterTuningJobStatus"] == "Stopped"
    assert description["TrainingJobStatusCounters"]["Stopped"] == 2
    assert {t["TrainingJobStatus"] for t in trials_of(sagemaker, "tune-stop")} == {"Stopped"}
    with pytest.raises(ClientError, match="status Stopped"):
        sagemaker.stop_hyper_parameter_tuning_job(HyperParameterTuningJobName="tune-stop")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"HyperParameterTuningJobName": "x" * 33}, "length less than or equal to 32"),
        ({"Strategy": "Grid"}, "Grid search supports only integer and categorical"),
        (
            {"HyperParameterTuningJobObjective": {"Type": "Maximize", "MetricName": "nope"}},
            "MetricDefinitions",
        ),
        ({"Strategy": "Hyperband", "TrainingJobEarlyStoppingType": "Auto"}, "must be Off"),
        (
            {"ParameterRanges": {"CategoricalParameterRanges": [{"Name": "epochs", "Values": ["1"]}]}},
            "static",
        ),
        # The botocore model is the spec: its enum, in AWS's wording.
        ({"Strategy": "Sideways"}, "Member must satisfy enum value set: [Bayesian, Random, Hyperband, Grid]"),
    ],
)
def test_bad_tuning_requests_are_validation_errors(local_aws, change, message):
    sagemaker = client(local_aws, "sagemaker")
    request = tuning_request("tune-bad", "s3://sm-test/code/x.tar.gz")
    if "HyperParameterTuningJobName" in change:
        request.update(change)
    else:
        request["HyperParameterTuningJobConfig"].update(change)

    with pytest.raises(ClientError) as raised:
        sagemaker.create_hyper_parameter_tuning_job(**request)

    assert raised.value.response["Error"]["Code"] == "ValidationException"
    assert message in raised.value.response["Error"]["Message"]


def test_duplicate_tuning_job_is_resource_in_use_and_unknown_is_not_found(local_aws):
    sagemaker = client(local_aws, "sagemaker")
    request = tuning_request("tune-dup", objective_source(local_aws, 0.0), max_jobs=1, max_parallel=1)
    sagemaker.create_hyper_parameter_tuning_job(**request)

    with pytest.raises(ClientError) as duplicate:
        sagemaker.create_hyper_parameter_tuning_job(**request)
    with pytest.raises(ClientError) as unknown:
        sagemaker.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName="no-such-tuning")

    assert duplicate.value.response["Error"]["Code"] == "ResourceInUse"
    assert unknown.value.response["Error"]["Code"] == "ValidationException"
    assert "Could not find" in unknown.value.response["Error"]["Message"]
    wait_for_tuning(sagemaker, "tune-dup")


class FastClock:
    """The hook re-describes a training job only every 30 s of time.monotonic(); let that pass at once."""

    def __init__(self) -> None:
        self._now = 0.0

    def monotonic(self) -> float:
        self._now += 31
        return self._now

    def time(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(min(seconds, 0.2))


def test_airflow_sagemaker_hook_trains_and_tunes_against_local_aws(local_aws, tmp_path, monkeypatch, capfd):
    connection = {
        "conn_type": "aws",
        "login": "x",
        "password": "x",
        "extra": {"endpoint_url": local_aws.url, "region_name": "us-east-1"},
    }
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow"))
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(connection))
    from airflow.providers.amazon.aws.hooks import sagemaker as hook_module

    monkeypatch.setattr(hook_module, "time", FastClock())
    hook = hook_module.SageMakerHook(aws_conn_id="aws_default")
    source = objective_source(local_aws, 0.05)

    hook.create_training_job(
        training_request("hook-train", source, {"epochs": "2"}),
        wait_for_completion=True,
        print_log=True,
        check_interval=1,
    )
    hook.create_tuning_job(
        tuning_request("hook-tune", source, max_jobs=2), wait_for_completion=True, check_interval=1
    )

    assert hook.describe_training_job("hook-train")["TrainingJobStatus"] == "Completed"
    printed = "".join(capfd.readouterr())  # Airflow 3 logs through structlog to the console
    assert "valid_accuracy=" in printed  # the provider tailed the CloudWatch log stream
    assert "Training - Training image download completed" in printed  # and the secondary statuses
    assert "Billable seconds" in printed
    tuning = hook.describe_tuning_job("hook-tune")
    assert tuning["HyperParameterTuningJobStatus"] == "Completed"
    assert tuning["BestTrainingJob"]["TrainingJobStatus"] == "Completed"
