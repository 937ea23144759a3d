"""The DAG loads cleanly, is wired as designed and parses light and fast."""

from __future__ import annotations

import copy
import itertools
import json
import re
import subprocess
import sys
from pathlib import Path

import airflow_fixtures  # noqa: F401  (AIRFLOW_HOME before Airflow)
import pytest

from dog_breed.params import PARAM_SPECS

ROOT = Path(__file__).resolve().parents[1]
DAG_ID = "dog_breed_pipeline"
ORDER = [
    "check_dataset",
    "package_source",
    "build_configs",
    "tune",
    "best_hyperparameters",
    "train",
    "model_package_request",
    "register_model",
    "quality_gate",
    "review",
    "deploy_configs",
    "create_model",
    "create_endpoint_config",
    "rollback_alarms",
    "prepare_endpoint_update",
    "deploy_endpoint",
    "tag_endpoint",
    "autoscale",
    "deploy_lambda",
    "smoke_test",
]
HEAVY = ["torch", "torchvision", "sagemaker", "onnxruntime", "openvino", "optuna", "moto"]


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(ROOT / "dags"))


@pytest.fixture(scope="module")
def dag(dagbag):
    return dagbag.dags[DAG_ID]


def test_no_import_errors_and_dag_present(dagbag):
    assert dagbag.import_errors == {}
    assert DAG_ID in dagbag.dags


def test_tasks_run_in_the_designed_order_without_cycles(dag):
    ids = set(dag.task_dict)
    assert ids == set(ORDER)
    for before, after in itertools.pairwise(ORDER):
        assert before in dag.task_dict[after].get_flat_relative_ids(upstream=True), f"{before} !< {after}"
    assert dag.task_dict["check_dataset"].upstream_task_ids == set()
    assert dag.task_dict["smoke_test"].downstream_task_ids == set()


def test_every_task_retries(dag):
    for task in dag.tasks:
        assert task.retries >= 1, task.task_id
        assert task.retry_delay.total_seconds() > 0


def test_schedule_catchup_and_concurrency(dag):
    from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable

    assert isinstance(dag.timetable, AssetOrTimeSchedule)
    assert isinstance(dag.timetable.timetable, CronTriggerTimetable)
    assert "s3://dog-breed-pipeline/dogImages" in repr(dag.timetable.asset_condition)
    assert dag.catchup is False
    assert dag.max_active_runs == 1


def test_params_defaults_validate_and_bad_values_are_rejected(dag):
    from airflow.sdk.exceptions import ParamValidationError

    resolved = dag.params.validate()
    assert resolved["endpoint_instance_type"] == "ml.m5.large"
    assert resolved["autoscaling_max_capacity"] == 3
    assert resolved["autoscaling_target_invocations"] == 10
    assert (resolved["scale_out_cooldown_s"], resolved["scale_in_cooldown_s"]) == (30, 120)
    assert resolved["lambda_provisioned_concurrency"] == 2
    assert (resolved["approval"], resolved["approval_timeout_hours"]) == ("auto", 24.0)
    assert resolved["model_package_group"] == "dog-breed-classifier"
    for name, bad in [
        ("tuning_strategy", "Genetic"),
        ("training_instance_count", 0),
        ("dataset_s3_uri", "/local/path"),
        ("endpoint_name", "bad_name!"),
        ("accuracy_threshold", 1.5),
        ("approval", "whoever"),
        ("approval_timeout_hours", 0),
        ("model_package_group", "bad_group!"),
    ]:
        param = copy.deepcopy(dag.params.get_param(name))
        with pytest.raises(ParamValidationError):
            param.resolve(bad)


def test_each_param_is_declared_once_as_a_settings_field(dag):
    """The DAG's Params are PipelineSettings' fields, with their defaults, in both directions."""
    import dataclasses

    from dog_breed.params import PipelineSettings

    assert list(dag.params) == list(PARAM_SPECS)
    assert set(dag.params) == {item.name for item in dataclasses.fields(PipelineSettings)}
    assert PipelineSettings.from_params(dag.params.validate()) == PipelineSettings()
    for name in dag.params:
        assert dag.params.get_param(name).description, name


def test_the_trigger_form_shows_the_sections_in_order_each_once(dag):
    from dog_breed.params import SECTIONS

    sections = [dag.params.get_param(name).schema["section"] for name in dag.params]
    assert [section for section, _ in itertools.groupby(sections)] == list(SECTIONS)


def test_the_serialized_dag_keeps_the_sections_the_form_reads(dag):
    """The UI builds the form from the serialized DAG, not from the Python objects."""
    from airflow.serialization.serialized_objects import DagSerialization

    from dog_breed.params import SECTIONS

    params = DagSerialization.from_dict(DagSerialization.to_dict(dag)).params
    sections = [params.get_param(name).schema["section"] for name in params]
    assert [section for section, _ in itertools.groupby(sections)] == list(SECTIONS)


PARAM_REFERENCE = re.compile(r"\{\{\s*params\.(\w+)\s*\}\}")


def test_operators_get_params_as_their_declared_types(dag):
    """``render_template_as_native_obj``: "{{ params.x }}" renders to x's type, so no operator casts."""
    import typing

    from dog_breed.params import PipelineSettings

    types = typing.get_type_hints(PipelineSettings)
    context = {"params": dag.params.validate()}
    rendered = {}
    for task in dag.tasks:
        for field_name in task.template_fields:
            value = getattr(task, field_name)
            if not isinstance(value, str):
                continue
            for name in PARAM_REFERENCE.findall(value):
                assert name in types, f"{task.task_id}.{field_name} uses undeclared Param {name!r}"
            if PARAM_REFERENCE.fullmatch(value):
                name = PARAM_REFERENCE.fullmatch(value).group(1)
                rendered[(task.task_id, field_name)] = task.render_template(value, context)
                assert type(rendered[(task.task_id, field_name)]) is types[name], (task.task_id, field_name)
    assert rendered[("autoscale", "min_capacity")] == 1
    assert rendered[("deploy_lambda", "provisioned_concurrency")] == 2
    assert rendered[("smoke_test", "image_count")] == 5
    assert rendered[("review", "approval_timeout_hours")] == 24.0
    assert len(rendered) >= 14


def test_sagemaker_operators_wait_long_enough_for_real_jobs(dag):
    train = dag.task_dict["train"]
    assert train.max_attempts * train.check_interval >= 24 * 3600
    assert train.max_ingestion_time >= 24 * 3600
    assert train.action_if_job_exists == "fail"  # names are resolved before; a race must not duplicate
    assert dag.task_dict["tune"].check_interval * 480 >= 24 * 3600


def test_custom_operators_template_the_run_settings(dag):
    assert "endpoint_name" in dag.task_dict["autoscale"].template_fields
    assert {"function_name", "memory_size", "provisioned_concurrency"} <= set(
        dag.task_dict["deploy_lambda"].template_fields
    )
    assert "rollback_endpoint_config" in dag.task_dict["smoke_test"].template_fields
    assert {"extras", "package_group_name", "package_desc"} <= set(
        dag.task_dict["register_model"].template_fields
    )
    assert {"gate", "approval_timeout_hours", "subject", "body"} <= set(
        dag.task_dict["review"].template_fields
    )
    assert "deployment_config" in dag.task_dict["deploy_endpoint"].template_fields
    alarms = dag.task_dict["rollback_alarms"]
    assert {"endpoint_name", "latency_p99_threshold_ms", "four_xx_share_threshold"} <= set(
        alarms.template_fields
    )
    assert alarms.four_xx_share_threshold == "{{ params.four_xx_share_threshold }}"
    # A rollback (SageMaker's or the smoke test's) marks the version the review decided on.
    for task_id in ("deploy_endpoint", "smoke_test"):
        task = dag.task_dict[task_id]
        assert "model_package_arn" in task.template_fields
        assert task.model_package_arn == "{{ ti.xcom_pull(task_ids='review')['package_arn'] }}"
        assert "review" in task.get_flat_relative_ids(upstream=True)
    for task_id in ("tune", "train", "create_model", "create_endpoint_config", "deploy_endpoint"):
        assert "config" in dag.task_dict[task_id].template_fields
        assert dag.task_dict[task_id].aws_conn_id == "aws_default"


PARSE_PROBE = """
import json, sys, time
sys.path[:0] = {paths!r}
started = time.perf_counter()
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder={dags!r})
elapsed = time.perf_counter() - started
import airflow.providers.amazon.aws.hooks.base_aws as base_aws
print(json.dumps({{"errors": list(bag.import_errors), "dags": list(bag.dags),
                   "heavy": [m for m in {heavy!r} if m in sys.modules],
                   "seconds": elapsed}}))
"""


def test_a_parse_imports_nothing_heavy_and_stays_within_budget():
    """A fresh interpreter parses the DAG: no torch / sagemaker SDK / moto, and under 10 s
    including Airflow's own import (the DAG file itself adds well under 2 s)."""
    code = PARSE_PROBE.format(paths=[str(ROOT / "plugins")], dags=str(ROOT / "dags"), heavy=HEAVY)
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr[-3000:]
    probe = json.loads(result.stdout.strip().splitlines()[-1])
    assert probe["errors"] == [] and probe["dags"] == [DAG_ID]
    assert probe["heavy"] == []
    assert probe["seconds"] < 10, probe


def test_the_dag_file_itself_parses_quickly(dagbag):
    """Re-parse with Airflow already imported: this is what the DAG processor pays per parse."""
    import time

    from airflow.dag_processing.dagbag import DagBag

    started = time.perf_counter()
    DagBag(dag_folder=str(ROOT / "dags" / "dog_breed_pipeline.py"))
    assert time.perf_counter() - started < 2.0
