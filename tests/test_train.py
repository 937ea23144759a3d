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
import train
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
    args = train.parse_args([*argv, "--sagemaker-extra", "x", "--valid", "/override/valid"])
    assert (args.lr, args.pretrained, args.epochs, args.unfreeze) == (0.01, False, 3, "layer3")
    assert args.train == Path("/data/train") and args.valid == Path("/override/valid")
    assert args.model_dir == Path("/model") and args.checkpoint_dir == Path("/base/checkpoints")
    assert (args.image_size, args.export_onnx) == (224, True)
    assert "--sagemaker-extra" in caplog.text


def test_cluster_from_sagemaker_environment(monkeypatch):
    monkeypatch.setenv("SM_HOSTS", '["algo-1", "algo-2", "algo-3"]')
    monkeypatch.setenv("SM_CURRENT_HOST", "algo-3")
    monkeypatch.setenv("SM_NUM_GPUS", "0")
    cluster = train.cluster_from_env()
    assert (cluster.world_size, cluster.rank, cluster.distributed, cluster.is_main) == (3, 2, True, False)
    monkeypatch.setenv("SM_HOSTS", '["algo-1"]')
    monkeypatch.setenv("SM_CURRENT_HOST", "algo-1")
    assert not train.cluster_from_env().distributed


def test_selective_unfreezing():
    model = resnet50(weights=None, num_classes=3)
    stages = train.trainable_stages("layer4", pretrained=True)
    assert stages == ("layer4", "fc")
    train.freeze_except(model, stages)
    trainable = {name.split(".")[0] for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"layer4", "fc"}
    train.set_train_mode(model, stages)
    assert model.layer4.training and not model.layer3.training and not model.bn1.training
    assert train.trainable_stages("fc", pretrained=True) == ("fc",)
    assert train.trainable_stages("fc", pretrained=False) == train._RESNET_STAGES


def test_pretrained_weights_unavailable_is_a_clear_error(monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no route to download.pytorch.org")

    monkeypatch.setattr(train.ResNet50_Weights.IMAGENET1K_V2.__class__, "get_state_dict", offline)
    with pytest.raises(RuntimeError, match=r"--pretrained false") as raised:
        train.build_model(5, pretrained=True)
    assert "IMAGENET1K_V2" in str(raised.value) and "TORCH_HOME" in str(raised.value)


def test_uncreatable_checkpoint_dir_means_no_checkpoints(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert train.ensure_checkpoint_dir(blocker / "checkpoints") is None
    assert "training without checkpoints" in caplog.text
    assert train.ensure_checkpoint_dir(tmp_path / "ok") == tmp_path / "ok"


def test_requirement_pins_match_requirements_model():
    model_pins = pins(REPO / "requirements-model.txt")
    training_pins = pins(REPO / "model_scripts" / "requirements.txt")
    assert set(training_pins) == {"onnx", "onnxruntime", "onnxscript"}
    assert all(model_pins[name] == version for name, version in training_pins.items())
    for requirement in train.SERVING_REQUIREMENTS:
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
    assert (code / "requirements.txt").read_text().split() == list(train.SERVING_REQUIREMENTS)
    if (REPO / "model_scripts" / "fast_serving.py").exists():
        assert (code / "fast_serving.py").exists()
    if importlib.util.find_spec("fast_serving") is not None:
        assert (model_dir / "model.int8.onnx").is_file(), training_run.output[-3000:]
    summary = json.loads((training_run.output_data_dir / "training_summary.json").read_text())
    assert summary["metrics"]["test_accuracy"] == pytest.approx(scraped["test:accuracy"], abs=1e-4)
    assert "tensor rules will see no tensors" in training_run.output


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
def test_resume_continues_after_the_last_checkpointed_epoch(training_run, sample_dataset_dir, tmp_path):
    checkpoint_dir = tmp_path / "checkpoints"
    shutil.copytree(training_run.checkpoint_dir, checkpoint_dir)
    argv = tiny_train_argv(
        sample_dataset_dir,
        tmp_path / "model",
        checkpoint_dir,
        tmp_path / "output",
        epochs=TINY_EPOCHS + 1,
        export_onnx="false",
    )
    output = run_train(argv)
    assert f"at epoch {TINY_EPOCHS + 1}" in output
    assert [int(epoch) for epoch in EPOCH_LINE.findall(output)] == [TINY_EPOCHS + 1]
    assert (tmp_path / "model" / "model.pth").is_file()
    saved = torch.load(checkpoint_dir / train.CHECKPOINT_FILE, weights_only=True)
    assert saved["training_state"]["next_epoch"] == TINY_EPOCHS + 1
