"""The DAG in a running Airflow (``make airflow``'s stack): REST trigger, asset trigger.

The stack (local_aws, api-server, scheduler, dag-processor, triggerer) and the first
REST-triggered run are the session's, shared with the browser tests (``stack_fixtures``).
Runs are triggered the way the UI's trigger form does it (``POST /api/v2/dags/{id}/dagRuns``
with a ``logical_date`` and a ``conf``), with the tiny Params profile so a run takes minutes.
The scheduler's retraining (a second run updating the live endpoint in place) is the run a
person approves in tests/test_ui_approval.py: one run checks both.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from local_aws.devtools.airflow_stack import DAG_ID, AirflowStack
from local_aws.devtools.demo import TINY_PROFILE

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(2400)]


@pytest.fixture
def stack(airflow_stack: AirflowStack) -> AirflowStack:
    return airflow_stack


@pytest.fixture
def api(airflow_api: httpx.Client) -> httpx.Client:
    return airflow_api


def test_rest_triggered_run_succeeds(first_run: dict[str, Any]) -> None:
    assert first_run["run_type"] == "manual"
    assert first_run["conf"] == TINY_PROFILE
    assert first_run["state"] == "success", first_run["tasks"]
    assert set(first_run["tasks"].values()) == {"success"}, first_run["tasks"]


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
