"""Section 2: train.py's training step and loader against a plain fp32 eager loop, same data and model."""

from __future__ import annotations

import copy
import sys
import time
from collections.abc import Callable

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from bench.artifacts import MODEL_SCRIPTS, sample_artifacts
from bench.config import BenchConfig
from bench.machine import measured_peaks, model_flops
from bench.report import Comparison, SectionResult

TRAINING_SPEEDUP_TARGET = 1.5
LABEL_SMOOTHING = 0.1
LEARNING_RATE = 1e-3
WEIGHT_DECAY = 0.05
BACKWARD_FACTOR = 3.0  # forward + backward ~ 3x the forward FLOPs


def run(config: BenchConfig, log: Callable[[str], None] = print) -> SectionResult:
    result = SectionResult("training: train.py recipe vs plain fp32 loop")
    sys.path.insert(0, str(MODEL_SCRIPTS))
    import train

    artifacts = sample_artifacts(config, log)
    cluster = train.cluster_from_env()
    images_per_round = config.train_batch_size * config.train_steps
    dataset = train.training_set(artifacts.dataset_dir / "train", config.image_size)
    if len(dataset) < images_per_round:
        raise RuntimeError(f"need {images_per_round} training images, the sample set has {len(dataset)}")
    data = Subset(dataset, range(images_per_round))
    torch.manual_seed(0)
    initial = train.build_model(len(dataset.classes), pretrained=False)
    criterion = nn.CrossEntropyLoss(label_smoothing=LABEL_SMOOTHING)
    total_steps = config.train_steps * config.train_rounds

    # Ours: exactly what train.run does per epoch (channels_last, its precision, its loader).
    precision = train.choose_precision("auto", cluster)
    recipe_model = copy.deepcopy(initial).to(memory_format=torch.channels_last)
    recipe_optimizer = torch.optim.AdamW(train.parameter_groups(recipe_model, WEIGHT_DECAY), lr=LEARNING_RATE)
    recipe_scheduler = train.make_scheduler(recipe_optimizer, total_steps, warmup_fraction=0.1)
    workers = train.worker_count(-1, cluster)
    recipe_loader = train.make_loader(data, config.train_batch_size, workers, cluster, shuffle=True)

    def recipe_epoch() -> int:
        recipe_model.train()
        _, seen = train.train_one_epoch(
            recipe_model,
            recipe_loader,
            criterion,
            recipe_optimizer,
            recipe_scheduler,
            None,
            precision,
            cluster,
        )
        return seen

    # Baseline: the textbook loop, NCHW fp32, no autocast, a default DataLoader.
    plain_model = copy.deepcopy(initial)
    plain_optimizer = torch.optim.AdamW(train.parameter_groups(plain_model, WEIGHT_DECAY), lr=LEARNING_RATE)
    plain_loader = DataLoader(data, batch_size=config.train_batch_size, shuffle=True)

    def plain_epoch() -> int:
        plain_model.train()
        seen = 0
        for images, labels in plain_loader:
            plain_optimizer.zero_grad(set_to_none=True)
            loss = criterion(plain_model(images), labels)
            loss.backward()
            plain_optimizer.step()
            seen += len(labels)
        return seen

    timings: dict[str, list[float]] = {"recipe": [], "plain": []}
    for round_index in range(config.train_rounds):
        for name, epoch in (("plain", plain_epoch), ("recipe", recipe_epoch)):
            began = time.perf_counter()
            seen = epoch()
            elapsed = time.perf_counter() - began
            if round_index > 0:  # round 0 warms up: oneDNN kernels, loader workers
                timings[name].append(seen / elapsed)
    recipe_rate = sorted(timings["recipe"])[len(timings["recipe"]) // 2]
    plain_rate = sorted(timings["plain"])[len(timings["plain"]) // 2]

    flops_per_image = BACKWARD_FACTOR * model_flops(initial.eval(), config.image_size)
    peaks = measured_peaks(config.peak_matrix_side)
    recipe_peak = peaks["bf16_gflops"] if precision.name == "bf16" else peaks["fp32_gflops"]
    recipe_use = recipe_rate * flops_per_image / 1e9
    plain_use = plain_rate * flops_per_image / 1e9
    result.comparisons.append(
        Comparison(
            f"training, {config.image_size} px, batch {config.train_batch_size}, all layers",
            "images/s",
            recipe_rate,
            plain_rate,
            "higher",
            ours_label=f"train.py ({precision.name}, channels_last, {workers} workers)",
            baseline_label="plain fp32",
            target_ratio=TRAINING_SPEEDUP_TARGET,
            note=(
                f"{recipe_use:.0f} of {recipe_peak:.0f} GFLOP/s {precision.name} peak "
                f"= {recipe_use / recipe_peak:.0%}; plain {plain_use:.0f} of "
                f"{peaks['fp32_gflops']:.0f} fp32 = {plain_use / peaks['fp32_gflops']:.0%}"
            ),
        )
    )
    result.details = {
        "precision": precision.name,
        "loader_workers": workers,
        "images_per_round": images_per_round,
        "timed_rounds": config.train_rounds - 1,
        "recipe_images_per_s": timings["recipe"],
        "plain_images_per_s": timings["plain"],
        "training_flops_per_image": flops_per_image,
    }
    return result
