"""The model page's view model, from recorded answers, without Airflow or AWS running.

``ui_recorded/local_aws_tiny_run.json`` is what local_aws and the ``make airflow`` stack
answered after one tiny-profile run (describe/list responses, the training job's CloudWatch
log lines, the runs with their task states and XComs). Shapes local_aws does not produce yet
(a blue/green deployment, a registered model package) are written here from botocore's
service model, field for field.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from metric_lines import scrape

from dog_breed import gate, specs
from dog_breed.ui import charts, view_model
from dog_breed.ui.view_model import EndpointRecords, RunRecord

RECORDED = json.loads((Path(__file__).parent / "ui_recorded" / "local_aws_tiny_run.json").read_text())
DATASET = "s3://dog-breed-pipeline/dogImages"
PACKAGE_ARN = "arn:aws:sagemaker:us-east-1:123456789012:model-package/dog-breed-classifier/3"


def tags(items: list[dict[str, str]]) -> dict[str, str]:
    return specs.tags_as_dict(items)


def recorded_endpoint(**changes: Any) -> EndpointRecords:
    fields: dict[str, Any] = {
        "endpoint": RECORDED["endpoint"],
        "endpoint_config": RECORDED["endpoint_config"],
        "endpoint_tags": tags(RECORDED["endpoint_tags"]),
        "endpoint_config_tags": tags(RECORDED["endpoint_config_tags"]),
        "model": RECORDED["model"],
        "training_job": RECORDED["training_job"],
        "scalable_targets": RECORDED["scalable_targets"],
        "scaling_policies": RECORDED["scaling_policies"],
    }
    return EndpointRecords(**{**fields, **changes})


def run_record(recorded: dict[str, Any], **changes: Any) -> RunRecord:
    fields = {
        "run_id": recorded["run_id"],
        "run_type": recorded["run_type"],
        "state": recorded["state"],
        "run_after": datetime.fromisoformat(recorded["run_after"]),
        "start_date": datetime.fromisoformat(recorded["start_date"]) if recorded["start_date"] else None,
        "conf": recorded["conf"] or {},
        "task_states": recorded["task_states"],
        "returns": recorded["returns"],
    }
    return RunRecord(**{**fields, **changes})


@pytest.fixture
def records() -> list[RunRecord]:
    return [run_record(run) for run in RECORDED["runs"]]


@pytest.fixture
def deployed(records) -> RunRecord:
    (run,) = [r for r in records if r.task_states.get("deploy_endpoint") == "success"]
    return run


# -- the live endpoint --------------------------------------------------------------------------
def test_the_live_endpoint_shows_status_config_instances_scaling_and_the_model_behind_it() -> None:
    view = view_model.endpoint_view("dog-breed-classifier", recorded_endpoint())
    endpoint_tags = tags(RECORDED["endpoint_tags"])
    assert view.exists and view.status == "InService"
    assert view.endpoint_config == RECORDED["endpoint"]["EndpointConfigName"]
    assert view.variant == "AllTraffic"
    assert view.instance_type == RECORDED["endpoint_config"]["ProductionVariants"][0]["InstanceType"]
    assert (view.current_instance_count, view.desired_instance_count) == (1, 1)
    assert view.scaling == view_model.ScalingView(
        min_capacity=1,
        max_capacity=3,
        target_invocations_per_instance=10.0,
        policy_name=RECORDED["scaling_policies"][0]["PolicyName"],
    )
    assert view.model_name == RECORDED["endpoint_config"]["ProductionVariants"][0]["ModelName"]
    assert view.model_data_url == RECORDED["model"]["PrimaryContainer"]["ModelDataUrl"]
    assert view.training_job == RECORDED["training_job"]["TrainingJobName"]
    assert view.test_accuracy == pytest.approx(float(endpoint_tags[gate.TAG_TEST_ACCURACY]))
    assert view.deployed_by_run == endpoint_tags[gate.TAG_DAG_RUN]
    assert view.model_package is None, "no registry tag yet"


def test_an_endpoint_that_does_not_exist_yet_says_so() -> None:
    view = view_model.endpoint_view("dog-breed-classifier", EndpointRecords())
    assert view == view_model.EndpointView(name="dog-breed-classifier", exists=False)


def test_an_endpoint_without_a_scalable_target_has_no_scaling_range() -> None:
    view = view_model.endpoint_view("e", recorded_endpoint(scalable_targets=(), scaling_policies=()))
    assert view.scaling is None


def test_the_registry_version_comes_from_the_package_tag_and_describe_model_package() -> None:
    config_tags = {**tags(RECORDED["endpoint_config_tags"]), gate.TAG_MODEL_PACKAGE_ARN: PACKAGE_ARN}
    described = {  # DescribeModelPackage (botocore sagemaker service-2.json)
        "ModelPackageName": "dog-breed-classifier",
        "ModelPackageGroupName": "dog-breed-classifier",
        "ModelPackageVersion": 3,
        "ModelPackageArn": PACKAGE_ARN,
        "ModelPackageStatus": "Completed",
        "ModelApprovalStatus": "Approved",
    }
    view = view_model.endpoint_view(
        "e", recorded_endpoint(endpoint_config_tags=config_tags, model_package=described)
    )
    assert view.model_package == view_model.ModelPackageView(
        arn=PACKAGE_ARN, group="dog-breed-classifier", version=3, approval_status="Approved"
    )
    # Not readable (or not there any more): the ARN alone still names group and version.
    bare = view_model.endpoint_view("e", recorded_endpoint(endpoint_config_tags=config_tags))
    assert bare.model_package == view_model.ModelPackageView(
        arn=PACKAGE_ARN, group="dog-breed-classifier", version=3, approval_status=None
    )


# -- canary traffic -------------------------------------------------------------------------------
def test_without_a_blue_green_deployment_the_canary_section_is_empty() -> None:
    assert view_model.canary_view(RECORDED["endpoint"]) == view_model.CanaryView(active=False)
    assert view_model.canary_view(None) == view_model.CanaryView(active=False)


def test_a_canary_in_progress_shows_each_fleets_share_and_phase() -> None:
    """DescribeEndpoint as local_aws answers during a 50% canary (see test_local_aws_rollouts):
    the live fleet's weight halved, the new fleet's the other half, the phase in VariantStatus."""
    endpoint = {
        **RECORDED["endpoint"],
        "EndpointStatus": "Updating",
        "ProductionVariants": [{**RECORDED["endpoint"]["ProductionVariants"][0], "CurrentWeight": 0.5}],
        "PendingDeploymentSummary": {  # PendingDeploymentSummary / PendingProductionVariantSummary
            "EndpointConfigName": "dog-breed-pipeline-epc-new",
            "ProductionVariants": [
                {
                    "VariantName": "AllTraffic",
                    "CurrentWeight": 0.5,
                    "DesiredWeight": 1.0,
                    "CurrentInstanceCount": 2,
                    "DesiredInstanceCount": 2,
                    "VariantStatus": [
                        {"Status": "Baking", "StatusMessage": "Canary: 1 of 2 instance(s) of the new fleet"}
                    ],
                },
            ],
        },
        "LastDeploymentConfig": {
            "BlueGreenUpdatePolicy": {
                "TrafficRoutingConfiguration": {
                    "Type": "CANARY",
                    "WaitIntervalInSeconds": 300,
                    "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 10},
                },
                "TerminationWaitInSeconds": 120,
            },
            "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "dog-breed-5xx"}]},
        },
    }
    view = view_model.canary_view(endpoint)
    assert view.active and view.in_progress
    assert view.endpoint_config == "dog-breed-pipeline-epc-new"
    assert view.routing == "CANARY 10%, wait 300 s between steps"
    live_config = RECORDED["endpoint"]["EndpointConfigName"]
    assert [(t.fleet, t.endpoint_config, t.variant, t.share, t.statuses) for t in view.traffic] == [
        ("live", live_config, "AllTraffic", 0.5, []),
        ("new", "dog-breed-pipeline-epc-new", "AllTraffic", 0.5, ["Baking"]),
    ]
    assert view.traffic[1].messages == ["Canary: 1 of 2 instance(s) of the new fleet"]
    assert view.auto_rollback_alarms == ["dog-breed-5xx"]
    assert view.failure_reason is None


def test_a_rolled_back_update_shows_why() -> None:
    endpoint = {
        **RECORDED["endpoint"],
        "FailureReason": "Rolled back to the previous endpoint configuration: CloudWatch alarm(s) [x] ...",
        "LastDeploymentConfig": {
            "BlueGreenUpdatePolicy": {"TrafficRoutingConfiguration": {"Type": "CANARY"}}
        },
    }
    assert view_model.canary_view(endpoint).failure_reason.startswith("Rolled back")


def test_after_a_deployment_the_last_deployment_config_remains() -> None:
    routing = {"Type": "LINEAR", "LinearStepSize": {"Type": "INSTANCE_COUNT", "Value": 1}}
    endpoint = {
        **RECORDED["endpoint"],
        "LastDeploymentConfig": {"BlueGreenUpdatePolicy": {"TrafficRoutingConfiguration": routing}},
    }
    view = view_model.canary_view(endpoint)
    assert view.active and not view.in_progress
    assert view.routing == "LINEAR 1 instance(s)"
    assert [(t.variant, t.share) for t in view.traffic] == [("AllTraffic", 1.0)]


# -- the runs -------------------------------------------------------------------------------------
def test_a_deployed_run_shows_its_test_accuracy_the_gates_decision_and_that_it_deployed(deployed) -> None:
    live = tags(RECORDED["endpoint_tags"])[gate.TAG_DAG_RUN]
    (row,) = [r for r in view_model.run_views([deployed], live) if r.run_id == deployed.run_id]
    decision = deployed.returns["quality_gate"]
    assert row.test_accuracy == gate.final_metric(deployed.returns["train"]["Training"])
    assert row.test_accuracy == decision["challenger_accuracy"]
    assert (row.gate, row.gate_reason, row.threshold) == ("deploy", decision["reason"], decision["threshold"])
    assert row.deployed and row.smoke_test == "success" and row.state == "success"
    assert row.training_job == deployed.returns["train"]["Training"]["TrainingJobName"]
    assert row.live == (deployed.run_id == live)


def test_runs_come_newest_first_and_a_run_stopped_by_hand_has_no_verdict(records) -> None:
    rows = view_model.run_views(records)
    assert [r.started for r in rows] == sorted((r.started for r in rows), reverse=True)
    (stopped,) = [r for r in rows if r.run_type == "scheduled"]  # the catch-up run the test stopped
    assert (stopped.state, stopped.gate, stopped.test_accuracy, stopped.deployed) == (
        "failed",
        "not reached",
        None,
        False,
    )


def test_a_run_the_gate_held_back_is_marked_hold(deployed) -> None:
    held = run_record(
        next(r for r in RECORDED["runs"] if r["run_id"] == deployed.run_id),
        task_states={"train": "success", "quality_gate": "skipped", "deploy_endpoint": "skipped"},
        returns={"train": deployed.returns["train"]},  # a skipped task returns nothing
    )
    (row,) = view_model.run_views([held])
    assert (row.gate, row.deployed) == ("hold", False)
    assert row.test_accuracy is not None
    assert row.threshold == deployed.conf["accuracy_threshold"], "from the run's Params"


def test_the_latest_training_job_is_the_newest_runs(records) -> None:
    rows = view_model.run_views(records)
    assert view_model.latest_training_job(rows) == RECORDED["training_job"]["TrainingJobName"]
    assert view_model.latest_training_job([]) is None


# -- training curves ------------------------------------------------------------------------------
def test_training_curves_are_the_per_epoch_metric_lines_of_the_jobs_log() -> None:
    lines = RECORDED["training_log_lines"]
    job = RECORDED["training_job"]
    curves = view_model.training_curves(job["TrainingJobName"], lines, job, source="logs")
    epoch_lines = [line for line in lines if line.startswith("[metrics] epoch=")]
    assert curves.epochs == list(range(1, len(epoch_lines) + 1))
    assert {"train:loss", "valid:loss", "valid:accuracy"} <= set(curves.series)
    # The last epoch's values are what SageMaker's scrape ends with for the per-epoch metrics.
    last = scrape("\n".join(epoch_lines))
    for name in ("train:loss", "valid:loss", "valid:accuracy"):
        assert len(curves.series[name]) == len(curves.epochs)
        assert curves.series[name][-1] == last[name]
    assert curves.final_metrics["test:accuracy"] == gate.final_metric(job)


def test_an_epoch_logged_twice_keeps_its_last_values_and_other_lines_are_ignored() -> None:
    lines = [
        "[metrics] epoch=1 train_loss=2.0 valid_loss=2.5 valid_accuracy=0.1",
        "epoch=7 is not a metrics line",
        "[metrics] best_valid_accuracy=0.9 test_accuracy=0.8",
        "[metrics] epoch=1 train_loss=1.5 valid_loss=2.0 valid_accuracy=0.2",  # a resumed job
        "[metrics] epoch=2 train_loss=1.0 valid_loss=1.5",
    ]
    curves = view_model.training_curves("job", lines)
    assert curves.epochs == [1, 2]
    assert curves.series["train:loss"] == [1.5, 1.0]
    assert curves.series["valid:accuracy"] == [0.2, None]
    assert curves.final_metrics == {}


# -- the profiler report --------------------------------------------------------------------------
def test_the_profiler_report_is_under_the_profiler_output_path_by_default() -> None:
    job = RECORDED["training_job"]
    uri, status = view_model.profiler_report_location(job)
    base = job["ProfilerConfig"]["S3OutputPath"].rstrip("/")
    assert (
        uri
        == f"{base}/{job['TrainingJobName']}/rule-output/ProfilerReport/profiler-output/profiler-report.html"
    )
    assert status["RuleEvaluationStatus"] == job["ProfilerRuleEvaluationStatuses"][0]["RuleEvaluationStatus"]
    view = view_model.profiler_view(job["TrainingJobName"], job, report_exists=False)
    assert (view.report_uri, view.available, view.rule_status) == (uri, False, status["RuleEvaluationStatus"])


def test_a_rule_output_path_aws_filled_in_is_used_as_is() -> None:
    job = {
        **RECORDED["training_job"],
        "ProfilerRuleConfigurations": [
            {
                "RuleConfigurationName": "ProfilerReport-1700000000",
                "LocalPath": "/opt/ml/processing/output/rule",
                "S3OutputPath": "s3://sagemaker-us-east-1-123456789012/job/rule-output",
                "RuleParameters": {"rule_to_invoke": "ProfilerReport"},
            }
        ],
    }
    uri, _ = view_model.profiler_report_location(job)
    assert uri == (
        "s3://sagemaker-us-east-1-123456789012/job/rule-output/"
        "ProfilerReport-1700000000/profiler-output/profiler-report.html"
    )


def test_a_job_without_the_profiler_report_rule_has_no_report_to_link() -> None:
    job = {**RECORDED["training_job"], "ProfilerRuleConfigurations": []}
    assert view_model.profiler_report_location(job) is None
    assert view_model.profiler_view("job", job, report_exists=False).report_uri is None


# -- the smoke test -------------------------------------------------------------------------------
def test_the_smoke_test_shows_each_prediction_with_the_image_it_sent(records, deployed) -> None:
    view = view_model.smoke_test_view(records, DATASET, lambda run_id, i: f"thumb/{run_id}/{i}")
    report = deployed.returns["smoke_test"]
    assert view.run_id == deployed.run_id
    assert view.latency_ms_p50 == report["latency_ms_p50"] and view.top1_accuracy == report["top1_accuracy"]
    assert len(view.predictions) == len(report["predictions"]) == report["images"]
    dataset = deployed.conf["dataset_s3_uri"]
    for index, (shown, sent) in enumerate(zip(view.predictions, report["predictions"], strict=True)):
        assert shown.s3_uri == f"{dataset}/test/{sent['expected']}/{sent['image']}"
        assert shown.correct == (sent["expected"] == sent["predicted"])
        assert shown.thumbnail == f"thumb/{deployed.run_id}/{index}"
        assert view_model.smoke_test_image(deployed, index, DATASET) == shown.s3_uri
    assert view_model.smoke_test_image(deployed, len(report["predictions"]), DATASET) is None
    assert view_model.smoke_test_image(deployed, -1, DATASET) is None


def test_no_smoke_test_yet(records) -> None:
    assert view_model.smoke_test_view([r for r in records if not r.returns], DATASET, str) is None


# -- charts ---------------------------------------------------------------------------------------
def test_the_accuracy_chart_has_one_point_per_run_that_trained(records) -> None:
    rows = view_model.run_views(records)
    figure = charts.accuracy_over_runs(rows)
    (points, *_threshold) = figure["data"]
    scored = [r for r in rows if r.test_accuracy is not None]
    assert len(points["y"]) == len(scored) == 1
    assert points["customdata"][0][0] == scored[0].run_id


def test_the_curves_chart_draws_loss_and_accuracy_per_epoch() -> None:
    job = RECORDED["training_job"]
    curves = view_model.training_curves(job["TrainingJobName"], RECORDED["training_log_lines"], job)
    figure = charts.training_curves(curves)
    drawn = {trace["name"]: trace for trace in figure["data"]}
    assert set(drawn) == {"train:loss", "valid:loss", "valid:accuracy"}
    assert all(list(trace["x"]) == curves.epochs for trace in drawn.values())


def test_a_run_waiting_for_a_person_links_to_airflows_review_form(deployed) -> None:
    waiting = run_record(
        next(r for r in RECORDED["runs"] if r["run_id"] == deployed.run_id),
        task_states={"train": "success", "quality_gate": "success", "review": "awaiting_input"},
    )
    reviewed = run_record(
        next(r for r in RECORDED["runs"] if r["run_id"] == deployed.run_id),
        task_states={**deployed.task_states, "review": "success"},
    )

    def form(run_id: str) -> str:
        return f"/dags/dog_breed_pipeline/runs/{run_id}/tasks/review/required_actions"

    (row,) = view_model.run_views([waiting], review_url=form)
    assert row.review_url == form(deployed.run_id) and not row.deployed
    (row,) = view_model.run_views([reviewed], review_url=form)
    assert row.review_url is None, "an answered review is no longer waiting"
    (row,) = view_model.run_views([waiting])
    assert row.review_url is None, "nowhere to link to without the UI's address"
