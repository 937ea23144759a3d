"""Part of the serving section: int8 recipes side by side, and which layers int8 hurts most.

Run on the hard-case model (133 classes, barely trained), where top-1/top-2
margins are small enough for int8 error to flip answers, so recipes differ.
The hard-case figure is the int8 model train.py shipped, against eager fp32 on
the same input (what int8 alone changes; the serving section measures what
preprocessing changes on the agreement model). Each recipe quantizes the same
pre-processed fp32 ONNX model with the same calibration images (fewer than
train.py's), and is judged on top-1 agreement with eager fp32 (same
preprocessed input), logit error and batch-1 latency.
Sensitivity: onnxruntime's QDQ debugging tools give each activation's and
weight's signal-to-quantization-noise ratio (SQNR, dB) in the all-int8 model;
the lowest are the layers that lose most to int8.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench import stock_handler
from bench.artifacts import SampleArtifacts, served_int8_predictor
from bench.config import BenchConfig
from bench.report import SectionResult
from bench.stats import summarize


def _recipes() -> list[Any]:
    """All-int8 baselines, each calibration method with the classifier float, and what the first
    convolution adds in float (the sensitivity analysis runs on the first recipe)."""
    from fast_serving import FLOAT_LAYER_ROLES, QuantizationRecipe

    return [
        QuantizationRecipe("MinMax"),
        QuantizationRecipe("Percentile"),
        QuantizationRecipe("Entropy", ("classifier",)),
        QuantizationRecipe("Percentile", ("classifier",)),
        QuantizationRecipe("Percentile", FLOAT_LAYER_ROLES),
    ]


def _judged(int8: np.ndarray, fp32: np.ndarray, predictor: Any, single: np.ndarray, rounds: int) -> dict:
    """Top-1 agreement and logit error against fp32 on the same input, and batch-1 latency."""
    predictor.logits(single)
    seconds = []
    for _ in range(rounds):
        tick = time.perf_counter()
        predictor.logits(single)
        seconds.append(time.perf_counter() - tick)
    return {
        "top1_agreement_with_fp32_percent": float(100 * np.mean(int8.argmax(1) == fp32.argmax(1))),
        "logit_error_rms": float(np.sqrt(np.mean((int8 - fp32) ** 2))),
        "p50_ms": summarize(seconds).p50_ms,
    }


def _chunks(batch: np.ndarray, rows: int = 16) -> list[np.ndarray]:
    return [batch[start : start + rows] for start in range(0, len(batch), rows)]


def _sensitivity(
    prepared: Path, quantized: Path, batches: list[np.ndarray], scratch: Path, image_size: int
) -> dict[str, Any]:
    from fast_serving import _calibration_reader
    from onnxruntime.quantization import qdq_loss_debug as debug

    augmented = {}
    for name, path in (("float", prepared), ("qdq", quantized)):
        augmented[name] = scratch / f"{name}.augmented.onnx"
        debug.modify_model_output_intermediate_tensors(str(path), str(augmented[name]))
    activations = {
        name: debug.collect_activations(str(path), _calibration_reader(batches, image_size))
        for name, path in augmented.items()
    }
    errors = debug.compute_activation_error(
        debug.create_activation_matching(activations["qdq"], activations["float"])
    )
    weights = debug.compute_weight_error(debug.create_weight_matching(str(prepared), str(quantized)))
    worst_activations = sorted((err["qdq_err"], name) for name, err in errors.items())[:5]
    worst_weights = sorted((sqnr, name) for name, sqnr in weights.items())[:5]
    return {
        "lowest_activation_sqnr_db": {name: round(float(sqnr), 1) for sqnr, name in worst_activations},
        "lowest_weight_sqnr_db": {name: round(float(sqnr), 1) for sqnr, name in worst_weights},
        "median_activation_sqnr_db": float(np.median([err["qdq_err"] for err in errors.values()])),
        "median_weight_sqnr_db": float(np.median(list(weights.values()))),
    }


def quantization_tradeoff(
    config: BenchConfig, artifacts: SampleArtifacts, result: SectionResult, log: Callable[[str], None]
) -> None:
    import torch
    import training_data
    import training_export
    from fast_serving import (
        DEFAULT_RECIPE,
        float_node_names,
        prepare_fp32_onnx,
        quantize_prepared,
    )
    from inference import preprocess

    size = config.image_size
    network = stock_handler.model_fn(artifacts.model_dir).network
    batch = np.stack([preprocess(path.read_bytes(), size) for path in artifacts.evaluation_images()])
    with torch.no_grad():
        fp32 = np.concatenate([network(torch.from_numpy(chunk)).numpy() for chunk in _chunks(batch)])
    training_paths = training_data.index_folder(artifacts.dataset_dir / "train").paths
    # Every recipe gets the same calibration images, fewer than train.py's 128: Entropy and
    # Percentile build histograms of every tensor, which at 224 px costs ~0.3 s per image here.
    spread = np.linspace(0, len(training_paths) - 1, config.recipe_calibration_images).round().astype(int)
    calibration_paths = [training_paths[i] for i in sorted(set(spread.tolist()))]
    single = batch[:1]
    shipped = served_int8_predictor(artifacts.model_dir)  # every int8 figure: the runtime served
    hard_case = _judged(
        np.concatenate([shipped.logits(chunk) for chunk in _chunks(batch)]),
        fp32,
        shipped,
        single,
        config.recipe_latency_rounds,
    )
    result.details["hard_case"] = {"model": artifacts.describe(), "images": len(batch), **hard_case}
    result.notes.append(
        f"hard case ({artifacts.describe()}): the int8 model train.py exported ({DEFAULT_RECIPE.name}, "
        f"served with {shipped.runtime}, "
        f"{training_export.CALIBRATION_IMAGES} calibration images) agrees with fp32 on top-1 for "
        f"{hard_case['top1_agreement_with_fp32_percent']:.1f}% of {len(batch)} images, same input "
        "(reported, no target: its top-1/top-2 margins are tiny)"
    )
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-int8-") as name:
        scratch = Path(name)
        shutil.copy(artifacts.model_dir / "model_config.json", scratch / "model_config.json")
        prepared = prepare_fp32_onnx(network, scratch, size)
        first_conv, classifier = float_node_names(prepared, ("first_conv", "classifier"))
        for index, recipe in enumerate(_recipes()):
            log(f"   int8 recipe {recipe.name} ...")
            began = time.perf_counter()
            output = quantize_prepared(
                prepared,
                scratch / f"recipe{index}.onnx",
                training_export.calibration_batches(calibration_paths, size),
                size,
                recipe,
            )
            quantize_seconds = time.perf_counter() - began
            predictor = type(shipped)(scratch, model_file=output.name)
            int8 = np.concatenate([predictor.logits(chunk) for chunk in _chunks(batch)])
            rows.append(
                {
                    "recipe": recipe.name,
                    "default": recipe == DEFAULT_RECIPE,
                    **_judged(int8, fp32, predictor, single, config.recipe_latency_rounds),
                    "quantize_seconds": quantize_seconds,
                }
            )
            if index == 0:
                log("   per-layer sensitivity of the all-int8 model ...")
                sensitivity = _sensitivity(
                    prepared, output, _chunks(batch[: config.sensitivity_images], 2), scratch, size
                )
                sensitivity["first_conv_node"], sensitivity["classifier_node"] = first_conv, classifier
                result.details["int8_sensitivity"] = sensitivity
    result.details["int8_recipes"] = rows
    result.notes.append(
        f"int8 recipes on the hard case ({len(batch)} images, top-1 vs eager fp32 on the same input; "
        f"each calibrated on the same {len(calibration_paths)} training images):"
    )
    for row in rows:
        result.notes.append(
            f"  {'*' if row['default'] else ' '} {row['recipe']:<42} agreement "
            f"{row['top1_agreement_with_fp32_percent']:5.1f}%  logit rms {row['logit_error_rms']:.3f}  "
            f"p50 {row['p50_ms']:.1f} ms  quantize {row['quantize_seconds']:.0f} s"
        )
    sensitivity = result.details["int8_sensitivity"]
    result.notes.append(
        "lowest SQNR in the all-int8 model (dB; median activation "
        f"{sensitivity['median_activation_sqnr_db']:.1f}, "
        f"weight {sensitivity['median_weight_sqnr_db']:.1f}): "
        f"activations {json.dumps(sensitivity['lowest_activation_sqnr_db'])}; "
        f"weights {json.dumps(sensitivity['lowest_weight_sqnr_db'])}; "
        f"first conv = {first_conv}, classifier = {classifier}; * = fast_serving's default recipe"
    )
