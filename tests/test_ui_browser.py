"""The Airflow UI as a person uses it: log in, open the DAG's trigger form, see the Params
grouped in their sections, trigger.

Playwright drives Debian's chromium (headless); screenshots go to tests/artifacts/ (git-ignored).
The stack is the session's (``stack_fixtures``), shared with the REST tests. The run this test
triggers has the form's values in its conf; it is stopped right after, since only the REST test
needs a run to finish.
"""

from __future__ import annotations

import re
import time

import pytest
from stack_fixtures import ARTIFACTS, UI_TIMEOUT_MS, chromium_page

from dog_breed.params import PARAM_SPECS, SECTIONS
from local_aws.devtools.airflow_stack import DAG_ID, AirflowStack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

FORM_VALUES = {"image_size": "32", "epochs": "1", "tuning_max_jobs": "2"}


@pytest.fixture
def stack(airflow_stack: AirflowStack) -> AirflowStack:
    return airflow_stack


@pytest.fixture(scope="module")
def page(airflow_stack: AirflowStack):
    with chromium_page() as page:
        yield page


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
    check_sections(dialog)
    open_section(dialog, "dataset_s3_uri")
    expect(dialog.locator("[name=element_dataset_s3_uri]")).to_have_value("s3://dog-breed-pipeline/dogImages")
    for name, value in FORM_VALUES.items():
        open_section(dialog, name)
        dialog.locator(f"[name=element_{name}]").fill(value)

    earlier = manual_run_ids(stack)
    dialog.get_by_role("button", name="Trigger").click()
    expect(dialog).to_be_hidden(timeout=UI_TIMEOUT_MS)
    run = wait_for_manual_run(stack, earlier)
    for name, value in FORM_VALUES.items():
        assert run["conf"][name] == int(value), (name, run["conf"])
    page.goto(f"{stack.api_url}/dags/{DAG_ID}/runs/{run['dag_run_id']}")
    expect(page.get_by_text(run["dag_run_id"]).first).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "triggered_run.png"))
    stop_all_runs(stack)


def section_triggers(dialog):
    """The form's accordion headers (the Param sections, then Advanced Options)."""
    return dialog.locator("[data-scope=accordion][data-part=item-trigger]")


def param_label(dialog, name: str):
    """The form's label of Param ``name`` (its name, and a * when required), not a longer one."""
    return dialog.locator("label").filter(has_text=re.compile(rf"^\s*{re.escape(name)}\s*\*?\s*$"))


def open_section(dialog, param: str) -> None:
    """Expand the section holding ``param`` (the form shows one section at a time)."""
    from playwright.sync_api import expect

    field = dialog.locator(f"[name=element_{param}]")
    if not field.is_visible():
        section_triggers(dialog).filter(has_text=PARAM_SPECS[param]["section"]).click()
    expect(field).to_be_visible()


def check_sections(dialog) -> None:
    """Every section, in order, and in each exactly its Params: the most-changed ones first."""
    from playwright.sync_api import expect

    expect(section_triggers(dialog).first).to_be_visible()
    titles = [text.strip() for text in section_triggers(dialog).all_inner_texts()]
    assert titles[: len(SECTIONS)] == list(SECTIONS), titles
    for index, section in enumerate(SECTIONS):
        members = [name for name, spec in PARAM_SPECS.items() if spec["section"] == section]
        section_triggers(dialog).filter(has_text=section).click()
        for name in members:
            expect(param_label(dialog, name)).to_be_visible()
        for name in (name for name, spec in PARAM_SPECS.items() if spec["section"] != section):
            expect(param_label(dialog, name)).to_be_hidden()
        page = dialog.page
        page.screenshot(path=str(ARTIFACTS / f"trigger_form_{index}_{section.replace(' ', '_').lower()}.png"))


def stop_all_runs(stack: AirflowStack) -> None:
    """The form's run and the weekly run that unpausing starts both train at full size: stop them."""
    with stack.api_client() as api:
        for run in api.get(f"/dags/{DAG_ID}/dagRuns").json()["dag_runs"]:
            if run["state"] in ("queued", "running"):
                api.patch(
                    f"/dags/{DAG_ID}/dagRuns/{run['dag_run_id']}", json={"state": "failed"}
                ).raise_for_status()


def manual_run_ids(stack: AirflowStack) -> set[str]:
    with stack.api_client() as api:
        runs = api.get(f"/dags/{DAG_ID}/dagRuns", params={"run_type": "manual"}).json()["dag_runs"]
    return {run["dag_run_id"] for run in runs}


def wait_for_manual_run(stack: AirflowStack, earlier: set[str], timeout: float = 60) -> dict:
    """The one manual run that pressing Trigger added to the ``earlier`` ones (the REST tests')."""
    deadline = time.monotonic() + timeout
    with stack.api_client() as api:
        while time.monotonic() < deadline:
            runs = api.get(f"/dags/{DAG_ID}/dagRuns", params={"run_type": "manual"}).json()["dag_runs"]
            added = [run for run in runs if run["dag_run_id"] not in earlier]
            if added:
                (run,) = added
                return run
            time.sleep(1)
    pytest.fail(f"no manual run of {DAG_ID} within {timeout:.0f} s of pressing Trigger")
