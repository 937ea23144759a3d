"""The plugin in a real Airflow: the plugin manager loads it from plugins/, ``airflow plugins``
lists it, the api-server mounts its FastAPI app, and starting it imports nothing heavy.

Each check runs in a fresh interpreter, as an Airflow component starts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = ROOT / "plugins"
HEAVY = (
    "torch",
    "torchvision",
    "sagemaker",
    "boto3",
    "onnxruntime",
    "openvino",
    "moto",
    "optuna",
    "plotly",
    "PIL",
)


@pytest.fixture(scope="module")
def airflow_env(tmp_path_factory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("plugin_airflow_home")
    # A component's own environment: nothing of the Airflow settings other tests made in this process.
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    return {
        **inherited,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PLUGINS),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__AUTH_MANAGER": (
            "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
        ),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "PYTHONPATH": str(PLUGINS),
        "OMP_NUM_THREADS": "1",
    }


def run_python(code: str, env: dict[str, str]) -> dict:
    """Run ``code`` in a fresh interpreter; it prints one JSON line last."""
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_importing_the_plugin_imports_no_heavy_library(airflow_env) -> None:
    loaded = run_python(
        "import json, sys\nimport dog_breed_ui\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))",
        airflow_env,
    )
    assert loaded == []


def test_airflows_plugin_manager_loads_it_without_import_errors(airflow_env) -> None:
    found = run_python(
        "import json\nfrom airflow import plugins_manager\n"
        "plugins_manager.ensure_plugins_loaded()\n"
        "print(json.dumps({'errors': plugins_manager.get_import_errors(),"
        " 'plugins': [p.name for p in plugins_manager._get_plugins()[0]]}))",
        airflow_env,
    )
    assert found["errors"] == {}
    assert "dog_breed_model" in found["plugins"]


def test_airflow_plugins_lists_the_page_and_its_app(airflow_env) -> None:
    done = subprocess.run(
        [str(Path(sys.executable).with_name("airflow")), "plugins", "--output", "json"],
        env=airflow_env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    (plugin,) = [p for p in json.loads(done.stdout) if p["name"] == "dog_breed_model"]
    assert plugin["source"] == "$PLUGINS_FOLDER/dog_breed_ui.py"
    assert plugin["fastapi_apps"] == [
        {"app": "fastapi.applications.FastAPI", "url_prefix": "/dog-breed", "name": "Dog-breed model page"}
    ]
    assert plugin["external_views"] == [
        {
            "name": "Dog-breed model",
            "href": "/dog-breed/",
            "url_route": "dog-breed-model",
            "destination": "nav",
        }
    ]


def test_the_api_server_mounts_the_app_and_starts_without_heavy_imports(airflow_env) -> None:
    started = run_python(
        "import json, sys\nfrom starlette.routing import Mount\n"
        "from airflow.api_fastapi.app import create_app\n"
        "import dog_breed.ui.app as page\n"
        "app = create_app()\n"
        "mounts = {r.path: r.app is page.app for r in app.routes if isinstance(r, Mount)}\n"
        f"print(json.dumps({{'mounts': mounts, 'heavy': [m for m in {HEAVY!r} if m in sys.modules]}}))",
        airflow_env,
    )
    assert started["mounts"].get("/dog-breed") is True
    assert started["heavy"] == []


def test_make_airflow_prints_the_pages_address(tmp_path) -> None:
    import airflow_fixtures  # noqa: F401  (AIRFLOW_HOME before Airflow)
    from dog_breed_ui import PAGE_ROUTE

    from local_aws.devtools.airflow_stack import AirflowStack

    banner = AirflowStack(tmp_path, api_port=8080).banner()
    assert f"http://127.0.0.1:8080/plugin/{PAGE_ROUTE}" in banner
