"""train.py: SageMaker script-mode contract, learning on generated data, metrics, checkpoints, model dir."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
import urllib.error
from pathlib import Path

import pytest
import torch
import training_args
import training_checkpoints
import training_cluster
import training_data
import training_export
import training_model
import training_telemetry
from conftest import (
    REPO,
    TINY_CLASSES,
    TINY_EPOCHS,
    TINY_IMAGE_SIZE,
    TRAIN_SCRIPT,
    run_train,
    tiny_train_argv,
)
from metric_lines import scrape
from torchvision.models import resnet50

from dog_breed import metrics

EPOCH_LINE = re.compile(r"^\[metrics\] epoch=(\d+) ", re.MULTILINE)


def pins(path: Path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        if "==" in line and not line.lstrip().startswith("#"):
            name, version = line.split("#")[0].strip().split("==")
            found[name.lower()] = version
    return found


def test_help_works_without_data():
    completed = subprocess.run(
        [sys.executable, str(TRAIN_SCRIPT), "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    for flag in (
        "--epochs",
        "--batch-size",
        "--lr",
        "--weight-decay",
        "--image-size",
        "--pretrained",
        "--unfreeze",
    ):
        assert flag in completed.stdout


def test_hyperparameters_as_sagemaker_passes_them_and_unknown_flags_tolerated(monkeypatch, caplog):
    monkeypatch.setenv("SM_CHANNEL_TRAIN", "/data/train")
    monkeypatch.setenv("SM_MODEL_DIR", "/model")
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", "/base")
    argv = ["--lr", '"0.01"', "--pretrained", '"false"', "--epochs", "3", "--unfreeze", '"layer3"']
    args = training_args.parse_args([*argv, "--sagemaker-extra", "x", "--valid", "/override/valid"])
    assert (args.lr, args.pretrained, args.epochs, args.unfreeze) == (0.01, False, 3, "layer3")
    assert args.train == Path("/data/train") and args.valid == Path("/override/valid")
    assert args.model_dir == Path("/model") and args.checkpoint_dir == Path("/base/checkpoints")
    assert (args.image_size, args.export_onnx) == (224, True)
    assert "--sagemaker-extra" in caplog.text


def test_cluster_from_sagemaker_environment(monkeypatch):
    monkeypatch.setenv("SM_HOSTS", '["algo-1", "algo-2", "algo-3"]')
    monkeypatch.setenv("SM_CURRENT_HOST", "algo-3")
    monkeypatch.setenv("SM_NUM_GPUS", "0")
    cluster = training_cluster.cluster_from_env()
    assert (cluster.world_size, cluster.rank, cluster.distributed, cluster.is_main) == (3, 2, True, False)
    monkeypatch.setenv("SM_HOSTS", '["algo-1"]')
    monkeypatch.setenv("SM_CURRENT_HOST", "algo-1")
    assert not training_cluster.cluster_from_env().distributed


def test_selective_unfreezing():
    model = resnet50(weights=None, num_classes=3)
    stages = training_model.trainable_stages("layer4", pretrained=True)
    assert stages == ("layer4", "fc")
    training_model.freeze_except(model, stages)
    trainable = {name.split(".")[0] for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"layer4", "fc"}
    training_model.set_train_mode(model, stages)
    assert model.layer4.training and not model.layer3.training and not model.bn1.training
    assert training_model.trainable_stages("fc", pretrained=True) == ("fc",)
    assert training_model.trainable_stages("fc", pretrained=False) == training_model.RESNET_STAGES


def test_pretrained_weights_unavailable_is_a_clear_error(monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no route to download.pytorch.org")

    monkeypatch.setattr(training_model.ResNet50_Weights.IMAGENET1K_V2.__class__, "get_state_dict", offline)
    with pytest.raises(RuntimeError, match=r"--pretrained false") as raised:
        training_model.build_model(5, pretrained=True)
    assert "IMAGENET1K_V2" in str(raised.value) and "TORCH_HOME" in str(raised.value)


def test_uncreatable_checkpoint_dir_means_no_checkpoints(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert training_checkpoints.ensure_checkpoint_dir(blocker / "checkpoints") is None
    assert "training without checkpoints" in caplog.text
    assert training_checkpoints.ensure_checkpoint_dir(tmp_path / "ok") == tmp_path / "ok"


def test_requirement_pins_match_requirements_model():
    model_pins = pins(REPO / "requirements-model.txt")
    training_pins = pins(REPO / "model_scripts" / "requirements.txt")
    assert set(training_pins) == {"onnx", "onnxruntime", "onnxscript"}
    assert all(model_pins[name] == version for name, version in training_pins.items())
    for requirement in training_export.SERVING_REQUIREMENTS:
        name, version = requirement.split("==")
        assert model_pins[name] == version


@pytest.mark.slow  # trains (the session fixture, shared)
def test_training_learns_and_writes_a_servable_model_dir(training_run):
    scraped = scrape(training_run.output)
    assert scraped["test:accuracy"] >= 0.6, training_run.output[-3000:]  # chance is 0.25
    model_dir = training_run.model_dir
    config = json.loads((model_dir / "model_config.json").read_text())
    assert config["arch"] == "resnet50" and config["num_classes"] == TINY_CLASSES
    assert config["image_size"] == TINY_IMAGE_SIZE
    assert config["classes"] == ["001.Affenpinscher", "002.Afghan_hound", "003.Airedale_terrier", "004.Akita"]
    assert config["mean"] == [0.485, 0.456, 0.406] and config["std"] == [0.229, 0.224, 0.225]
    state = torch.load(model_dir / "model.pth", weights_only=True)
    assert state["fc.weight"].shape == (TINY_CLASSES, 2048)
    code = model_dir / "code"
    assert (code / "inference.py").read_bytes() == (REPO / "model_scripts" / "inference.py").read_bytes()
    assert (code / "requirements.txt").read_text().split() == list(training_export.SERVING_REQUIREMENTS)
    if (REPO / "model_scripts" / "fast_serving.py").exists():
        assert (code / "fast_serving.py").exists()
    if importlib.util.find_spec("fast_serving") is not None:
        assert (model_dir / "model.int8.onnx").is_file(), training_run.output[-3000:]
    summary = json.loads((training_run.output_data_dir / "training_summary.json").read_text())
    assert summary["metrics"]["test_accuracy"] == pytest.approx(scraped["test:accuracy"], abs=1e-4)
    assert "tensor rules will see no tensors" in training_run.output


@pytest.mark.slow  # trains (the session fixture, shared)
def test_the_test_set_is_reported_per_class_for_the_model_registry(training_run, sample_dataset_dir):
    evaluation = json.loads((training_run.output_data_dir / training_telemetry.EVALUATION_FILE).read_text())
    scraped = scrape(training_run.output)
    classes = sorted(path.name for path in (sample_dataset_dir / "test").iterdir())
    assert evaluation["split"] == "test"
    assert [entry["class"] for entry in evaluation["per_class"]] == classes
    for entry in evaluation["per_class"]:
        images = len(list((sample_dataset_dir / "test" / entry["class"]).iterdir()))
        assert entry["total"] == images and 0 <= entry["correct"] <= images, entry
    correct = sum(entry["correct"] for entry in evaluation["per_class"])
    assert evaluation["images"] == sum(entry["total"] for entry in evaluation["per_class"])
    assert evaluation["accuracy"] == pytest.approx(correct / evaluation["images"])
    # The [metrics] line and the file are one evaluation of the best weights.
    assert evaluation["accuracy"] == pytest.approx(scraped["test:accuracy"], abs=1e-4)
    assert evaluation["loss"] == pytest.approx(scraped["test:loss"], abs=1e-4)


def test_an_evaluation_record_refuses_counts_that_do_not_match_the_classes():
    record = training_telemetry.evaluation_record("test", 0.5, ["a", "b"], [1, 2], [2, 2])
    assert record["accuracy"] == 0.75 and record["images"] == 4
    with pytest.raises(ValueError, match="2 classes but 1 correct"):
        training_telemetry.evaluation_record("test", 0.5, ["a", "b"], [1], [2, 2])


@pytest.mark.slow  # trains (the session fixture, shared)
def test_metric_lines_match_every_metric_definition(training_run):
    lines = [line for line in training_run.output.splitlines() if line.startswith(metrics.METRIC_LINE_PREFIX)]
    for definition in metrics.METRIC_DEFINITIONS:
        assert any(re.search(definition["Regex"], line) for line in lines), definition["Name"]
    assert [int(epoch) for epoch in EPOCH_LINE.findall(training_run.output)] == list(
        range(1, TINY_EPOCHS + 1)
    )
    scraped = scrape(training_run.output)
    assert set(scraped) == {definition["Name"] for definition in metrics.METRIC_DEFINITIONS}
    for name in ("valid:accuracy", "valid:best_accuracy", "test:accuracy"):
        assert 0.0 <= scraped[name] <= 1.0
    assert scraped["valid:best_accuracy"] >= scraped["valid:accuracy"]
    assert scraped["train:loss"] > 0 and scraped["test:loss"] > 0 and scraped["train:images_per_sec"] > 0


@pytest.mark.slow  # trains (the session fixture, shared)
def test_resume_continues_after_the_last_checkpointed_epoch_even_streaming_from_disk(
    training_run, sample_dataset_dir, tmp_path
):
    checkpoint_dir = tmp_path / "checkpoints"
    shutil.copytree(training_run.checkpoint_dir, checkpoint_dir)
    argv = tiny_train_argv(
        sample_dataset_dir,
        tmp_path / "model",
        checkpoint_dir,
        tmp_path / "output",
        epochs=TINY_EPOCHS + 1,
        export_onnx="false",
        cache_memory_mb=0,  # and no room to keep images in memory: every split streams from disk
    )
    output = run_train(argv)
    assert f"at epoch {TINY_EPOCHS + 1}" in output
    assert output.count("decoding them batch by batch instead") == 3, output[-3000:]
    assert [int(epoch) for epoch in EPOCH_LINE.findall(output)] == [TINY_EPOCHS + 1]
    assert (tmp_path / "model" / "model.pth").is_file()
    saved = torch.load(checkpoint_dir / training_checkpoints.CHECKPOINT_FILE, weights_only=True)
    assert saved["training_state"]["next_epoch"] == TINY_EPOCHS + 1


@pytest.mark.slow  # trains (the session fixture, shared)
def test_job_reports_where_its_time_went_one_line_per_phase(training_run):
    lines = [line for line in training_run.output.splitlines() if line.startswith("[timing]")]
    assert all(training_telemetry.TIMING_LINE.match(line) for line in lines), lines
    timings = training_telemetry.parse_timings(training_run.output)
    assert list(timings) == ["start", "data", "train", "evaluate", "checkpoint", "save", "export"]
    assert len(lines) == len(timings) and all(seconds > 0 for seconds in timings.values())


def test_timing_lines_parse_with_log_prefixes_and_refuse_unknown_phases():
    line = training_telemetry.format_timing("download", 1.23456)
    assert line == "[timing] phase=download seconds=1.235"
    log = "\n".join(
        [
            f"2026-12-01T10:00:00Z {line}",  # a CloudWatch export prefixes a timestamp
            "[timing] phase=upload seconds=0.500",
            "[timing] phase=train seconds=2.000",
            "[timing] phase=train seconds=3.000",  # a phase reported twice adds up
            "[timing] phase=teleport seconds=9.000",
            "[metrics] epoch=1 train_loss=1.0",
        ]
    )
    assert training_telemetry.parse_timings(log) == {"download": 1.235, "train": 5.0, "upload": 0.5}
    with pytest.raises(ValueError, match="unknown job phase"):
        training_telemetry.format_timing("teleport", 1.0)


def horizontal_ramp(count: int, side: int) -> torch.Tensor:
    """uint8 (count, 3, side, side) whose value grows left to right: shows crops and flips."""
    ramp = torch.linspace(0, 255, side).round().to(torch.uint8)
    return ramp.view(1, 1, 1, side).expand(count, 3, side, side).contiguous()


def test_random_resized_crop_flips_some_and_stays_inside_the_image():
    images = horizontal_ramp(64, 40).float()
    out = training_data.random_resized_crop_flip(images, 24, torch.Generator().manual_seed(0))
    assert out.shape == (64, 3, 24, 24)
    assert out.min() >= images.min() and out.max() <= images.max()  # border padding: nothing invented
    rows = out[:, 0, 12]
    increasing = (rows[:, 1:] >= rows[:, :-1] - 1e-4).all(dim=1)
    decreasing = (rows[:, 1:] <= rows[:, :-1] + 1e-4).all(dim=1)
    assert bool((increasing | decreasing).all()), "every crop keeps the ramp monotonic"
    assert 10 < int(increasing.sum()) < 54, "about half the crops are mirrored"
    spans = rows[:, -1] - rows[:, 0]
    assert spans.abs().min() > 255 * 0.2 and spans.abs().max() <= 255  # crops are 35-100% of the area
    assert len({round(float(span), 1) for span in spans}) > 32, "each image gets its own crop"


def test_color_jitter_keeps_range_and_leaves_grey_grey():
    grey = torch.full((8, 3, 6, 6), 0.5)
    out = training_data.color_jitter(grey.clone(), torch.Generator().manual_seed(1))
    assert torch.allclose(out[:, 0], out[:, 1]) and torch.allclose(out[:, 1], out[:, 2])
    colourful = torch.rand(8, 3, 6, 6, generator=torch.Generator().manual_seed(2))
    jittered = training_data.color_jitter(colourful.clone(), torch.Generator().manual_seed(3))
    assert jittered.min() >= 0 and jittered.max() <= 1 and not torch.allclose(jittered, colourful)


def test_augment_gives_normalized_float_batches_in_channels_last():
    out = training_data.augment(horizontal_ramp(4, 37), 32, torch.Generator().manual_seed(0))
    assert out.dtype == torch.float32 and out.shape == (4, 3, 32, 32)
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert float(out.min()) > -2.2 and float(out.max()) < 2.7  # ImageNet-normalized [0, 1]


def test_evaluation_images_are_what_serving_feeds_the_model(sample_dataset_dir):
    import inference

    path = next((sample_dataset_dir / "valid").glob("*/*.jpg"))
    decoded = training_data.decode_for_evaluation(path, 32)
    assert torch.equal(decoded, torch.from_numpy(inference.preprocess(path.read_bytes(), 32)))
    training = training_data.decode_for_training(path, inference.resize_side(32))
    assert training.dtype == torch.uint8 and training.shape == (3, 37, 37)


def test_splits_beyond_the_memory_budget_stream_the_same_pixels(sample_dataset_dir, caplog, tmp_path):
    folder = training_data.index_folder(sample_dataset_dir / "train")
    assert folder.classes == ["001.Affenpinscher", "002.Afghan_hound", "003.Airedale_terrier", "004.Akita"]
    assert len(folder) == 96 and folder.labels == sorted(folder.labels)

    def split(name: str) -> training_data.DecodedImages:
        return training_data.DecodedImages(
            name,
            folder.paths,
            lambda path: training_data.decode_for_training(path, 37),
            (3, 37, 37),
            torch.uint8,
            2,
        )

    cached, streamed = split("first"), split("second")
    training_data.load_within_budget([cached, streamed], budget=cached.nbytes)
    assert cached.cached and not streamed.cached
    assert "second: 96 decoded images" in caplog.text and "raise --cache-memory-mb" in caplog.text
    assert torch.equal(cached.batch([5, 0, 95]), streamed.batch([5, 0, 95]))
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    garbage = training_data.DecodedImages(
        "train",
        [broken],
        lambda path: training_data.decode_for_training(path, 37),
        (3, 37, 37),
        torch.uint8,
        1,
    )
    with pytest.raises(
        ValueError, match=r"train image .*broken.jpg cannot be used: 400: cannot decode image"
    ):
        garbage.load()
    expected = [*folder.classes[:3], "005.Alaskan_malamute"]
    with pytest.raises(ValueError, match=r"missing \['005.Alaskan_malamute'\], extra \['004.Akita'\]"):
        training_data.index_folder(sample_dataset_dir / "valid", expected)


def test_training_batches_shard_the_data_between_ranks_and_reshuffle_each_epoch(sample_dataset_dir):
    folder = training_data.index_folder(sample_dataset_dir / "train")
    images = training_data.DecodedImages(
        "train",
        folder.paths,
        lambda path: training_data.decode_for_training(path, 37),
        (3, 37, 37),
        torch.uint8,
        1,
    )
    images.load()
    shards = []
    for rank in (0, 1):
        cluster = training_cluster.Cluster(("algo-1", "algo-2"), rank, 1, 0, False)
        batches = training_data.TrainingBatches(images, folder.labels, 10, 32, cluster, seed=0)
        # 48 images per rank: four full batches; the last 8 of each shuffle wait for another epoch.
        assert batches.images_per_epoch == 40 and len(batches) == 4
        epochs = [[labels.tolist() for _, labels in batches.epoch(epoch)] for epoch in (0, 1)]
        assert [len(labels) for labels in epochs[0]] == [10] * 4 and epochs[0] != epochs[1]
        small = training_data.TrainingBatches(images, folder.labels, 64, 32, cluster, seed=0)
        assert len(small) == 1 and small.images_per_epoch == 48  # a shard below one batch is one batch
        shards.append(batches.sampler)
    orders = []
    for sampler in shards:
        sampler.set_epoch(0)
        orders.append(list(sampler))
    assert set(orders[0]).isdisjoint(orders[1]) and set(orders[0]) | set(orders[1]) == set(range(96))


def test_checkpoint_keeps_the_best_weights_once_when_the_latest_epoch_is_best(tmp_path):
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    bundle = {"model": model, "optimizer": optimizer}
    state = training_checkpoints.TrainingState(next_epoch=2, best_accuracy=0.5, best_epoch=1)
    state.best_weights = training_model.cpu_state_dict(model)
    path = tmp_path / training_checkpoints.CHECKPOINT_FILE
    training_checkpoints.save_checkpoint(path, state, bundle, ["a", "b"])
    assert torch.load(path, weights_only=True)["best_weights"] is None
    fresh = torch.nn.Linear(3, 2)
    fresh_bundle = {"model": fresh, "optimizer": torch.optim.AdamW(fresh.parameters())}
    restored = training_checkpoints.load_checkpoint(path, fresh_bundle, ["a", "b"])
    assert restored is not None and restored.next_epoch == 2 and restored.best_epoch == 1
    assert all(torch.equal(restored.best_weights[k], v) for k, v in model.state_dict().items())
    # An older best epoch is stored as it was.
    state.next_epoch = 3
    training_checkpoints.save_checkpoint(path, state, bundle, ["a", "b"])
    assert torch.load(path, weights_only=True)["best_weights"] is not None


def test_memory_budget_is_what_was_asked_or_half_the_free_memory_per_process():
    assert training_data.memory_budget_bytes(300, processes_per_host=1) == 300 * 2**20
    assert training_data.memory_budget_bytes(0, processes_per_host=4) == 0
    one, two = (training_data.memory_budget_bytes(-1, processes_per_host=n) for n in (1, 2))
    available = next(
        int(line.split()[1]) * 1024
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemAvailable:")
    )
    assert 0 < one <= available // 2 + 2**26 and abs(two - one // 2) <= 2**26
