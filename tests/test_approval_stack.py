"""A person's approval on the running stack (Airflow HITL), answered through the REST API.

A run with ``approval: manual`` parks in its ``review`` task, awaiting input (no worker slot,
no trigger: Airflow 3.3's scheduler holds it); the review lists where the UI's *Required
actions* finds it and shows the challenger and the live champion side by side. Rejected with
``PATCH .../hitlDetails`` (the call the UI's form makes), the version is Rejected with the
comment and nothing is deployed. The approving half, from the page, is tests/test_ui_approval.py.

Cost: one tiny-profile run up to its review (tuning, training, registration: a few minutes on
2 shared cores); the rejection ends it without deploying.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from stack_fixtures import (
    DEPLOY_PATH,
    ENDPOINT,
    MANUAL_PROFILE,
    REVIEW_TASK,
    live_package,
    review_path,
    task_states,
    trigger,
    wait_for_review,
    wait_for_run,
    xcom,
)

from local_aws.devtools.airflow_stack import DAG_ID, AirflowStack
from local_aws.devtools.sandbox import client

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(2400)]


def test_a_manual_run_waits_for_a_person_and_a_rejection_deploys_nothing(
    airflow_stack: AirflowStack, airflow_api: httpx.Client, first_run: dict[str, Any]
) -> None:
    assert first_run["state"] == "success", "a live champion to compare with"
    sagemaker = client("sagemaker", airflow_stack.aws_url)
    champion = live_package(sagemaker)
    config_before = sagemaker.describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"]
    models_before = {m["ModelName"] for m in sagemaker.list_models(MaxResults=100)["Models"]}

    run_id = trigger(airflow_api, MANUAL_PROFILE)["dag_run_id"]
    review = wait_for_review(airflow_stack, airflow_api, run_id)

    # Parked, not running: the task holds no worker slot while it waits.
    states = task_states(airflow_api, run_id)
    assert states[REVIEW_TASK] == "awaiting_input" and states["deploy_configs"] is None, states
    waiting = airflow_api.get(f"/dags/{DAG_ID}/dagRuns/~/hitlDetails", params={"response_received": False})
    assert run_id in {d["task_instance"]["dag_run_id"] for d in waiting.json()["hitl_details"]}
    # What the reviewer reads: both versions side by side.
    challenger_job = xcom(airflow_api, run_id, "train")["Training"]["TrainingJobName"]
    gate = xcom(airflow_api, run_id, "quality_gate")
    assert review["options"] == ["Approve", "Reject"] and not review["response_received"]
    assert set(review["params"]) == {"comment"}
    champion_job = champion["CustomerMetadataProperties"]["TrainingJobName"]
    assert f"| training job | `{challenger_job}` | `{champion_job}` |" in review["body"]
    assert "| test accuracy |" in review["body"] and "Per-breed" in review["body"]
    assert review["subject"].startswith(
        f"Deploy {MANUAL_PROFILE.get('model_package_group', 'dog-breed-classifier')}"
    )
    package = sagemaker.describe_model_package(ModelPackageName=gate["package_arn"])
    assert package["ModelApprovalStatus"] == "PendingManualApproval"

    answer = {"chosen_options": ["Reject"], "params_input": {"comment": "worse on the terriers"}}
    response = airflow_api.patch(review_path(run_id), json=answer)
    assert response.status_code == 200, response.text
    assert response.json()["responded_by"]["name"] == airflow_stack.login
    assert airflow_api.patch(review_path(run_id), json=answer).status_code == 409, "answered once"

    assert wait_for_run(airflow_stack, airflow_api, run_id) == "success"
    states = task_states(airflow_api, run_id)
    assert states[REVIEW_TASK] == "success" and {states[t] for t in DEPLOY_PATH} == {"skipped"}, states
    package = sagemaker.describe_model_package(ModelPackageName=gate["package_arn"])
    assert package["ModelApprovalStatus"] == "Rejected"
    assert (
        package["ApprovalDescription"]
        == f"Rejected by {airflow_stack.login} in Airflow: worse on the terriers"
    )
    assert sagemaker.describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"] == config_before
    assert {m["ModelName"] for m in sagemaker.list_models(MaxResults=100)["Models"]} == models_before
    assert live_package(sagemaker)["ModelPackageArn"] == champion["ModelPackageArn"]
