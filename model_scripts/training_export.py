"""What a job leaves behind: the servable model directory, the int8 ONNX model, the summary."""

from __future__ import annotations

import argparse
import json
import logging
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

import inference
import numpy as np
import serving_contract
import torch
from torch import nn
from training_loop import Evaluation
from training_telemetry import EVALUATION_FILE, evaluation_record

logger = logging.getLogger("train")

SERVING_REQUIREMENTS = ("openvino==2026.4.1", "onnxruntime==1.31.1", "pillow==13.0.0")
CALIBRATION_IMAGES = 128


def save_model_dir(
    model_dir: Path, weights: dict[str, torch.Tensor], classes: list[str], image_size: int
) -> None:
    """SageMaker PyTorch inference layout: weights, config and code/ (so model.tar.gz serves as is)."""
    model_dir.mkdir(parents=True, exist_ok=True)
    torch.save(weights, model_dir / "model.pth")
    config = {
        "arch": "resnet50",
        "num_classes": len(classes),
        "image_size": image_size,
        "classes": classes,
        "mean": list(inference.IMAGENET_MEAN),
        "std": list(inference.IMAGENET_STD),
    }
    config_file = model_dir / serving_contract.MODEL_CONFIG_FILE
    config_file.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    code_dir = model_dir / "code"
    code_dir.mkdir(exist_ok=True)
    scripts = Path(__file__).resolve().parent
    for name in serving_contract.SERVING_CODE:  # what the endpoint imports
        if (scripts / name).is_file():
            shutil.copy2(scripts / name, code_dir / name)
    (code_dir / "requirements.txt").write_text("\n".join(SERVING_REQUIREMENTS) + "\n", encoding="utf-8")
    logger.info("model directory written to %s", model_dir)


def calibration_batches(paths: Sequence[Path], image_size: int, batch_size: int = 16) -> Iterator[np.ndarray]:
    """Up to CALIBRATION_IMAGES training images, spread over the (class-sorted) list, as serving sees them."""
    count = min(CALIBRATION_IMAGES, len(paths))
    picks = np.linspace(0, len(paths) - 1, count).round().astype(int)
    chosen = [paths[index] for index in picks]
    for start in range(0, len(chosen), batch_size):
        chunk = chosen[start : start + batch_size]
        yield np.stack([inference.preprocess(path.read_bytes(), image_size) for path in chunk])


def export_onnx(model: nn.Module, training_paths: Sequence[Path], model_dir: Path, image_size: int) -> None:
    """Best effort: the PyTorch artifact always exists; a missing or failing exporter only warns."""
    try:
        import fast_serving
    except ImportError as error:
        logger.warning(
            "fast_serving is not available (%s): serving will use PyTorch (no model.int8.onnx)", error
        )
        return
    try:
        written = fast_serving.export_int8_onnx(
            model, calibration_batches(training_paths, image_size), model_dir, image_size
        )
        logger.info("int8 ONNX model written to %s", written)
    except Exception:
        logger.warning("int8 ONNX export failed: serving will use PyTorch", exc_info=True)


def write_summary(args: argparse.Namespace, final: dict[str, float]) -> None:
    try:
        args.output_data_dir.mkdir(parents=True, exist_ok=True)
        summary = {"metrics": final, "hyperparameters": {k: str(v) for k, v in vars(args).items()}}
        (args.output_data_dir / "training_summary.json").write_text(
            json.dumps(summary, indent=2), encoding="utf-8"
        )
    except OSError as error:
        logger.warning("could not write the training summary to %s: %s", args.output_data_dir, error)


def write_evaluation(output_data_dir: Path, classes: Sequence[str], test: Evaluation) -> None:
    """``evaluation.json`` of the test set in SM_OUTPUT_DATA_DIR (see ``training_telemetry``)."""
    record = evaluation_record("test", test.loss, classes, test.correct_per_class, test.total_per_class)
    try:
        output_data_dir.mkdir(parents=True, exist_ok=True)
        (output_data_dir / EVALUATION_FILE).write_text(json.dumps(record, indent=2), encoding="utf-8")
    except OSError as error:
        logger.warning("could not write the evaluation to %s: %s", output_data_dir, error)
