"""Section 1: endpoint handlers (stock vs ours) and model-only latency against the CPU's peak."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench import stock_handler
from bench.artifacts import sample_artifacts, served_int8_predictor
from bench.config import BenchConfig
from bench.machine import measured_peaks, model_flops
from bench.quantization import quantization_tradeoff
from bench.report import Check, Comparison, SectionResult
from bench.stats import interleaved, summarize

AGREEMENT_TARGET_PERCENT = 99.0
# The handler target is physics, not a ratio: the fastest runtime's model-only rate must reach this
# share of what that runtime's arithmetic peaks at on this machine (a ratio against stock depends
# on the CPU: on AVX2 without VNNI int8 gains ~2x, with VNNI/AMX far more).
MODEL_ONLY_PEAK_TARGET_PERCENT = 85.0
CONTENT_TYPE = "image/jpeg"
ACCEPT = "application/json"


def _handler(module: Any, model: Any) -> Callable[[bytes], int]:
    """JPEG bytes -> the top-1 class index, through input_fn -> predict_fn -> output_fn."""

    def invoke(body: bytes) -> int:
        response = module.output_fn(module.predict_fn(module.input_fn(body, CONTENT_TYPE), model), ACCEPT)
        return int(json.loads(response)["predictions"][0]["index"])

    return invoke


def handler_section(
    config: BenchConfig, model_dir: Path, ours_model: Any, images: list[bytes], result: SectionResult
) -> list[int]:
    """Times both handlers on ``images`` (ours serving ``ours_model``); returns stock's top-1 answers."""
    import inference

    result.details["served_runtime"] = ours_model.runtime
    paths = {
        "stock": _handler(stock_handler, stock_handler.model_fn(model_dir)),
        "ours": _handler(inference, ours_model),
    }
    runs = interleaved(paths, images, config.latency_block)
    stock, ours = summarize(runs["stock"].seconds), summarize(runs["ours"].seconds)
    agreeing = sum(a == b for a, b in zip(runs["stock"].outputs, runs["ours"].outputs, strict=True))
    agreement = 100.0 * agreeing / len(images)
    size = config.image_size
    result.details["handler"] = {"stock": stock.as_dict(), "ours": ours.as_dict(), "images": len(images)}
    labels = {"ours_label": "int8", "baseline_label": "stock"}
    result.comparisons += [
        Comparison(
            f"handler p50 latency, {size} px, batch 1", "ms", ours.p50_ms, stock.p50_ms, "lower", **labels
        ),
        Comparison(
            f"handler p90 latency, {size} px, batch 1", "ms", ours.p90_ms, stock.p90_ms, "lower", **labels
        ),
        Comparison(
            f"handler throughput, {size} px, batch 1",
            "images/s",
            ours.per_second,
            stock.per_second,
            "higher",
            note="sequential requests: 1 / mean handler latency (decode + preprocess + model + JSON)",
            **labels,
        ),
    ]
    result.checks.append(
        Check(
            f"top-1 agreement stock vs int8 ({len(images)} images)",
            agreement,
            "%",
            AGREEMENT_TARGET_PERCENT,
            at_least=True,
        )
    )
    return runs["stock"].outputs


def agreement_diagnosis(
    config: BenchConfig,
    model_dir: Path,
    served: Any,
    images: list[bytes],
    stock_top1: list[int],
    result: SectionResult,
) -> None:
    """Split stock-vs-ours disagreement into preprocessing and int8, and show how close the calls were."""
    import torch
    from inference import preprocess

    network = stock_handler.model_fn(model_dir).network
    batch = np.stack([preprocess(image, config.image_size) for image in images])
    with torch.no_grad():
        fp32 = np.concatenate(
            [network(torch.from_numpy(batch[i : i + 16])).numpy() for i in range(0, len(batch), 16)]
        )
    int8 = served.logits(batch)
    top2 = np.sort(fp32, axis=1)[:, -2:]
    margins = top2[:, 1] - top2[:, 0]
    stock, fp32_top1, int8_top1 = np.asarray(stock_top1), fp32.argmax(axis=1), int8.argmax(axis=1)
    flipped = int8_top1 != fp32_top1
    diagnosis = {
        "preprocessing_only_agreement_percent": float(100 * np.mean(stock == fp32_top1)),
        "int8_only_agreement_percent": float(100 * np.mean(~flipped)),
        "median_fp32_top2_margin": float(np.median(margins)),
        "median_fp32_top2_margin_where_int8_flips": float(np.median(margins[flipped]))
        if flipped.any()
        else None,
        "int8_logit_error_rms": float(np.sqrt(np.mean((int8 - fp32) ** 2))),
    }
    result.details["agreement_diagnosis"] = diagnosis
    flips = diagnosis["median_fp32_top2_margin_where_int8_flips"]
    result.notes.append(
        f"agreement split: our preprocessing alone {diagnosis['preprocessing_only_agreement_percent']:.1f}%, "
        f"int8 alone {diagnosis['int8_only_agreement_percent']:.1f}%; fp32 top-1/top-2 logit margin median "
        f"{diagnosis['median_fp32_top2_margin']:.2f} overall"
        + (f", {flips:.2f} where int8 flips" if flips is not None else "")
        + f", int8 logit error rms {diagnosis['int8_logit_error_rms']:.2f}"
    )


def model_only_section(config: BenchConfig, model_dir: Path, image: bytes, result: SectionResult) -> None:
    """Batch-1 forward pass only: eager fp32 vs onnxruntime fp32 vs int8 in both runtimes, over peak."""
    import torch
    from fast_serving import OnnxPredictor, OpenVinoPredictor, export_fp32_onnx
    from inference import preprocess

    stock = stock_handler.model_fn(model_dir)
    batch = preprocess(image, config.image_size)[np.newaxis]
    tensor = torch.from_numpy(batch)
    onnx_int8, openvino_int8 = OnnxPredictor(model_dir), OpenVinoPredictor(model_dir)
    with tempfile.TemporaryDirectory(prefix="bench-fp32-") as scratch:
        (Path(scratch) / "model_config.json").write_bytes((model_dir / "model_config.json").read_bytes())
        export_fp32_onnx(stock.network, Path(scratch) / "model.fp32.onnx", config.image_size)
        fp32 = OnnxPredictor(scratch, model_file="model.fp32.onnx")

    def eager(_: int) -> Any:
        with torch.no_grad():
            return stock.network(tensor)

    paths = {
        "eager fp32": eager,
        "onnx fp32": lambda _: fp32.logits(batch),
        "onnx int8": lambda _: onnx_int8.logits(batch),
        "openvino int8": lambda _: openvino_int8.logits(batch),
    }
    runs = interleaved(paths, list(range(config.model_only_rounds)), max(1, config.model_only_rounds // 3))
    stats = {name: summarize(run.seconds) for name, run in runs.items()}
    flops = model_flops(stock.network, config.image_size)
    peaks = measured_peaks(config.peak_matrix_sides)
    peak_by_path = {
        "eager fp32": peaks["fp32_gflops"],
        "onnx fp32": peaks["fp32_gflops"],
        "onnx int8": peaks["int8_gops"],
        "openvino int8": peaks["int8_gops"],
    }
    # The peak is the best of its repeats, so the model is judged by the best of its rounds too:
    # the same statistic on both sides, and cycles that other tenants of the host take out of
    # either. The p50 is kept beside it.
    utilisation = {}
    for name, stat in stats.items():
        achieved = flops / (stat.best_ms / 1000.0) / 1e9
        utilisation[name] = {
            "achieved_gflops": achieved,
            "peak_gflops": peak_by_path[name],
            "fraction": achieved / peak_by_path[name],
            "fraction_at_p50": flops / (stat.p50_ms / 1000.0) / 1e9 / peak_by_path[name],
        }
    result.details["model_only"] = {name: stat.as_dict() for name, stat in stats.items()}
    result.details["model_flops_per_image"] = flops
    result.details["peaks"] = peaks
    result.details["utilisation"] = utilisation
    baseline = stats["eager fp32"].p50_ms
    for name in ("onnx fp32", "onnx int8", "openvino int8"):
        use = utilisation[name]
        result.comparisons.append(
            Comparison(
                f"model-only p50, {name}",
                "ms",
                stats[name].p50_ms,
                baseline,
                "lower",
                ours_label=name.replace("onnx ", "").replace("openvino ", "ov "),
                baseline_label="eager",
                note=_utilisation_text(use),
            )
        )
    fastest = min(stats, key=lambda name: stats[name].p50_ms)
    result.checks.append(
        Check(
            f"model-only, fastest runtime ({fastest}), best round over its peak",
            100.0 * utilisation[fastest]["fraction"],
            "%",
            MODEL_ONLY_PEAK_TARGET_PERCENT,
            at_least=True,
            note=_utilisation_text(utilisation[fastest]),
        )
    )
    eager_use = utilisation["eager fp32"]
    result.notes.append(
        f"model: {flops / 1e9:.2f} GFLOP/image (multiply-add = 2); eager fp32 reaches "
        f"{_utilisation_text(eager_use)}; "
        f"peaks from {peaks['matrix_sides']} n^3 matmuls: fp32 {peaks['fp32_gflops']:.0f} GFLOP/s (best of "
        f"torch {peaks['fp32_gflops_torch']:.0f}, onnxruntime {peaks['fp32_gflops_onnxruntime']:.0f}), "
        f"bf16 {peaks['bf16_gflops']:.0f} (torch), int8 {peaks['int8_gops']:.0f} GOP/s (best of onnxruntime "
        f"MatMulInteger {peaks['int8_gops_onnxruntime']:.0f}, "
        f"OpenVINO 3x3 conv chain {peaks['int8_gops_openvino']:.0f}; "
        "every runtime's int8 figure is judged against the best)"
    )


def run(config: BenchConfig, log: Callable[[str], None] = print) -> SectionResult:
    result = SectionResult("serving: endpoint handlers and model-only latency")
    artifacts = sample_artifacts(config, "agreement", log)
    wanted = config.agreement_model.min_test_accuracy
    if wanted:
        result.checks.append(
            Check(
                "agreement model's test accuracy (synthetic set)",
                artifacts.test_accuracy or 0.0,
                "",
                wanted,
                at_least=True,
                note="agreement is judged on a model that is right most of the time",
            )
        )
    paths = artifacts.evaluation_images()
    if len(paths) < config.agreement_images:
        raise RuntimeError(
            f"need {config.agreement_images} evaluation images, the sample set has {len(paths)}"
        )
    images = [path.read_bytes() for path in paths[: config.agreement_images]]
    result.details["agreement_model"] = json.loads((artifacts.model_dir / "model_config.json").read_text())
    result.details["agreement_model"].pop("classes", None)
    result.details["agreement_model"]["test_accuracy"] = artifacts.test_accuracy
    log("   handlers: stock vs ours, interleaved ...")
    served = served_int8_predictor(artifacts.model_dir)  # loaded once for both
    stock_top1 = handler_section(config, artifacts.model_dir, served, images, result)
    agreement_diagnosis(config, artifacts.model_dir, served, images, stock_top1, result)
    log("   model only: eager fp32, onnx fp32, onnx int8, openvino int8 ...")
    model_only_section(config, artifacts.model_dir, images[0], result)
    result.notes.append(
        f"{artifacts.describe()} (an easier set than dogImages: classes differ by hue, shape and texture); "
        f"requests are {artifacts.recipe.image_side} px JPEGs"
    )
    hard = sample_artifacts(config, "hard", log)
    log("   hard case and quantization recipes ...")
    quantization_tradeoff(config, hard, result, log)
    return result


def _utilisation_text(use: dict[str, float]) -> str:
    return (
        f"best round {use['achieved_gflops']:.0f} of {use['peak_gflops']:.0f} G(FL)OP/s peak = "
        f"{use['fraction']:.0%} (at p50 {use['fraction_at_p50']:.0%})"
    )
