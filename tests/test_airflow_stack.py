"""The DAG in a running Airflow (``make airflow``'s stack): REST trigger, retraining, asset trigger.

One stack for the module: local_aws, api-server, scheduler, dag-processor, triggerer.
Runs are triggered the way the UI's trigger form does it (``POST /api/v2/dags/{id}/dagRuns``
with a ``logical_date`` and a ``conf``), with the tiny Params profile so a run takes minutes.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from local_aws.devtools.airflow_stack import DAG_ID, AirflowStack
from local_aws.devtools.demo import TINY_PROFILE
from local_aws.devtools.sandbox import client

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(2400)]

RUN_TIMEOUT_S = 900
ENDPOINT = TINY_PROFILE.get("endpoint_name", "dog-breed-classifier")
FINISHED = {"success", "failed"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> AirflowStack:
    home = tmp_path_factory.mktemp("airflow_stack")
    started = time.monotonic()
    with AirflowStack(home, api_port=0, aws_port=0, sample_profile="tiny", parallelism=4) as running:
        running.wait_for_dag(DAG_ID, timeout=300)
        print(f"stack up with the DAG parsed in {time.monotonic() - started:.0f} s")
        with running.api_client() as api:
            api.patch(f"/dags/{DAG_ID}", json={"is_paused": False}).raise_for_status()
            stop_scheduled_catch_up_run(api)
        yield running


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


@pytest.fixture(scope="module")
def api(stack: AirflowStack) -> httpx.Client:
    with stack.api_client() as api_client:
        yield api_client


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


def live_endpoint(stack: AirflowStack) -> tuple[list[str], str]:
    """(names of all endpoints, the config behind ours), read from local_aws like from SageMaker."""
    sagemaker = client("sagemaker", stack.aws_url)
    names = [e["EndpointName"] for e in sagemaker.list_endpoints()["Endpoints"]]
    return names, sagemaker.describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"]


@pytest.fixture(scope="module")
def first_run(stack: AirflowStack, api: httpx.Client) -> dict[str, Any]:
    started = time.monotonic()
    run = trigger(api, TINY_PROFILE)
    state = wait_for_run(stack, api, run["dag_run_id"])
    print(f"REST-triggered run {run['dag_run_id']}: {state} in {time.monotonic() - started:.0f} s")
    return {**run, "state": state, "tasks": task_states(api, run["dag_run_id"])}


def test_rest_triggered_run_succeeds(first_run: dict[str, Any]) -> None:
    assert first_run["run_type"] == "manual"
    assert first_run["conf"] == TINY_PROFILE
    assert first_run["state"] == "success", first_run["tasks"]
    assert set(first_run["tasks"].values()) == {"success"}, first_run["tasks"]


def test_retraining_run_updates_the_live_endpoint(
    stack: AirflowStack, api: httpx.Client, first_run: dict[str, Any]
) -> None:
    assert first_run["state"] == "success", "the first run must have deployed"
    endpoints_before, config_before = live_endpoint(stack)
    assert endpoints_before == [ENDPOINT]

    second = trigger(api, TINY_PROFILE)
    state = wait_for_run(stack, api, second["dag_run_id"])
    assert state == "success", task_states(api, second["dag_run_id"])

    endpoints_after, config_after = live_endpoint(stack)
    states = task_states(api, second["dag_run_id"])
    assert endpoints_after == [ENDPOINT], "retraining must update the endpoint, not add one"
    assert config_after != config_before, f"endpoint still on {config_before}; tasks: {states}"
    assert states["deploy_endpoint"] == "success", states


def test_dataset_asset_update_starts_a_run(stack: AirflowStack, api: httpx.Client) -> None:
    assets = api.get("/assets", params={"uri_pattern": TINY_PROFILE["dataset_s3_uri"]}).json()["assets"]
    (asset,) = [a for a in assets if a["uri"] == TINY_PROFILE["dataset_s3_uri"]]
    assert DAG_ID in {ref["dag_id"] for ref in asset["scheduled_dags"]}
    before = {r["dag_run_id"] for r in api.get(f"/dags/{DAG_ID}/dagRuns").json()["dag_runs"]}

    response = api.post("/assets/events", json={"asset_id": asset["id"], "extra": {"reason": "new images"}})
    assert response.status_code == 200, response.text

    deadline = time.monotonic() + 120
    started: list[dict[str, Any]] = []
    while not started and time.monotonic() < deadline:
        runs = api.get(f"/dags/{DAG_ID}/dagRuns", params={"run_type": "asset_triggered"}).json()["dag_runs"]
        started = [r for r in runs if r["dag_run_id"] not in before]
        time.sleep(2)
    assert started, "no asset_triggered run within 120 s of the asset event"
    (run,) = started
    assert run["run_type"] == "asset_triggered"
    # It runs with the default Params (a full-size training): stop it, the point was that it started.
    api.patch(f"/dags/{DAG_ID}/dagRuns/{run['dag_run_id']}", json={"state": "failed"}).raise_for_status()
