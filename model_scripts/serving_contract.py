"""What the serving container and the pipeline agree on: the model directory's files and the
shape of a prediction response. Written once, here.

Standard library only, so it runs wherever the container code runs: it ships in
``sourcedir.tar.gz`` with the rest of ``model_scripts/`` and in ``model.tar.gz``'s ``code/``
beside ``inference.py`` (``SERVING_CODE``). The Airflow plugin loads this same file from
``model_scripts/`` (``dog_breed.packaging.model_script``), so the smoke test checks answers
against the contract of the code it deployed. ``lambda_function.py`` keeps deliberate copies
of ``IMAGE_CONTENT_TYPES``, ``MAX_TOP_K`` and ``LATENCY_FIELD`` (its zip holds one file);
``tests/test_lambda_function.py`` pins them to these.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

# ---------------------------------------------------------------- the model directory

MODEL_CONFIG_FILE = "model_config.json"
ONNX_MODEL_FILE = "model.int8.onnx"
# What model.tar.gz's code/ must hold for inference.py to import (SAGEMAKER_SUBMIT_DIRECTORY).
SERVING_CODE = ("inference.py", "fast_serving.py", "serving_contract.py")


def read_model_config(model_dir: str | Path) -> dict[str, Any]:
    """``model_config.json`` of a model directory, checked: ``classes`` matches ``num_classes``."""
    path = Path(model_dir) / MODEL_CONFIG_FILE
    with open(path, encoding="utf-8") as handle:
        config = json.load(handle)
    missing = [key for key in ("classes", "num_classes", "image_size") if key not in config]
    if missing:
        raise ValueError(f"{path} lacks {missing}")
    listed, declared = len(config["classes"]), int(config["num_classes"])
    if listed != declared:
        raise ValueError(f"{MODEL_CONFIG_FILE} lists {listed} classes but num_classes={declared}")
    return config


# ---------------------------------------------------------------- requests

IMAGE_CONTENT_TYPES = frozenset({"image/jpeg", "image/png", "application/x-image"})
JSON_CONTENT_TYPE = "application/json"
DEFAULT_TOP_K = 5
MAX_TOP_K = 20

# ---------------------------------------------------------------- responses

# Each of the ``top_k`` predictions, most probable first.
PREDICTION_FIELDS: dict[str, type] = {"breed": str, "class_folder": str, "index": int, "probability": float}
# The endpoint's answer around them.
RESPONSE_FIELDS: dict[str, type] = {"predictions": list, "top_k": int, "runtime": str}
# What the Lambda adds: milliseconds its InvokeEndpoint call took.
LATENCY_FIELD = "latency_ms"


def breed_name(class_folder: str) -> str:
    """``"002.Afghan_hound"`` -> ``"Afghan hound"``."""
    return class_folder.split(".", 1)[-1].replace("_", " ")


def prediction(class_folder: str, index: int, probability: float) -> dict[str, Any]:
    return {
        "breed": breed_name(class_folder),
        "class_folder": class_folder,
        "index": index,
        "probability": round(probability, 6),
    }


def response(predictions: list[dict[str, Any]], top_k: int, runtime: str) -> dict[str, Any]:
    return {"predictions": predictions, "top_k": top_k, "runtime": runtime}


def _has_type(value: Any, kind: type) -> bool:
    if isinstance(value, bool):  # JSON true is not a number here
        return False
    return isinstance(value, int | float) if kind is float else isinstance(value, kind)


def response_problems(
    body: Mapping[str, Any], *, classes: Collection[str], top_k: int, with_latency: bool = False
) -> list[str]:
    """Every way ``body`` breaks the contract for a request of ``top_k`` over ``classes``."""
    wrong = [name for name, kind in RESPONSE_FIELDS.items() if not _has_type(body.get(name), kind)]
    if with_latency and not _has_type(body.get(LATENCY_FIELD), float):
        wrong.append(LATENCY_FIELD)
    if wrong:
        return [f"bad or missing {wrong}"]
    predictions = body["predictions"]
    problems = []
    if body["top_k"] != top_k or len(predictions) != top_k:
        problems.append(
            f"asked for top {top_k}, got top_k={body['top_k']!r} with {len(predictions)} predictions"
        )
    for position, entry in enumerate(predictions):
        if not isinstance(entry, dict):
            problems.append(f"prediction {position} is not an object")
            continue
        wrong = [name for name, kind in PREDICTION_FIELDS.items() if not _has_type(entry.get(name), kind)]
        if wrong:
            problems.append(f"prediction {position}: bad or missing {wrong}")
            continue
        if not 0.0 <= entry["probability"] <= 1.0:
            problems.append(f"prediction {position}: probability {entry['probability']} outside [0, 1]")
        if entry["class_folder"] not in classes:
            problems.append(f"prediction {position}: unknown class {entry['class_folder']!r}")
    if not problems:
        probabilities = [entry["probability"] for entry in predictions]
        if probabilities != sorted(probabilities, reverse=True):
            problems.append("predictions are not sorted by probability")
    return problems
