"""The one Airflow stack (``make airflow``'s) every end-to-end REST and browser test shares.

Starting local_aws, the api-server, scheduler, dag-processor and triggerer and letting the DAG
parse costs minutes, so the session starts them once (``airflow_stack``) and the tests that
need them run last, together (``conftest.pytest_collection_modifyitems``): the stack is up only
while they run. ``first_run`` is the REST-triggered run with the tiny Params profile, waited
for once and reused by every test that needs a finished run (the REST checks, the model page).

Runs are triggered the way the UI's trigger form does it (``POST /api/v2/dags/{id}/dagRuns``
with a ``logical_date`` and a ``conf``).
"""

from __future__ import annotations

import contextlib
import time
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from local_aws.devtools.airflow_stack import DAG_ID, AirflowStack
from local_aws.devtools.demo import TINY_PROFILE
from local_aws.devtools.registry_summary import LIVE_PACKAGE_TAG

STACK_FIXTURE = "airflow_stack"
RUN_TIMEOUT_S = 900
FINISHED = {"success", "failed"}
# A run a person approves: it parks in the review task (Airflow HITL) until answered.
MANUAL_PROFILE = {**TINY_PROFILE, "approval": "manual"}
REVIEW_TASK = "review"
AWAITING_INPUT = "awaiting_input"
ENDPOINT = MANUAL_PROFILE.get("endpoint_name", "dog-breed-classifier")
# What runs after a review only when the version is Approved.
DEPLOY_PATH = ("deploy_configs", "create_model", "create_endpoint_config", "prepare_endpoint_update",
               "deploy_endpoint", "tag_endpoint", "autoscale", "deploy_lambda", "smoke_test")  # fmt: skip

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
UI_TIMEOUT_MS = 60_000


@pytest.fixture(scope="session")
def airflow_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowStack]:
    home = tmp_path_factory.mktemp("airflow_stack")
    started = time.monotonic()
    with AirflowStack(home, api_port=0, aws_port=0, sample_profile="tiny", parallelism=4) as running:
        running.wait_for_dag(DAG_ID, timeout=300)
        print(f"stack up with the DAG parsed in {time.monotonic() - started:.0f} s")
        with running.api_client() as api:
            api.patch(f"/dags/{DAG_ID}", json={"is_paused": False}).raise_for_status()
            stop_scheduled_catch_up_run(api)
        yield running


@pytest.fixture(scope="session")
def airflow_api(airflow_stack: AirflowStack) -> Iterator[httpx.Client]:
    with airflow_stack.api_client() as api_client:
        yield api_client


@pytest.fixture(scope="session")
def first_run(airflow_stack: AirflowStack, airflow_api: httpx.Client) -> dict[str, Any]:
    started = time.monotonic()
    run = trigger(airflow_api, TINY_PROFILE)
    state = wait_for_run(airflow_stack, airflow_api, run["dag_run_id"])
    print(f"REST-triggered run {run['dag_run_id']}: {state} in {time.monotonic() - started:.0f} s")
    return {**run, "state": state, "tasks": task_states(airflow_api, run["dag_run_id"])}


def stop_scheduled_catch_up_run(api: httpx.Client, wait_s: float = 30) -> None:
    """Unpausing makes the scheduler start the latest cron run, with the default (full-size) Params.

    The tests drive runs themselves with the tiny profile, and max_active_runs=1 would queue
    them behind it, so it is stopped as soon as it shows up.
    """
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        runs = api.get(f"/dags/{DAG_ID}/dagRuns", params={"run_type": "scheduled"}).json()["dag_runs"]
        if runs:
            for run in runs:
                api.patch(
                    f"/dags/{DAG_ID}/dagRuns/{run['dag_run_id']}", json={"state": "failed"}
                ).raise_for_status()
            return
        time.sleep(1)


def trigger(api: httpx.Client, conf: dict[str, Any]) -> dict[str, Any]:
    """What the UI's trigger button sends."""
    response = api.post(
        f"/dags/{DAG_ID}/dagRuns",
        json={"logical_date": datetime.now(UTC).isoformat(), "conf": conf},
    )
    assert response.status_code == 200, response.text
    return response.json()


def task_states(api: httpx.Client, run_id: str) -> dict[str, str]:
    response = api.get(f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances", params={"limit": 100})
    response.raise_for_status()
    return {ti["task_id"]: ti["state"] for ti in response.json()["task_instances"]}


def wait_for_run(stack: AirflowStack, api: httpx.Client, run_id: str, timeout: float = RUN_TIMEOUT_S) -> str:
    deadline = time.monotonic() + timeout
    state = "unknown"
    while time.monotonic() < deadline:
        stack.check_alive()
        state = api.get(f"/dags/{DAG_ID}/dagRuns/{run_id}").json()["state"]
        if state in FINISHED:
            return state
        time.sleep(5)
    pytest.fail(f"run {run_id} still {state} after {timeout:.0f} s; tasks: {task_states(api, run_id)}")


def review_path(run_id: str) -> str:
    """The review task's Human-in-the-loop detail (GET it, PATCH the answer), under /api/v2."""
    quoted = urllib.parse.quote(run_id, safe="")
    return f"/dags/{DAG_ID}/dagRuns/{quoted}/taskInstances/{REVIEW_TASK}/-1/hitlDetails"


def wait_for_review(
    stack: AirflowStack, api: httpx.Client, run_id: str, timeout: float = RUN_TIMEOUT_S
) -> dict[str, Any]:
    """The run's review once it awaits input (its HITL detail); fails if the run ends first."""
    deadline = time.monotonic() + timeout
    state = "unknown"
    while time.monotonic() < deadline:
        stack.check_alive()
        state = task_states(api, run_id).get(REVIEW_TASK) or "not scheduled"
        if state == AWAITING_INPUT:
            response = api.get(review_path(run_id))
            response.raise_for_status()
            return response.json()
        run_state = api.get(f"/dags/{DAG_ID}/dagRuns/{run_id}").json()["state"]
        if run_state in FINISHED:
            pytest.fail(f"run {run_id} ended {run_state} before its review: {task_states(api, run_id)}")
        time.sleep(5)
    pytest.fail(f"run {run_id}'s review still {state} after {timeout:.0f} s: {task_states(api, run_id)}")


def xcom(api: httpx.Client, run_id: str, task_id: str) -> Any:
    quoted = urllib.parse.quote(run_id, safe="")
    response = api.get(
        f"/dags/{DAG_ID}/dagRuns/{quoted}/taskInstances/{task_id}/xcomEntries/return_value",
        params={"deserialize": True},
    )
    response.raise_for_status()
    return response.json()["value"]


def tags_of(sagemaker: Any, arn: str) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in sagemaker.list_tags(ResourceArn=arn)["Tags"]}


def live_package(sagemaker: Any) -> dict[str, Any]:
    """The registry version the endpoint serves (by its package-ARN tag), described."""
    endpoint = sagemaker.describe_endpoint(EndpointName=ENDPOINT)
    arn = tags_of(sagemaker, endpoint["EndpointArn"])[LIVE_PACKAGE_TAG]
    return sagemaker.describe_model_package(ModelPackageName=arn)


def log_in(page: Any, stack: AirflowStack) -> None:
    """Through the UI's login form, as a person does."""
    from playwright.sync_api import expect

    page.goto(f"{stack.api_url}/")
    page.wait_for_url("**/auth/login**")  # the UI sends a stranger to the login form
    page.fill("input[name=username]", stack.login)
    page.fill("input[type=password]", stack.password)
    page.keyboard.press("Enter")
    expect(page.get_by_text("Welcome")).to_be_visible()


@contextlib.contextmanager
def chromium_page():
    """A Playwright page in Debian's chromium (headless); skips when chromium is missing."""
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is missing: `make setup` installs it (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(UI_TIMEOUT_MS)
        try:
            yield page
        finally:
            browser.close()


def uses_the_stack(item: pytest.Item) -> bool:
    return STACK_FIXTURE in getattr(item, "fixturenames", ())
