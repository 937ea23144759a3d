"""Shared fixtures: a tiny generated dataset and a model trained on it, once per session.

- ``sample_dataset_dir``: Path to a dogImages-layout dataset (``train|valid|test/NNN.Breed/*.jpg``,
  4 classes, 40 px JPEGs) from ``model_scripts/sample_data.py``.
- ``training_run``: the result of one real ``python model_scripts/train.py`` run on it
  (``model_dir``, ``checkpoint_dir``, ``output`` = combined stdout/stderr, ``argv``).
- ``trained_model_dir``: ``training_run.model_dir``, a SageMaker model directory
  (model.pth, model_config.json, code/inference.py, code/requirements.txt, and
  model.int8.onnx when fast_serving could export it). Treat it as read-only; copy it to modify.
- ``read_only_chain``: one ``served_model.serve_model`` chain (local_aws, the trained model on an
  endpoint, the Lambda in front) for the modules that only send it requests (bad input, load);
  modules that inject faults, change the endpoint or run their own clock deploy their own.
- ``airflow_stack``, ``airflow_api``, ``first_run``: the one ``make airflow`` stack of the session
  and its first REST-triggered run (``stack_fixtures``); the tests using it run last, together.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from stack_fixtures import airflow_api, airflow_stack, first_run, uses_the_stack  # noqa: F401

REPO = Path(__file__).resolve().parent.parent
TRAIN_SCRIPT = REPO / "model_scripts" / "train.py"

TINY_CLASSES = 4
TINY_IMAGE_SIZE = 32
TINY_EPOCHS = 4  # enough that 'it learns' (test accuracy >= 0.6, chance 0.25) is not a coin flip


@dataclass(frozen=True)
class TrainingRun:
    model_dir: Path
    checkpoint_dir: Path
    output_data_dir: Path
    output: str
    argv: tuple[str, ...]


def train_env(**extra: str) -> dict[str, str]:
    """Environment for train.py subprocesses: few threads (the machine is shared), no SageMaker leftovers."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("SM_", "MASTER_"))}
    env.update({"OMP_NUM_THREADS": "2", "PYTHONUNBUFFERED": "1"}, **extra)
    return env


def tiny_train_argv(
    dataset: Path, model_dir: Path, checkpoint_dir: Path, output_dir: Path, **flags: object
) -> list[str]:
    """train.py arguments for a tiny CPU run; ``flags`` override (batch_size=8 means --batch-size 8)."""
    settings: dict[str, object] = {
        "epochs": TINY_EPOCHS,
        "batch_size": 16,
        "lr": 0.003,
        "image_size": TINY_IMAGE_SIZE,
        "pretrained": "false",
        "patience": 5,
        "export_onnx": "true",
        "seed": 0,
    }
    settings.update(flags)
    argv = [
        "--train", str(dataset / "train"),
        "--valid", str(dataset / "valid"),
        "--test", str(dataset / "test"),
        "--model-dir", str(model_dir),
        "--checkpoint-dir", str(checkpoint_dir),
        "--output-data-dir", str(output_dir),
    ]  # fmt: skip
    for key, value in settings.items():
        argv += [f"--{key.replace('_', '-')}", str(value)]
    return argv


def run_train(argv: list[str], env: dict[str, str] | None = None, timeout: float = 600) -> str:
    """Run train.py in a subprocess, return its combined output; fail the test with the output on error."""
    completed = subprocess.run(
        [sys.executable, str(TRAIN_SCRIPT), *argv],
        env=env or train_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    output = completed.stdout + completed.stderr
    if completed.returncode != 0:
        pytest.fail(f"train.py exited {completed.returncode}:\n{output[-6000:]}")
    return output


@pytest.fixture(scope="session")
def sample_dataset_dir(tmp_path_factory) -> Path:
    from sample_data import generate

    return generate(tmp_path_factory.mktemp("dataset"), TINY_CLASSES, 24, 40, seed=0, per_class_eval=6)


@pytest.fixture(scope="session")
def training_run(sample_dataset_dir, tmp_path_factory) -> TrainingRun:
    root = tmp_path_factory.mktemp("training_run")
    model_dir, checkpoint_dir, output_dir = root / "model", root / "checkpoints", root / "output"
    argv = tiny_train_argv(sample_dataset_dir, model_dir, checkpoint_dir, output_dir)
    output = run_train(argv)
    return TrainingRun(model_dir, checkpoint_dir, output_dir, output, tuple(argv))


@pytest.fixture(scope="session")
def trained_model_dir(training_run) -> Path:
    return training_run.model_dir


@pytest.fixture(scope="session")
def read_only_chain(tmp_path_factory, trained_model_dir):
    """Deployed once: a module that leaves the chain broken fails its own last test (bad input checks
    the same processes still answer) and every later user's, so sharing hides nothing."""
    from served_model import serve_model

    served = serve_model(tmp_path_factory.mktemp("read_only_chain"), trained_model_dir)
    yield served
    served.server.stop()


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    """Tests on the shared Airflow stack run last, in their collected order: the session fixture
    then starts once and is torn down at the end, instead of idling beside every other test."""
    items[:] = [item for item in items if not uses_the_stack(item)] + [
        item for item in items if uses_the_stack(item)
    ]
