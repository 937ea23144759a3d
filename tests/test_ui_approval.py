"""A person approves a model version in the Airflow UI, and the run deploys that version.

The approving half of tests/test_approval_stack.py, from a browser (Playwright in Debian's
chromium): a run with ``approval: manual`` parks in its ``review`` task; the reviewer finds it
under Browse > Required Actions, opens the task instance's *Required Actions* tab
(``/dags/{dag}/runs/{run}/tasks/review/required_actions``), reads the challenger and the live
champion side by side (the review's markdown body), writes a comment and clicks Approve. The
version becomes ``Approved`` with the reviewer and the comment, the deploy path runs, and the
endpoint serves a model created from that package. The form's screenshot is README's picture
(tests/artifacts/approval_form.png, copied to docs/).

Cost: one tiny-profile run on the session's stack, deployed; its champion is whatever is live
after ``first_run`` (the rejection test deploys nothing, so both compare with the same one).
"""

from __future__ import annotations

import urllib.parse
from typing import Any

import httpx
import pytest
from stack_fixtures import (
    ARTIFACTS,
    DEPLOY_PATH,
    ENDPOINT,
    MANUAL_PROFILE,
    REVIEW_TASK,
    UI_TIMEOUT_MS,
    chromium_page,
    live_package,
    log_in,
    tags_of,
    task_states,
    trigger,
    wait_for_review,
    wait_for_run,
    xcom,
)

from local_aws.devtools.airflow_stack import DAG_ID, AirflowStack
from local_aws.devtools.registry_summary import LIVE_PACKAGE_TAG
from local_aws.devtools.sandbox import client

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(2400)]

GROUP = MANUAL_PROFILE.get("model_package_group", "dog-breed-classifier")
COMMENT = "read the per-breed changes against the live model; ship it"


def test_a_person_approves_in_the_airflow_ui_and_the_run_deploys_that_version(
    airflow_stack: AirflowStack, airflow_api: httpx.Client, first_run: dict[str, Any]
) -> None:
    from playwright.sync_api import expect

    assert first_run["state"] == "success", "a live champion to compare with"
    sagemaker = client("sagemaker", airflow_stack.aws_url)
    champion = live_package(sagemaker)
    config_before = sagemaker.describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"]
    run_id = trigger(airflow_api, MANUAL_PROFILE)["dag_run_id"]
    review = wait_for_review(airflow_stack, airflow_api, run_id)
    comparison = xcom(airflow_api, run_id, "quality_gate")["comparison"]
    challenger = comparison["challenger"]
    assert comparison["champion"]["package_arn"] == champion["ModelPackageArn"]
    challenger_job = xcom(airflow_api, run_id, "train")["Training"]["TrainingJobName"]
    champion_job = champion["CustomerMetadataProperties"]["TrainingJobName"]

    # The model page points to the waiting review.
    (row,) = [r for r in model_page(airflow_stack)["runs"] if r["run_id"] == run_id]
    quoted = urllib.parse.quote(run_id, safe="")
    form_path = f"/dags/{DAG_ID}/runs/{quoted}/tasks/{REVIEW_TASK}/required_actions"
    assert row["review_url"] == form_path and not row["deployed"], row

    ARTIFACTS.mkdir(exist_ok=True)
    with chromium_page() as page:
        page.set_viewport_size({"width": 1400, "height": 1150})  # the whole form in the screenshot
        log_in(page, airflow_stack)
        page.goto(f"{airflow_stack.api_url}/dog-breed/")
        page.locator("#waiting-reviews a").click()
        page.wait_for_url(f"**/dags/{DAG_ID}/runs/**/tasks/{REVIEW_TASK}/required_actions")
        expect(page.get_by_text(review["subject"], exact=True)).to_be_visible()
        # Where Airflow itself lists what waits for a person: the same form.
        page.get_by_role("button", name="Browse").click()
        page.get_by_role("menuitem", name="Required Actions").click()
        page.wait_for_url(lambda url: urllib.parse.urlsplit(url).path == "/required_actions")
        waiting = page.get_by_role("row").filter(has_text=run_id)
        expect(waiting).to_contain_text("Approval Required")
        waiting.get_by_role("link", name=review["subject"]).click()
        page.wait_for_url(f"**/dags/{DAG_ID}/runs/**/tasks/{REVIEW_TASK}/required_actions")
        assert urllib.parse.unquote(urllib.parse.urlsplit(page.url).path) == urllib.parse.unquote(form_path)

        # The review's body, rendered: both versions side by side, the per-breed comparison.
        expect(page.get_by_text(review["subject"], exact=True)).to_be_visible()
        accuracy = page.locator("tr", has_text="test accuracy")
        expect(accuracy).to_contain_text(f"{challenger['test_accuracy']:.4f}")
        expect(accuracy).to_contain_text(f"{comparison['champion']['test_accuracy']:.4f}")
        jobs = page.locator("tr", has_text="training job")
        expect(jobs).to_contain_text(challenger_job)
        expect(jobs).to_contain_text(champion_job)
        expect(page.get_by_text("Per-breed regressions")).to_be_visible()
        expect(page.get_by_text(challenger["package_arn"])).to_be_visible()

        approve = page.get_by_role("button", name="Approve")
        expect(approve).to_be_disabled()  # the comment is required: it is the approval's record
        # Airflow names the param's input element_<param>; its label is not tied to it (no for=id).
        page.locator("#element_comment").fill(COMMENT)
        expect(approve).to_be_enabled()
        page.screenshot(path=str(ARTIFACTS / "approval_form.png"))
        approve.click()
        expect(page.get_by_text("Response received at")).to_contain_text(
            f"from {airflow_stack.login}", timeout=UI_TIMEOUT_MS
        )

    assert wait_for_run(airflow_stack, airflow_api, run_id) == "success", task_states(airflow_api, run_id)
    states = task_states(airflow_api, run_id)
    assert states[REVIEW_TASK] == "success" and {states[t] for t in DEPLOY_PATH} == {"success"}, states
    assert xcom(airflow_api, run_id, REVIEW_TASK)["reviewed_by"] == airflow_stack.login

    arn = challenger["package_arn"]
    package = sagemaker.describe_model_package(ModelPackageName=arn)
    assert package["ModelApprovalStatus"] == "Approved"
    assert package["ApprovalDescription"] == f"Approved by {airflow_stack.login} in Airflow: {COMMENT}"
    approved = sagemaker.list_model_packages(ModelPackageGroupName=GROUP, ModelApprovalStatus="Approved")
    assert arn in {p["ModelPackageArn"] for p in approved["ModelPackageSummaryList"]}

    # Deployed from the registry: the endpoint's model names the package, both carry its ARN.
    # This run is also the scheduler's retraining: the one endpoint is updated, not added to.
    assert [e["EndpointName"] for e in sagemaker.list_endpoints()["Endpoints"]] == [ENDPOINT]
    endpoint = sagemaker.describe_endpoint(EndpointName=ENDPOINT)
    assert endpoint["EndpointStatus"] == "InService" and endpoint["EndpointConfigName"] != config_before
    config = sagemaker.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    model = sagemaker.describe_model(ModelName=config["ProductionVariants"][0]["ModelName"])
    assert model["PrimaryContainer"]["ModelPackageName"] == arn
    for tagged in (endpoint["EndpointArn"], config["EndpointConfigArn"]):
        assert tags_of(sagemaker, tagged)[LIVE_PACKAGE_TAG] == arn, tagged
    assert live_package(sagemaker)["ModelPackageArn"] == arn != champion["ModelPackageArn"]

    # The model page: the live model is this registry version, Approved; nothing waits any more.
    shown = model_page(airflow_stack)
    assert shown["endpoint"]["model_package"] == {
        "arn": arn, "group": GROUP, "version": challenger["version"], "approval_status": "Approved"
    }  # fmt: skip
    assert [r["review_url"] for r in shown["runs"] if r["run_id"] == run_id] == [None]


def model_page(stack: AirflowStack) -> dict[str, Any]:
    response = httpx.get(
        f"{stack.api_url}/dog-breed/api/model-page",
        headers={"Authorization": f"Bearer {stack.token()}"},
        timeout=120,
    )
    response.raise_for_status()
    return response.json()
