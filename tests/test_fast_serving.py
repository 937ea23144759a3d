"""fast_serving: the int8 ONNX export and its predictor, on a small ResNet50."""

from __future__ import annotations

import json
import os
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


def test_predictor_returns_probabilities_for_any_batch_size(model_dir: Path) -> None:
    predictor = fast_serving.OnnxPredictor(model_dir)
    assert predictor.runtime == "onnx-int8"
    assert predictor.classes == CLASSES and predictor.image_size == IMAGE_SIZE
    batch = calibration_images(3, seed=10)
    together = predictor.predict(batch)
    assert together.shape == (3, len(CLASSES)) and together.dtype == np.float32
    np.testing.assert_allclose(together.sum(axis=1), 1.0, rtol=1e-5)
    one_by_one = np.concatenate([predictor.predict(batch[i : i + 1]) for i in range(3)])
    np.testing.assert_allclose(together, one_by_one, atol=1e-5)


def test_int8_logits_track_the_float_model(model_dir: Path, network: torch.nn.Module) -> None:
    batch = calibration_images(6, seed=20)
    int8_logits = fast_serving.OnnxPredictor(model_dir).logits(batch)
    with torch.no_grad():
        float_logits = network(torch.from_numpy(batch)).numpy()
    for quantized, reference in zip(int8_logits, float_logits, strict=True):
        assert np.corrcoef(quantized, reference)[0, 1] > 0.9


def test_predictor_rejects_wrong_input_shapes(model_dir: Path) -> None:
    predictor = fast_serving.OnnxPredictor(model_dir)
    with pytest.raises(ValueError, match="batch must be"):
        predictor.predict(np.zeros((3, IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32))
    with pytest.raises(ValueError, match="batch must be"):
        predictor.predict(np.zeros((1, 3, IMAGE_SIZE + 1, IMAGE_SIZE), dtype=np.float32))


def test_predictor_refuses_a_config_that_disagrees_with_the_model(model_dir: Path, tmp_path: Path) -> None:
    (tmp_path / fast_serving.INT8_MODEL_FILE).write_bytes(
        (model_dir / fast_serving.INT8_MODEL_FILE).read_bytes()
    )
    config = {"classes": [*CLASSES, "005.Alaskan_malamute"], "image_size": IMAGE_SIZE, "num_classes": 5}
    (tmp_path / "model_config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="outputs 4 classes"):
        fast_serving.OnnxPredictor(tmp_path)


def test_inference_model_fn_serves_the_int8_model_when_asked(model_dir: Path, monkeypatch) -> None:
    import inference

    monkeypatch.setenv(inference.RUNTIME_ENV, "onnx")
    predictor = inference.model_fn(str(model_dir))
    assert predictor.runtime == "onnx-int8"


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
