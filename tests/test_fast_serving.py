"""fast_serving: the int8 ONNX export and its predictors (onnxruntime, OpenVINO), on a small ResNet50."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import fast_serving
import numpy as np
import onnx
import pytest
import torch
from torchvision.models import resnet50

IMAGE_SIZE = 64
CLASSES = ["001.Affenpinscher", "002.Afghan_hound", "003.Airedale_terrier", "004.Akita"]

pytestmark = pytest.mark.slow

# Both runtimes serve the same model.int8.onnx behind the same interface.
PREDICTORS = pytest.mark.parametrize(
    "predictor_class",
    [fast_serving.OnnxPredictor, fast_serving.OpenVinoPredictor],
    ids=["onnxruntime", "openvino"],
)


def calibration_images(count: int, seed: int) -> np.ndarray:
    """Smooth random images in the normalized range, like preprocessed photos (not white noise)."""
    rng = np.random.default_rng(seed)
    coarse = rng.standard_normal((count, 3, IMAGE_SIZE // 8, IMAGE_SIZE // 8)).astype(np.float32)
    return np.repeat(np.repeat(coarse, 8, axis=2), 8, axis=3)


@pytest.fixture(scope="module")
def network() -> torch.nn.Module:
    torch.manual_seed(0)
    return resnet50(weights=None, num_classes=len(CLASSES)).eval()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, network) -> Path:
    directory = tmp_path_factory.mktemp("int8")
    config = {"classes": CLASSES, "image_size": IMAGE_SIZE, "num_classes": len(CLASSES)}
    (directory / "model_config.json").write_text(json.dumps(config))
    batches = (calibration_images(8, seed) for seed in range(4))
    written = fast_serving.export_int8_onnx(network, batches, directory, IMAGE_SIZE)
    assert written == directory / fast_serving.INT8_MODEL_FILE
    return directory


def test_export_writes_a_static_qdq_model_with_per_channel_weights(model_dir: Path) -> None:
    model = onnx.load(str(model_dir / fast_serving.INT8_MODEL_FILE))
    ops = [node.op_type for node in model.graph.node]
    assert ops.count("Conv") == 53 and "BatchNormalization" not in ops
    assert ops.count("QuantizeLinear") > 50 and ops.count("DequantizeLinear") > 100
    per_channel = {
        output
        for node in model.graph.node
        if node.op_type == "DequantizeLinear" and any(a.name == "axis" for a in node.attribute)
        for output in node.output
    }
    # The default recipe keeps only the classifier float; all 53 convolutions carry int8
    # weights with one scale per output channel.
    assert fast_serving.DEFAULT_RECIPE.keep_float == ("classifier",)
    convolutions = [node for node in model.graph.node if node.op_type == "Conv"]
    assert sum(node.input[1] in per_channel for node in convolutions) == 53
    batch_dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param and not batch_dim.dim_value
    assert not list((model_dir).glob("*.fp32.onnx")), "intermediate files must not be left in the model dir"


def test_the_layer_kept_float_takes_float_inputs_and_the_rest_are_quantized(model_dir: Path) -> None:
    model = onnx.load(str(model_dir / fast_serving.INT8_MODEL_FILE))
    produced_by = {output: node for node in model.graph.node for output in node.output}
    compute = [node for node in model.graph.node if node.op_type in ("Conv", "Gemm")]
    first, classifier = compute[0], compute[-1]
    assert first.op_type == "Conv" and classifier.op_type == "Gemm"

    def dequantized(node: onnx.NodeProto) -> bool:
        return all(
            name in produced_by and produced_by[name].op_type == "DequantizeLinear" for name in node.input[:2]
        )

    assert not dequantized(classifier)
    assert dequantized(first) and all(dequantized(node) for node in compute[1:-1])


def test_float_node_names_and_recipes_refuse_what_they_do_not_know(model_dir: Path, tmp_path: Path) -> None:
    path = model_dir / fast_serving.INT8_MODEL_FILE
    first, classifier = fast_serving.float_node_names(path, ("first_conv", "classifier"))
    assert first != classifier
    with pytest.raises(ValueError, match="unknown layer roles"):
        fast_serving.float_node_names(path, ("second_conv",))
    recipe = fast_serving.QuantizationRecipe("Histogram")
    with pytest.raises(ValueError, match="calibration must be one of"):
        fast_serving.quantize_prepared(path, tmp_path / "x.onnx", iter(()), IMAGE_SIZE, recipe)


@PREDICTORS
def test_predictor_returns_probabilities_for_any_batch_size(model_dir: Path, predictor_class: type) -> None:
    predictor = predictor_class(model_dir)
    assert (
        predictor.runtime
        == {"OnnxPredictor": "onnx-int8", "OpenVinoPredictor": "openvino-int8"}[predictor_class.__name__]
    )
    assert predictor.classes == CLASSES and predictor.image_size == IMAGE_SIZE
    batch = calibration_images(3, seed=10)
    together = predictor.predict(batch)
    assert together.shape == (3, len(CLASSES)) and together.dtype == np.float32
    np.testing.assert_allclose(together.sum(axis=1), 1.0, rtol=1e-5)
    one_by_one = np.concatenate([predictor.predict(batch[i : i + 1]) for i in range(3)])
    np.testing.assert_allclose(together, one_by_one, atol=1e-5)


@PREDICTORS
def test_int8_logits_track_the_float_model(
    model_dir: Path, network: torch.nn.Module, predictor_class: type
) -> None:
    batch = calibration_images(6, seed=20)
    int8_logits = predictor_class(model_dir).logits(batch)
    with torch.no_grad():
        float_logits = network(torch.from_numpy(batch)).numpy()
    for quantized, reference in zip(int8_logits, float_logits, strict=True):
        assert np.corrcoef(quantized, reference)[0, 1] > 0.9


def test_openvino_runs_the_model_as_onnxruntime_does(model_dir: Path) -> None:
    batch = calibration_images(8, seed=30)
    theirs = fast_serving.OnnxPredictor(model_dir).logits(batch)
    ours = fast_serving.OpenVinoPredictor(model_dir).logits(batch)
    # Same quantization parameters, different kernels (rounding of requantized sums, fused adds):
    # the logits differ by a small fraction of their spread, far below int8's own error.
    assert np.abs(ours - theirs).max() < 0.05 * np.abs(theirs).max()
    np.testing.assert_array_equal(ours.argmax(axis=1), theirs.argmax(axis=1))


def test_openvino_predictor_serves_concurrent_request_threads(model_dir: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    predictor = fast_serving.OpenVinoPredictor(model_dir)
    images = [calibration_images(1, seed=40 + index) for index in range(8)]
    sequential = [predictor.logits(image) for image in images]
    with ThreadPoolExecutor(max_workers=4) as pool:  # the model server's request threads
        concurrent = list(pool.map(predictor.logits, images * 3))
    for index, logits in enumerate(concurrent):
        np.testing.assert_allclose(logits, sequential[index % len(images)], rtol=1e-5, atol=1e-5)
    # A thread per request, one after another: each reuses the buffers the last one left.
    pooled = predictor._idle_requests.qsize()
    assert 1 <= pooled <= 4  # never more than were busy at once
    for image in images:
        worker = threading.Thread(target=predictor.logits, args=(image,))
        worker.start()
        worker.join()
    assert predictor._idle_requests.qsize() == pooled


def test_openvino_keeps_float_layers_float_and_uses_the_physical_cores() -> None:
    config = fast_serving.openvino_config()
    assert config["INFERENCE_PRECISION_HINT"] == "f32" and config["PERFORMANCE_HINT"] == "LATENCY"
    assert config["INFERENCE_NUM_THREADS"] == fast_serving.physical_core_count()
    assert fast_serving.openvino_config(1)["INFERENCE_NUM_THREADS"] == 1


@PREDICTORS
def test_predictor_rejects_wrong_input_shapes(model_dir: Path, predictor_class: type) -> None:
    predictor = predictor_class(model_dir)
    with pytest.raises(ValueError, match="batch must be"):
        predictor.predict(np.zeros((3, IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32))
    with pytest.raises(ValueError, match="batch must be"):
        predictor.predict(np.zeros((1, 3, IMAGE_SIZE + 1, IMAGE_SIZE), dtype=np.float32))


@PREDICTORS
def test_predictor_refuses_a_config_that_disagrees_with_the_model(
    model_dir: Path, tmp_path: Path, predictor_class: type
) -> None:
    (tmp_path / fast_serving.INT8_MODEL_FILE).write_bytes(
        (model_dir / fast_serving.INT8_MODEL_FILE).read_bytes()
    )
    config = {"classes": [*CLASSES, "005.Alaskan_malamute"], "image_size": IMAGE_SIZE, "num_classes": 5}
    (tmp_path / "model_config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="outputs 4 classes"):
        predictor_class(tmp_path)


def test_inference_model_fn_serves_the_int8_model_with_the_runtime_asked_for(
    model_dir: Path, monkeypatch
) -> None:
    import inference

    for choice, runtime in (("auto", "openvino-int8"), ("openvino", "openvino-int8"), ("onnx", "onnx-int8")):
        monkeypatch.setenv(inference.RUNTIME_ENV, choice)
        assert inference.model_fn(str(model_dir)).runtime == runtime


def test_model_fn_warms_the_predictor_up_before_the_first_request(model_dir: Path, monkeypatch) -> None:
    import inference

    batches: list[tuple[int, ...]] = []
    run = fast_serving.OpenVinoPredictor._run
    monkeypatch.setattr(
        fast_serving.OpenVinoPredictor,
        "_run",
        lambda self, inputs: batches.append(inputs.shape) or run(self, inputs),
    )
    monkeypatch.setenv(inference.RUNTIME_ENV, "openvino")
    inference.model_fn(str(model_dir))
    assert batches == [(1, 3, IMAGE_SIZE, IMAGE_SIZE)]


def test_a_failing_warm_up_does_not_stop_the_model_from_loading(model_dir: Path, monkeypatch, caplog) -> None:
    import inference

    def broken(data, model):
        raise RuntimeError("this handler is broken")

    monkeypatch.setattr(inference, "predict_fn", broken)
    monkeypatch.setenv(inference.RUNTIME_ENV, "onnx")
    assert inference.model_fn(str(model_dir)).runtime == "onnx-int8"  # its requests will show the fault
    assert "warm-up request failed (RuntimeError: this handler is broken); serving anyway" in caplog.text


def test_auto_falls_back_to_onnxruntime_when_openvino_cannot_load(
    model_dir: Path, monkeypatch, caplog
) -> None:
    import inference

    def unavailable(self, path: Path, threads: int) -> int:
        raise ImportError("No module named 'openvino'")

    monkeypatch.setattr(fast_serving.OpenVinoPredictor, "_load", unavailable)
    monkeypatch.setenv(inference.RUNTIME_ENV, "auto")
    assert inference.model_fn(str(model_dir)).runtime == "onnx-int8"
    assert "not usable with openvino (ImportError: No module named 'openvino')" in caplog.text
    monkeypatch.setenv(inference.RUNTIME_ENV, "openvino")  # asked for by name, it is required
    with pytest.raises(ImportError, match="openvino"):
        inference.model_fn(str(model_dir))


def test_session_threads_follow_physical_cores() -> None:
    cores = fast_serving.physical_core_count()
    assert 1 <= cores <= len(os.sched_getaffinity(0))
    assert fast_serving.session_options().intra_op_num_threads == cores


def test_softmax_is_stable_for_large_logits() -> None:
    probabilities = fast_serving.softmax(np.array([[1000.0, 1000.0, -1000.0]], dtype=np.float32))
    np.testing.assert_allclose(probabilities, [[0.5, 0.5, 0.0]], atol=1e-6)


def test_percentile_histograms_match_onnxruntimes_own_and_are_used_only_while_quantizing() -> None:
    from onnxruntime.quantization import calibrate

    rng = np.random.default_rng(0)
    # Later batches reach past the first one's range, so the histogram grows by whole bins.
    batches = [
        {"relu": [rng.standard_normal(5000).astype(np.float32) * scale], "empty": [np.zeros(0, np.float32)]}
        for scale in (1.0, 3.0, 0.5, 4.0)
    ]

    def collected(collector_class: type) -> calibrate.HistogramCollector:
        collector = collector_class(
            method="percentile", symmetric=True, num_bins=2048, num_quantized_bins=128,
            percentile=99.99, scenario="same",
        )  # fmt: skip
        for batch in batches:
            collector.collect({"relu": batch["relu"]})
        return collector

    ours = collected(fast_serving._uniform_bin_collector(calibrate.HistogramCollector))
    theirs = collected(calibrate.HistogramCollector)
    our_counts, our_edges, *our_range = ours.histogram_dict["relu"]
    their_counts, their_edges, *their_range = theirs.histogram_dict["relu"]
    assert len(our_edges) > 2049  # it grew
    np.testing.assert_array_equal(our_edges, their_edges)
    assert our_counts.sum() == their_counts.sum() > 19_900  # both drop what is below the first batch's range
    # onnxruntime's float32 edges drift from exactly uniform by under half a bin, so a value in
    # such a sliver counts one bin over: the cumulative counts (what a percentile reads) agree closely.
    assert np.abs(np.cumsum(our_counts) - np.cumsum(their_counts)).max() <= 0.002 * their_counts.sum()
    assert our_range == their_range
    width = float(their_edges[1] - their_edges[0])
    for (*_, our_threshold), (*_, their_threshold) in zip(
        ours.compute_collection_result().values(), theirs.compute_collection_result().values(), strict=True
    ):
        assert abs(float(our_threshold) - float(their_threshold)) <= width

    with fast_serving._uniform_bin_histograms():
        assert calibrate.HistogramCollector is not theirs.__class__
    assert calibrate.HistogramCollector is theirs.__class__
