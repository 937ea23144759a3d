"""local_aws's model server: the SageMaker inference-container contract, with torch-free handlers."""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from werkzeug.test import Client

from local_aws.services.sagemaker.hosting import model_server
from local_aws.services.sagemaker.hosting.model_server import PORT_ANNOUNCEMENT, InferenceHandler, make_app

MODEL_SERVER = model_server.__name__

HANDLER = textwrap.dedent(
    """
    import json
    import threading
    import time

    class RequestError(Exception):  # shaped like sagemaker_inference's GenericInferenceToolkitError
        def __init__(self, status_code, message):
            super().__init__(status_code, message)
            self.status_code = status_code
            self.message = message

    ACTIVE = {"now": 0, "peak": 0}
    LOCK = threading.Lock()

    def model_fn(model_dir):
        with open(f"{model_dir}/label.txt") as f:
            return f.read().strip()

    def input_fn(body, content_type):
        if content_type != "application/json":
            raise RequestError(415, f"unsupported content type {content_type}")
        data = json.loads(body)
        if "fail" in data:
            raise RequestError(400, data["fail"])
        if "crash" in data:
            raise KeyError(data["crash"])
        return data

    def predict_fn(data, model):
        with LOCK:
            ACTIVE["now"] += 1
            ACTIVE["peak"] = max(ACTIVE["peak"], ACTIVE["now"])
        time.sleep(data.get("sleep", 0))
        with LOCK:
            ACTIVE["now"] -= 1
        return {"label": model, "x": data.get("x"), "peak": ACTIVE["peak"], "body_type": type(data).__name__}

    def output_fn(prediction, accept):
        return json.dumps(prediction), "application/json"
    """
)


def write_model(root: Path, handler: str = HANDLER, label: str = "v1", program: str = "inference.py") -> Path:
    (root / "code").mkdir(parents=True)
    (root / "code" / program).write_text(handler)
    (root / "label.txt").write_text(label)
    return root


def loaded_client(model_dir: Path, max_concurrency: int = 4, program: str = "inference.py") -> Client:
    handler = InferenceHandler(model_dir, program, max_concurrency, "application/json")
    handler.load()
    return Client(make_app(handler))


@pytest.fixture(autouse=True)
def _isolated_imports():
    """Handlers are imported by module name: forget them between tests."""
    before = dict(sys.modules)
    path = list(sys.path)
    yield
    for name in set(sys.modules) - set(before):
        del sys.modules[name]
    sys.modules.update(before)  # a handler loaded as "inference" replaced the real one
    sys.path[:] = path


def test_ping_is_503_until_the_model_is_loaded(tmp_path):
    handler = InferenceHandler(write_model(tmp_path), "inference.py", 1, "application/json")
    client = Client(make_app(handler))
    assert client.get("/ping").status_code == 503
    assert client.post("/invocations", data=b"{}", content_type="application/json").status_code == 503
    handler.load()
    assert client.get("/ping").status_code == 200


def test_invocation_runs_input_predict_output(tmp_path):
    client = loaded_client(write_model(tmp_path, label="breeds-v1"))
    response = client.post("/invocations", data=b'{"x": 3}', content_type="application/json")
    assert response.status_code == 200
    assert response.content_type == "application/json"
    assert response.json["label"] == "breeds-v1"
    assert response.json["x"] == 3


def test_status_code_errors_keep_their_status_and_message(tmp_path):
    client = loaded_client(write_model(tmp_path))
    bad = client.post(
        "/invocations", data=b'{"fail": "top_k must be an integer"}', content_type="application/json"
    )
    assert (bad.status_code, bad.text) == (400, "top_k must be an integer")
    unsupported = client.post("/invocations", data=b"abc", content_type="text/plain")
    assert unsupported.status_code == 415
    assert "unsupported content type text/plain" in unsupported.text


def test_other_exceptions_are_500_and_the_server_keeps_serving(tmp_path):
    client = loaded_client(write_model(tmp_path))
    crashed = client.post("/invocations", data=b'{"crash": "boom"}', content_type="application/json")
    assert crashed.status_code == 500
    assert "boom" in crashed.text
    again = client.post("/invocations", data=b'{"x": 1}', content_type="application/json")
    assert again.status_code == 200


def test_request_body_is_bounded_at_6_mb(tmp_path):
    client = loaded_client(write_model(tmp_path))
    response = client.post("/invocations", data=b"x" * (6 * 1024 * 1024 + 1), content_type="application/json")
    assert response.status_code == 413


def test_toolkit_defaults_when_functions_are_missing(tmp_path):
    """Without output_fn the PyTorch toolkit encodes to the Accept type; */* means application/json."""
    handler = textwrap.dedent(
        """
        def model_fn(model_dir):
            return 10

        def input_fn(body, content_type):
            return [float(v) for v in body.split(",")]

        def predict_fn(data, model):
            return [[v * model for v in data]]
        """
    )
    client = loaded_client(write_model(tmp_path, handler))
    as_json = client.post("/invocations", data=b"1,2", headers={"Content-Type": "text/csv", "Accept": "*/*"})
    assert (as_json.status_code, as_json.content_type, as_json.json) == (
        200,
        "application/json",
        [[10.0, 20.0]],
    )
    as_csv = client.post(
        "/invocations", data=b"1,2", headers={"Content-Type": "text/csv", "Accept": "text/csv"}
    )
    assert (as_csv.status_code, as_csv.text.strip()) == (200, "10.0,20.0")
    unsupported = client.post(
        "/invocations", data=b"1", headers={"Content-Type": "text/csv", "Accept": "image/png"}
    )
    assert unsupported.status_code == 500
    assert "image/png is not supported" in unsupported.text


def test_transform_fn_and_optional_context_argument(tmp_path):
    handler = textwrap.dedent(
        """
        def model_fn(model_dir, context):
            return "ctx-ok" if context is None else "unexpected"

        def transform_fn(model, body, content_type, accept):
            return f"{model}:{body}", "text/plain"
        """
    )
    client = loaded_client(write_model(tmp_path, handler, program="serve.py"), program="serve.py")
    response = client.post("/invocations", data=b'"hi"', content_type="application/json")
    assert (response.status_code, response.text, response.content_type) == (200, 'ctx-ok:"hi"', "text/plain")


def test_concurrent_inferences_are_bounded(tmp_path):
    client = loaded_client(write_model(tmp_path), max_concurrency=2)
    results: list[dict] = []

    def call() -> None:
        response = Client(client.application).post(
            "/invocations", data=b'{"sleep": 0.3}', content_type="application/json"
        )
        results.append(response.json)

    threads = [threading.Thread(target=call) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(results) == 5
    assert max(result["peak"] for result in results) == 2


def _start(model_dir: Path) -> tuple[subprocess.Popen[str], int]:
    process = subprocess.Popen(
        [sys.executable, "-m", MODEL_SERVER, "--model-dir", str(model_dir), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
    )
    assert process.stdout is not None
    first = process.stdout.readline().strip()
    assert first.startswith(PORT_ANNOUNCEMENT), first
    return process, int(first.removeprefix(PORT_ANNOUNCEMENT))


def _ping(port: int) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", "/ping")
        return connection.getresponse().status
    finally:
        connection.close()


def test_process_serves_ping_after_loading(tmp_path):
    process, port = _start(write_model(tmp_path))
    try:
        deadline = time.monotonic() + 20
        while _ping(port) != 200:
            assert time.monotonic() < deadline, "model never became healthy"
            time.sleep(0.05)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(10)


def test_process_exits_nonzero_when_model_fn_fails(tmp_path):
    model_dir = write_model(
        tmp_path, "def model_fn(model_dir):\n    raise RuntimeError('weights are corrupt')\n"
    )
    process, _ = _start(model_dir)
    assert process.wait(20) == 1
    assert process.stdout is not None
    output = process.stdout.read()
    assert "weights are corrupt" in output
