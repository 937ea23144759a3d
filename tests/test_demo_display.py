"""What `make demo` shows, from recorded API answers and a recorded summary, without a DAG run:
the progress lines (one per change, plain when stdout is not a terminal) and the summary tables."""

from __future__ import annotations

import copy
import re
from datetime import UTC, datetime

import pytest

from local_aws.devtools import demo_display as display
from local_aws.devtools.terminal import Terminal, stamp

TUNING_JOB = "dbp-tune-20261202"
TRIAL = f"{TUNING_JOB}-{{:03d}}-abcd"
FINAL_JOB = "dbp-train-20261202"


def trial(number: int, status: str, objective: float | None = None) -> dict:
    summary = {
        "TrainingJobName": TRIAL.format(number),
        "TrainingJobStatus": status,
        "CreationTime": datetime(2026, 12, 2, 1, number, tzinfo=UTC),
        "TunedHyperParameters": {"batch_size": "16", "lr": "0.001"},
    }
    if objective is not None:
        summary["FinalHyperParameterTuningJobObjectiveMetric"] = {
            "MetricName": "valid:best_accuracy",
            "Value": objective,
        }
    return summary


def tuning(status: str = "InProgress", objective_type: str = "Maximize") -> dict:
    return {
        "HyperParameterTuningJobName": TUNING_JOB,
        "HyperParameterTuningJobStatus": status,
        "HyperParameterTuningJobConfig": {
            "ResourceLimits": {"MaxNumberOfTrainingJobs": 4, "MaxParallelTrainingJobs": 2},
            "HyperParameterTuningJobObjective": {"Type": objective_type, "MetricName": "valid:best_accuracy"},
        },
    }


# A job log as CloudWatch Logs returns it: timestamps in front, other lines in between.
TRAINING_LOG = """\
2026-12-02T01:30:00Z starting with 2 threads
2026-12-02T01:30:05Z [metrics] epoch=1 train_loss=1.6012 valid_accuracy=0.4000 images_per_sec=14.2
2026-12-02T01:30:15Z [metrics] epoch=2 valid_loss=0.9000 valid_accuracy=0.7600 images_per_sec=15.1
2026-12-02T01:30:30Z [metrics] best_valid_accuracy=0.7600 test_loss=0.8000 test_accuracy=0.9200
2026-12-02T01:30:31Z [timing] phase=train seconds=25.000
"""

SUMMARY = {
    "run_id": "manual__2026-12-02T01:24:39",
    "run_state": "success",
    "dag_seconds": 251.4,
    "tasks": {"check_dataset": "success", "tune": "success", "train": "success", "smoke_test": "success"},
    "task_durations": [
        {"task": "check_dataset", "state": "success", "seconds": 5.6},
        {"task": "tune", "state": "success", "seconds": 109.3},
        {"task": "train", "state": "success", "seconds": 61.0},
        {"task": "smoke_test", "state": "success", "seconds": 3.2},
    ],
    "tuning": {
        "job": TUNING_JOB,
        "status": "Completed",
        "trials": {"Completed": 4, "InProgress": 0},
        "best_training_job": TRIAL.format(3),
        "best_hyperparameters": {"batch_size": "16", "lr": "0.0021"},
        "best_objective": {"MetricName": "valid:best_accuracy", "Value": 0.88},
        "trials_detail": [
            {
                "job": TRIAL.format(n),
                "status": "Completed",
                "hyperparameters": {"batch_size": "16", "lr": f"0.00{n}12345"},
                "objective": 0.5 + n / 10,
                "seconds": 40.0 + n,
                "timings": {
                    "download": 0.7,
                    "start": 4.1,
                    "data": 1.2,
                    "train": 30.5,
                    "evaluate": 2.0,
                    "upload": 0.4,
                },
            }
            for n in (1, 2, 3, 4)
        ],
    },
    "training": {
        "job": FINAL_JOB,
        "status": "Completed",
        "instances": 1,
        "seconds": 58,
        "test_accuracy": 0.92,
        "epochs": 6,
        "timings": {
            "download": 0.6,
            "start": 4.0,
            "train": 40.2,
            "evaluate": 2.2,
            "export": 6.3,
            "upload": 0.5,
        },
        "metrics": {"test:accuracy": 0.92, "test:loss": 0.31},
        "debugger_rules": {"LossNotDecreasing": "NoIssuesFound"},
    },
    "endpoint": {"name": "dog-breed-classifier", "status": "InService", "config": "cfg-1", "instances": [2]},
    "autoscaling": [
        {
            "resource": "endpoint/dog-breed-classifier/variant/AllTraffic",
            "policy": "invocations",
            "target": 50.0,
            "metric": "SageMakerVariantInvocationsPerInstance",
            "scale_out_cooldown": 30,
            "scale_in_cooldown": 120,
        },
    ],
    "rollout": {
        "routing": "none yet (the first deployment is CreateEndpoint, no canary)",
        "rollback_alarms": {},
    },
    "smoke_test": {
        "images": 2,
        "runtime": "onnx-int8",
        "latency_ms_p50": 41.5,
        "latency_ms_max": 97.25,
        "top1_accuracy": 0.5,
        "problems": [],
        "predictions": [
            {
                "image": "a.jpg",
                "expected": "001.Affenpinscher",
                "predicted": "001.Affenpinscher",
                "probability": 0.91,
                "latency_ms": 97.25,
            },
            {
                "image": "b.jpg",
                "expected": "002.Akita",
                "predicted": "003.Beagle",
                "probability": 0.4,
                "latency_ms": 41.5,
            },
        ],
    },
    "registry": {
        "group": "dog-breed-classifier",
        "versions": [
            {
                "version": 1,
                "status": "Approved",
                "approval": "auto: 0.92 >= 0.90",
                "test_accuracy": 0.92,
                "test_loss": 0.31,
                "training_job": FINAL_JOB,
                "live": True,
                "arn": "arn:1",
            },
        ],
        "live_version": 1,
    },
}


def plain(summary: dict) -> str:
    return display.render_plain(display.summary_tables(summary))


def table(summary: dict, title_start: str) -> str:
    """The one summary table whose title starts with ``title_start``, as plain text."""
    (found,) = [
        text
        for text in (display.render_plain([t]) for t in display.summary_tables(summary))
        if text.lstrip("\n").startswith(title_start)
    ]
    return found


def row(text: str, first_cell: str) -> list[str]:
    """The cells of the row that starts with ``first_cell``."""
    (line,) = [line for line in text.splitlines() if line.split() and line.split()[0] == first_cell]
    return line.split()


# -- progress lines ------------------------------------------------------------------------------
def test_a_task_gets_a_line_only_when_its_state_changes_to_one_worth_showing():
    before = {"check_dataset": "running", "tune": None, "train": None}
    after = {"check_dataset": "success", "tune": "queued", "train": None}
    assert display.task_changes(before, after) == ["task check_dataset: success"]
    assert display.task_changes(after, {**after, "tune": "deferred"}) == ["task tune: deferred"]
    assert display.task_changes(after, after) == []


def test_tuning_line_counts_done_trials_and_names_the_best_so_far():
    trials = [
        trial(1, "Completed", 0.62),
        trial(2, "Completed", 0.81),
        trial(3, "InProgress"),
        trial(4, "Failed"),
    ]
    line = display.tuning_line(tuning(), trials)
    assert line == (
        f"tuning {TUNING_JOB}: 3 of 4 done, 1 running; best valid:best_accuracy 0.8100 ({TRIAL.format(2)})"
    )


def test_tuning_line_honours_a_minimized_objective_and_says_when_the_job_ended():
    trials = [trial(1, "Completed", 0.62), trial(2, "Completed", 0.81)]
    line = display.tuning_line(tuning("Completed", "Minimize"), trials)
    assert f"best valid:best_accuracy 0.6200 ({TRIAL.format(1)})" in line and line.endswith("; Completed")


def test_tuning_line_before_any_trial_reports():
    assert display.tuning_line(tuning(), []) == f"tuning {TUNING_JOB}: 0 of 4 done"


def test_epochs_come_from_the_metrics_lines_of_the_log_and_nothing_else():
    epochs = display.parse_epochs(TRAINING_LOG)
    assert [e["epoch"] for e in epochs] == [1.0, 2.0]
    assert epochs[1]["valid_accuracy"] == 0.76 and epochs[1]["images_per_sec"] == 15.1


def test_training_line_shows_epochs_done_of_the_total():
    job = {
        "TrainingJobName": FINAL_JOB,
        "TrainingJobStatus": "InProgress",
        "SecondaryStatus": "Training",
        "HyperParameters": {"epochs": "6"},
    }
    assert display.training_line(job, display.parse_epochs(TRAINING_LOG)) == (
        f"training {FINAL_JOB}: Training, epoch 2 of 6 done, valid accuracy 0.7600, 15.1 images/s"
    )
    starting = {**job, "SecondaryStatus": "Downloading"}
    assert display.training_line(starting, []) == f"training {FINAL_JOB}: Downloading"


def test_endpoint_line_during_a_canary_shows_the_new_fleets_share():
    endpoint = {
        "EndpointName": "dog-breed-classifier",
        "EndpointStatus": "Updating",
        "ProductionVariants": [{"CurrentInstanceCount": 2}],
    }
    canary = {
        "seconds": 3.0,
        "status": "Updating",
        "live_config": "cfg-1",
        "new_config": "cfg-2",
        "new_fleet_share": 0.5,
        "phase": "Baking",
    }
    assert display.endpoint_line(endpoint, canary) == (
        "endpoint dog-breed-classifier: Updating, 2 instance(s), 50% of traffic on the new fleet (Baking)"
    )
    creating = {"EndpointName": "dog-breed-classifier", "EndpointStatus": "Creating"}
    assert display.endpoint_line(creating, None) == "endpoint dog-breed-classifier: Creating"


def test_plain_terminal_stamps_each_line_with_the_elapsed_time(capsys):
    terminal = Terminal(live=False)
    with terminal.showing(lambda: pytest.fail("nothing is drawn when not a terminal")):
        terminal.line("task tune: running")
    assert re.fullmatch(r"\[ +\d+ s\] task tune: running\n", capsys.readouterr().out)
    assert stamp(12.4, "x") == "[    12 s] x"


# -- the summary ----------------------------------------------------------------------------------
def test_summary_is_plain_text_without_colour_codes():
    text = plain(SUMMARY)
    assert "\x1b[" not in text
    assert "DAG run manual__2026-12-02T01:24:39: success in 251 s" in text


def test_summary_lists_each_task_with_its_duration():
    text = table(SUMMARY, "DAG run")
    assert row(text, "tune") == ["tune", "success", "109.3"]
    assert row(text, "smoke_test") == ["smoke_test", "success", "3.2"]


def test_summary_shows_every_trial_and_marks_the_best():
    text = table(SUMMARY, "tuning")
    assert row(text, TRIAL.format(3)) == [TRIAL.format(3), "*", "Completed", "16", "0.00312", "0.8000", "43"]
    assert row(text, TRIAL.format(1))[:2] == [TRIAL.format(1), "Completed"]


def test_summary_breaks_each_jobs_time_into_its_phases_in_job_order():
    text = table(SUMMARY, "where each job's time went")
    header = row(text, "job")
    assert header == ["job", "download", "start", "data", "train", "evaluate", "export", "upload", "total"]
    # A trial has no export (only the final job exports int8): a dash, not a zero.
    (trial_2,) = [line.split() for line in text.splitlines() if line.split()[:2] == ["trial", "002"]]
    assert trial_2 == ["trial", "002", "0.7", "4.1", "1.2", "30.5", "2.0", "-", "0.4", "42"]
    assert row(text, "training") == ["training", "0.6", "4.0", "-", "40.2", "2.2", "6.3", "0.5", "58"]


def test_summary_shows_training_endpoint_predictions_with_latency_and_the_registry():
    text = plain(SUMMARY)
    assert row(text, "test")[:3] == ["test", "accuracy", "0.9200"]
    assert row(text, "epochs") == ["epochs", "6"]
    assert "LossNotDecreasing" in text and "NoIssuesFound" in text
    assert row(table(SUMMARY, "endpoint"), "autoscaling") == [
        "autoscaling", "SageMakerVariantInvocationsPerInstance", "target", "50,",
        "cooldowns", "out", "30", "s", "/", "in", "120", "s",
    ]  # fmt: skip
    assert row(text, "b.jpg") == ["b.jpg", "002.Akita", "003.Beagle", "0.4000", "41.5"]
    assert "latency p50 41.5 ms, max 97.2 ms" in text
    assert row(table(SUMMARY, "model registry"), "1") == [
        "1",
        "Approved",
        "0.9200",
        "0.310",
        "yes",
        "auto:",
        "0.92",
        ">=",
        "0.90",
    ]


def test_a_first_run_shows_no_rollout_table_and_a_retraining_shows_its_traffic_over_time():
    assert "traffic over time" not in plain(SUMMARY)
    retraining = copy.deepcopy(SUMMARY)
    retraining["rollout"] = {
        "routing": {"Type": "CANARY", "CanarySize": {"Type": "INSTANCE_COUNT", "Value": 1}},
        "rollback_alarms": {"dog-breed-classifier/rollback/AllTraffic/5xx-errors": "OK"},
        "failure_reason": None,
        "timeline": [
            {
                "seconds": 0.3,
                "status": "InService",
                "live_config": "cfg-1",
                "new_config": None,
                "new_fleet_share": None,
                "phase": None,
            },
            {
                "seconds": 9.8,
                "status": "Updating",
                "live_config": "cfg-1",
                "new_config": "cfg-2",
                "new_fleet_share": 0.5,
                "phase": "Baking",
            },
        ],
    }
    text = plain(retraining)
    assert "traffic over time" in text
    assert "+   9.8 s  Updating    50% on the new fleet, live cfg-1 (Baking)" in text
    assert "5xx-errors OK" in text


def test_a_failed_run_still_renders_what_it_reached():
    failed = {k: SUMMARY[k] for k in ("run_id", "tasks", "task_durations")}
    failed |= {"run_state": "failed", "dag_seconds": None, "endpoint": {"name": "e", "error": "not found"}}
    text = plain(failed)
    assert "DAG run manual__2026-12-02T01:24:39: failed" in text and "not found" in text
    assert "smoke test" not in text
