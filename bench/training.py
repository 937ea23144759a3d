"""Section 2: train.py's training loop against a plain fp32 loop, same model, data and batch, per image size.

Three paths per size, alternating rounds so load drift hits all of them:

- ``train.py``: exactly what a job runs per epoch (images decoded once into
  memory, batched tensor augmentation, channels_last, fused AdamW, the
  precision ``training_model.choose_precision`` picks for this CPU);
- ``train.py fp32``: the same with ``--amp off``, to separate what bf16 gives
  from what the rest gives;
- ``plain fp32``: the textbook loop, torchvision PIL transforms in a default
  DataLoader, NCHW fp32, default AdamW.

Each figure is images/s and achieved FLOP/s (3x the forward FLOPs for
forward + backward) over the measured peak of the arithmetic it runs in.
"""

from __future__ import annotations

import copy
import itertools
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.artifacts import sample_artifacts
from bench.config import BenchConfig
from bench.machine import measured_peaks, model_flops
from bench.report import Comparison, SectionResult

TRAINING_SPEEDUP_TARGET = 1.5
LABEL_SMOOTHING = 0.1
LEARNING_RATE = 1e-3
WEIGHT_DECAY = 0.05
BACKWARD_FACTOR = 3.0  # forward + backward ~ 3x the forward FLOPs


def _plain_loader(paths: list[Path], labels: list[int], size: int, batch_size: int) -> Any:
    """The textbook input pipeline: decode and transform every image every epoch, in this process."""
    import inference
    from PIL import Image
    from torch.utils.data import DataLoader, Dataset
    from torchvision import transforms

    transform = transforms.Compose(
        [
            transforms.RandomResizedCrop(size, scale=(0.35, 1.0)),
            transforms.RandomHorizontalFlip(),
            transforms.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2),
            transforms.ToTensor(),
            transforms.Normalize(inference.IMAGENET_MEAN, inference.IMAGENET_STD),
        ]
    )

    class Images(Dataset):
        def __len__(self) -> int:
            return len(paths)

        def __getitem__(self, index: int) -> Any:
            with Image.open(paths[index]) as image:
                return transform(image.convert("RGB")), labels[index]

    return DataLoader(Images(), batch_size=batch_size, shuffle=True)


def _measure_size(config: BenchConfig, size: int, dataset_dir: Path) -> dict[str, Any]:
    import inference
    import torch
    import training_cluster
    import training_data
    import training_loop
    import training_model
    from torch import nn

    cluster = training_cluster.cluster_from_env()
    threads = training_cluster.set_compute_threads(cluster)
    folder = training_data.index_folder(dataset_dir / "train")
    count = config.train_batch_size * config.train_steps
    if len(folder) < count:
        raise RuntimeError(f"need {count} training images, the sample set has {len(folder)}")
    picks = list(range(0, len(folder), max(1, len(folder) // count)))[:count]  # spread over the classes
    paths, labels = [folder.paths[i] for i in picks], [folder.labels[i] for i in picks]
    side = inference.resize_side(size)
    cached = training_data.DecodedImages(
        "train",
        paths,
        lambda path: training_data.decode_for_training(path, side),
        (3, side, side),
        torch.uint8,
        threads,
    )
    cached.load()
    torch.manual_seed(0)
    initial = training_model.build_model(len(folder.classes), pretrained=False)
    criterion = nn.CrossEntropyLoss(label_smoothing=LABEL_SMOOTHING)
    total_steps = config.train_steps * config.train_rounds

    def ours(amp: str) -> tuple[Callable[[int, int | None], int], str]:
        precision = training_model.choose_precision(amp, cluster.use_cuda)
        model = copy.deepcopy(initial).to(memory_format=torch.channels_last)
        optimizer = training_model.make_optimizer(model, LEARNING_RATE, WEIGHT_DECAY)
        scheduler = training_model.make_scheduler(optimizer, total_steps, warmup_fraction=0.1)
        batches = training_data.TrainingBatches(
            cached, labels, config.train_batch_size, size, cluster, seed=0
        )

        def epoch(index: int, steps: int | None) -> int:
            model.train()
            _, seen = training_loop.train_one_epoch(
                model,
                itertools.islice(batches.epoch(index), steps),
                criterion,
                optimizer,
                scheduler,
                None,
                precision,
                cluster,
            )
            return seen

        return epoch, precision.name

    plain_model = copy.deepcopy(initial)
    plain_optimizer = torch.optim.AdamW(
        training_model.parameter_groups(plain_model, WEIGHT_DECAY), lr=LEARNING_RATE
    )
    plain_loader = _plain_loader(paths, labels, size, config.train_batch_size)

    def plain_epoch(_: int, steps: int | None) -> int:
        plain_model.train()
        seen = 0
        for images, targets in itertools.islice(plain_loader, steps):
            plain_optimizer.zero_grad(set_to_none=True)
            loss = criterion(plain_model(images), targets)
            loss.backward()
            plain_optimizer.step()
            seen += len(targets)
        return seen

    ours_epoch, ours_precision = ours("auto")
    paths_by_name: dict[str, Callable[[int, int | None], int]] = {
        "plain fp32": plain_epoch,
        "train.py": ours_epoch,
    }
    if ours_precision != "fp32":
        paths_by_name["train.py fp32"] = ours("off")[0]
    rates: dict[str, list[float]] = {name: [] for name in paths_by_name}
    for round_index in range(config.train_rounds):
        for name, epoch in paths_by_name.items():
            began = time.perf_counter()
            # Round 0 is one untimed step: oneDNN picks and caches its kernels per shape.
            seen = epoch(round_index, 1 if round_index == 0 else None)
            if round_index > 0:
                rates[name].append(seen / (time.perf_counter() - began))
    training_flops = BACKWARD_FACTOR * model_flops(initial.eval(), size)
    peaks = measured_peaks(config.peak_matrix_sides)  # right after, in the same conditions
    peak_of = {"plain fp32": "fp32", "train.py fp32": "fp32", "train.py": ours_precision}
    figures = {}
    for name, samples in rates.items():
        rate = statistics.median(samples)
        peak_name = "bf16" if peak_of[name] == "bf16" else "fp32"
        achieved = rate * training_flops / 1e9
        figures[name] = {
            "images_per_s": rate,
            "images_per_s_rounds": samples,
            "achieved_gflops": achieved,
            "peak": peak_name,
            "peak_gflops": peaks[f"{peak_name}_gflops"],
            "fraction_of_peak": achieved / peaks[f"{peak_name}_gflops"],
        }
    return {
        "precision": ours_precision,
        "threads": threads,
        "batch_size": config.train_batch_size,
        "images_per_round": count,
        "timed_rounds": config.train_rounds - 1,
        "training_gflop_per_image": training_flops / 1e9,
        "paths": figures,
    }


def _peak_text(figure: dict[str, Any]) -> str:
    return (
        f"{figure['achieved_gflops']:.0f} of {figure['peak_gflops']:.0f} GFLOP/s {figure['peak']} peak "
        f"= {figure['fraction_of_peak']:.0%}"
    )


def run(config: BenchConfig, log: Callable[[str], None] = print) -> SectionResult:
    result = SectionResult("training: train.py's loop vs a plain fp32 loop")
    artifacts = sample_artifacts(config, "agreement", log)
    for size in config.train_sizes:
        log(f"   training steps at {size} px, batch {config.train_batch_size} ...")
        measured = _measure_size(config, size, artifacts.dataset_dir)
        result.details[f"training_{size}px"] = measured
        figures = measured["paths"]
        plain = figures["plain fp32"]
        for name in ("train.py", "train.py fp32"):
            if name not in figures:
                continue
            ours = figures[name]
            label = f"train.py {measured['precision']}" if name == "train.py" else name
            result.comparisons.append(
                Comparison(
                    f"training, {size} px, batch {config.train_batch_size}, all layers",
                    "images/s",
                    ours["images_per_s"],
                    plain["images_per_s"],
                    "higher",
                    ours_label=label,
                    baseline_label="plain fp32",
                    target_ratio=TRAINING_SPEEDUP_TARGET if name == "train.py" else None,
                    note=f"ours {_peak_text(ours)}; plain {_peak_text(plain)}",
                )
            )
    peaks = measured_peaks(config.peak_matrix_sides)
    result.notes.append(
        f"{measured['threads']} compute threads; ResNet50 from random init on the {artifacts.recipe.name} "
        f"set's JPEGs ({artifacts.recipe.image_side} px); train.py decodes them once before timing "
        "(its 'data' phase), the plain loop decodes every step; peaks from "
        f"{peaks['matrix_sides']} n^3 matmuls: fp32 {peaks['fp32_gflops']:.0f} (torch "
        f"{peaks['fp32_gflops_torch']:.0f}, onnxruntime {peaks['fp32_gflops_onnxruntime']:.0f}), "
        f"bf16 {peaks['bf16_gflops']:.0f} GFLOP/s"
    )
    return result
