"""The model page on the running stack, after a real run: its API, then a person's browser.

Uses the session's stack and its first REST-triggered run (``stack_fixtures``); in a full
run it comes after tests/test_airflow_stack.py, so the page then also shows the retraining
run. Screenshots go to tests/artifacts/ (git-ignored; README's picture is a copy of one).
"""

from __future__ import annotations

import os
import urllib.parse

import httpx
import pytest
from stack_fixtures import ARTIFACTS, UI_TIMEOUT_MS, chromium_page, log_in, xcom

from dog_breed.params import PARAM_SPECS
from local_aws.devtools.airflow_stack import DAG_ID, AirflowStack
from local_aws.devtools.demo import TINY_PROFILE
from local_aws.devtools.sandbox import client

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

ENDPOINT = TINY_PROFILE.get("endpoint_name", "dog-breed-classifier")
PAGE_ROUTE = "dog-breed-model"


@pytest.fixture
def page_api(airflow_stack: AirflowStack) -> httpx.Client:
    with httpx.Client(
        base_url=f"{airflow_stack.api_url}/dog-breed",
        headers={"Authorization": f"Bearer {airflow_stack.token()}"},
        timeout=120,
    ) as api:
        yield api


def test_the_running_airflow_loaded_the_plugin(airflow_api: httpx.Client) -> None:
    plugins = airflow_api.get("/plugins").json()["plugins"]
    (plugin,) = [p for p in plugins if p["name"] == "dog_breed_model"]
    assert [view["url_route"] for view in plugin["external_views"]] == [PAGE_ROUTE]
    assert airflow_api.get("/plugins/importErrors").json()["import_errors"] == []


def test_the_page_answers_only_a_logged_in_user(airflow_stack: AirflowStack) -> None:
    stranger = httpx.get(f"{airflow_stack.api_url}/dog-breed/api/model-page", timeout=60)
    assert stranger.status_code == 401
    browser = httpx.get(f"{airflow_stack.api_url}/dog-breed/", headers={"Accept": "text/html"}, timeout=60)
    assert browser.status_code == 303 and "/auth/" in browser.headers["location"]


def test_the_page_api_returns_the_live_endpoint_and_the_runs(
    airflow_stack: AirflowStack, airflow_api: httpx.Client, page_api: httpx.Client, first_run: dict
) -> None:
    assert first_run["state"] == "success", first_run["tasks"]
    page = page_api.get("/api/model-page").json()
    assert page["problems"] == []
    sagemaker = client("sagemaker", airflow_stack.aws_url)
    live = sagemaker.describe_endpoint(EndpointName=ENDPOINT)
    endpoint = page["endpoint"]
    assert (endpoint["name"], endpoint["status"]) == (ENDPOINT, "InService")
    assert endpoint["endpoint_config"] == live["EndpointConfigName"]
    assert endpoint["current_instance_count"] == live["ProductionVariants"][0]["CurrentInstanceCount"]
    scaling = tuple(
        TINY_PROFILE.get(name, PARAM_SPECS[name]["default"])
        for name in ("autoscaling_min_capacity", "autoscaling_max_capacity")
    )
    assert (endpoint["scaling"]["min_capacity"], endpoint["scaling"]["max_capacity"]) == scaling

    runs = {run["run_id"]: run for run in page["runs"]}
    first = runs[first_run["dag_run_id"]]
    training = xcom(airflow_api, first_run["dag_run_id"], "train")["Training"]
    decision = xcom(airflow_api, first_run["dag_run_id"], "quality_gate")
    (accuracy,) = [m["Value"] for m in training["FinalMetricDataList"] if m["MetricName"] == "test:accuracy"]
    assert first["test_accuracy"] == pytest.approx(accuracy)
    assert (first["state"], first["gate"], first["deployed"]) == ("success", "deploy", True)
    assert first["gate_reason"] == decision["reason"]
    assert [r["run_id"] for r in page["runs"] if r["live"]] == [endpoint["deployed_by_run"]]

    newest_trained = next(r for r in page["runs"] if r["training_job"])
    assert page["curves"]["training_job"] == newest_trained["training_job"]
    assert page["curves"]["epochs"] == list(range(1, TINY_PROFILE["epochs"] + 1))
    assert len(page["smoke_test"]["predictions"]) == TINY_PROFILE["smoke_test_images"]


def test_a_person_sees_the_model_its_runs_and_curves_and_follows_a_tasks_link(
    airflow_stack: AirflowStack, page_api: httpx.Client, first_run: dict
) -> None:
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    expected = page_api.get("/api/model-page").json()
    trained = [r for r in expected["runs"] if r["test_accuracy"] is not None]
    with chromium_page() as page:
        log_in(page, airflow_stack)
        page.get_by_role("link", name="Dog-breed model").click()  # the external view in the nav
        page.wait_for_url(f"**/plugin/{PAGE_ROUTE}**")
        frame = page.frame_locator('iframe[title="Dog-breed model"]')
        expect(frame.locator("#endpoint-status")).to_have_text("InService", timeout=UI_TIMEOUT_MS)
        expect(frame.locator("#live-endpoint")).to_contain_text(
            expected["endpoint"]["model_name"], timeout=UI_TIMEOUT_MS
        )
        # plotly draws one marker per run that trained; the curves chart one line per metric
        expect(frame.locator("#accuracy-chart .scatterlayer .point")).to_have_count(
            len(trained), timeout=UI_TIMEOUT_MS
        )
        expect(frame.locator("#curves-chart .scatterlayer .trace")).to_have_count(3, timeout=UI_TIMEOUT_MS)
        expect(frame.locator("#predictions img")).to_have_count(
            TINY_PROFILE["smoke_test_images"], timeout=UI_TIMEOUT_MS
        )
        model_page = page.frame(url=f"{airflow_stack.api_url}/dog-breed/")
        model_page.wait_for_function(  # every thumbnail fetched and decoded
            "[...document.querySelectorAll('#predictions img')]"
            ".every(image => image.complete && image.naturalWidth > 0)",
            timeout=UI_TIMEOUT_MS,
        )
        page.screenshot(path=str(ARTIFACTS / "model_page_in_airflow.png"))

        page.goto(f"{airflow_stack.api_url}/dog-breed/")
        expect(page.locator("#curves-chart .scatterlayer .trace")).to_have_count(3, timeout=UI_TIMEOUT_MS)
        page.screenshot(path=str(ARTIFACTS / "model_page.png"), full_page=True)

        run_id = urllib.parse.quote(first_run["dag_run_id"], safe="")
        page.goto(f"{airflow_stack.api_url}/dags/{DAG_ID}/runs/{run_id}/tasks/train/details")
        page.get_by_role("link", name="SageMaker training job").click()
        page.wait_for_url("**/dog-breed/aws/sagemaker/training-job/**")
        expect(page.locator("#description")).to_contain_text(
            '"TrainingJobStatus": "Completed"', timeout=UI_TIMEOUT_MS
        )
        page.screenshot(path=str(ARTIFACTS / "training_job_link.png"))


def test_a_person_opens_the_live_models_profiler_report_and_sees_it_drawn(
    airflow_stack: AirflowStack, page_api: httpx.Client, first_run: dict
) -> None:
    from playwright.sync_api import expect

    profiler = page_api.get("/api/model-page").json()["profiler"]
    assert profiler["available"], profiler  # local_aws wrote the live model's report
    assert profiler["rule_status"] in {"NoIssuesFound", "IssuesFound"}, profiler
    served = page_api.get("/profiler-report", params={"training_job": profiler["training_job"]})
    assert served.status_code == 200
    assert served.headers["content-security-policy"].startswith("sandbox")
    ARTIFACTS.mkdir(exist_ok=True)
    with chromium_page() as page:
        log_in(page, airflow_stack)
        page.goto(f"{airflow_stack.api_url}/dog-breed/")
        link = page.locator("#profiler-report a")
        expect(link).to_have_text(f"ProfilerReport of {profiler['training_job']}")
        with page.context.expect_page() as opened:
            link.click()  # target=_blank: the report opens in its own tab, sandboxed
        report = opened.value
        expect(report.locator("#rule-status")).to_contain_text(profiler["rule_status"], timeout=UI_TIMEOUT_MS)
        expect(report.locator("#rules tbody tr")).to_have_count(11)
        expect(report.locator('#rules tr[data-rule="MaxInitializationTime"]')).to_contain_text("no issue")
        # plotly drew every chart (its SVG), titled as the report names them
        expect(report.locator("#cpu-algo-1 .main-svg").first).to_be_visible(timeout=UI_TIMEOUT_MS)
        expect(report.locator("#cpu-algo-1 .gtitle")).to_have_text("CPU utilization over time, algo-1")
        for chart in ("memory", "disk-io", "epoch-durations", "phases"):
            expect(report.locator(f"#{chart} .main-svg").first).to_be_visible()
        expect(report.locator("#cpu-algo-1 .scatterlayer .trace")).to_have_count(os.cpu_count() + 1)
        report.screenshot(path=str(ARTIFACTS / "profiler_report.png"), full_page=True)
