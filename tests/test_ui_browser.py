"""The Airflow UI as a person uses it: log in, open the DAG's trigger form, see the Params, trigger.

Playwright drives Debian's chromium (headless); screenshots go to tests/artifacts/ (git-ignored).
The run this test triggers has the form's values in its conf; it is stopped right after, since
only the REST test needs a run to finish.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from local_aws.devtools.airflow_stack import DAG_ID, AirflowStack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

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
PARAM_LABELS = (
    "dataset_s3_uri",
    "tuning_strategy",
    "epochs",
    "image_size",
    "endpoint_name",
    "accuracy_threshold",
)
FORM_VALUES = {"image_size": "32", "epochs": "1", "tuning_max_jobs": "2"}
UI_TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowStack]:
    with AirflowStack(
        tmp_path_factory.mktemp("ui_stack"), api_port=0, aws_port=0, sample_profile=None
    ) as running:
        running.wait_for_dag(DAG_ID, timeout=300)
        yield running


@pytest.fixture(scope="module")
def page(stack: AirflowStack):
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is missing: `make setup` installs it (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(UI_TIMEOUT_MS)
        yield page
        browser.close()


def test_log_in_trigger_with_params_and_see_the_run(stack: AirflowStack, page) -> None:
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    page.goto(f"{stack.api_url}/")
    page.wait_for_url("**/auth/login**")  # the UI sends a stranger to the login form
    page.fill("input[name=username]", stack.login)
    page.fill("input[type=password]", stack.password)
    page.keyboard.press("Enter")
    expect(page.get_by_text("Welcome")).to_be_visible()

    page.goto(f"{stack.api_url}/dags/{DAG_ID}")
    page.get_by_role("button", name="Trigger").first.click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_text(f"Trigger Dag - {DAG_ID}")).to_be_visible()
    for label in PARAM_LABELS:
        expect(dialog.locator("label", has_text=label).first).to_be_visible()
    expect(dialog.locator("[name=element_dataset_s3_uri]")).to_have_value("s3://dog-breed-pipeline/dogImages")
    page.screenshot(path=str(ARTIFACTS / "trigger_form.png"))
    for name, value in FORM_VALUES.items():
        dialog.locator(f"[name=element_{name}]").fill(value)

    dialog.get_by_role("button", name="Trigger").click()
    expect(dialog).to_be_hidden(timeout=UI_TIMEOUT_MS)
    run = wait_for_manual_run(stack)
    for name, value in FORM_VALUES.items():
        assert run["conf"][name] == int(value), (name, run["conf"])
    page.goto(f"{stack.api_url}/dags/{DAG_ID}/runs/{run['dag_run_id']}")
    expect(page.get_by_text(run["dag_run_id"]).first).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "triggered_run.png"))
    stop_all_runs(stack)


def stop_all_runs(stack: AirflowStack) -> None:
    """The form's run and the weekly run that unpausing starts both train at full size: stop them."""
    with stack.api_client() as api:
        for run in api.get(f"/dags/{DAG_ID}/dagRuns").json()["dag_runs"]:
            if run["state"] in ("queued", "running"):
                api.patch(
                    f"/dags/{DAG_ID}/dagRuns/{run['dag_run_id']}", json={"state": "failed"}
                ).raise_for_status()


def wait_for_manual_run(stack: AirflowStack, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    with stack.api_client() as api:
        while time.monotonic() < deadline:
            runs = api.get(f"/dags/{DAG_ID}/dagRuns", params={"run_type": "manual"}).json()["dag_runs"]
            if runs:
                (run,) = runs
                return run
            time.sleep(1)
    pytest.fail(f"no manual run of {DAG_ID} within {timeout:.0f} s of pressing Trigger")
