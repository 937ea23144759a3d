"""One epoch of training, one pass of evaluation, and the optional smdebug hook.

SageMaker Debugger: framework profiling is deprecated from PyTorch 2.0, so the
job relies on system profiling and the ProfilerReport rule, which need nothing
from this script. Tensor rules (vanishing gradient, loss not decreasing...)
read tensors that only the ``smdebug`` hook saves, and smdebug is not shipped
in the PyTorch 2.x training containers. We register the hook when ``smdebug``
imports (older or custom images) and otherwise log one line saying tensor
rules will see no tensors: pinning an unmaintained library into the image
would cost more than those rules give, and the metrics already cover loss and
accuracy.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from training_cluster import Cluster, all_reduce_sum
from training_model import Precision

logger = logging.getLogger("train")

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


def train_one_epoch(
    model: nn.Module,
    batches: Batches,
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler | None,
    precision: Precision,
    cluster: Cluster,
) -> tuple[float, int]:
    """Mean training loss over all ranks and the number of images this rank saw.

    The loss is accumulated as a tensor and read once at the end: ``.item()``
    per step would make the host wait for each step on GPU.
    """
    loss_sum = torch.zeros((), dtype=torch.float64, device=cluster.device)
    seen = 0
    for images, labels in batches:
        optimizer.zero_grad(set_to_none=True)
        with precision.autocast():
            loss = criterion(model(images), labels)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        scheduler.step()
        loss_sum += loss.detach().double() * len(labels)
        seen += len(labels)
    total_loss, total_seen = all_reduce_sum([loss_sum.item(), float(seen)], cluster)
    return total_loss / max(total_seen, 1.0), seen


@dataclass(frozen=True)
class Evaluation:
    """One pass over a set: mean loss, accuracy, and per class (by label index) how many
    images there were and how many the model got right."""

    loss: float
    accuracy: float
    correct_per_class: list[int]
    total_per_class: list[int]


def evaluate(
    model: nn.Module, batches: Batches, precision: Precision, cluster: Cluster, num_classes: int
) -> Evaluation:
    """The whole set, summed across ranks. Plain cross entropy, no smoothing."""
    model.eval()
    loss_sum = 0.0
    correct = torch.zeros(num_classes, dtype=torch.float64)
    total = torch.zeros(num_classes, dtype=torch.float64)
    with torch.inference_mode():
        for images, labels in batches:
            with precision.autocast():
                logits = model(images)
            loss_sum += nn.functional.cross_entropy(logits.float(), labels, reduction="sum").item()
            hits = labels[logits.argmax(dim=1) == labels]
            correct += torch.bincount(hits.cpu(), minlength=num_classes).double()
            total += torch.bincount(labels.cpu(), minlength=num_classes).double()
    summed = all_reduce_sum([loss_sum, *correct.tolist(), *total.tolist()], cluster)
    loss_sum, correct_per_class, total_per_class = (
        summed[0],
        [round(v) for v in summed[1 : 1 + num_classes]],
        [round(v) for v in summed[1 + num_classes :]],
    )
    count = max(sum(total_per_class), 1)
    return Evaluation(loss_sum / count, sum(correct_per_class) / count, correct_per_class, total_per_class)


def debugger_hook(model: nn.Module, criterion: nn.Module) -> Any:
    try:
        import smdebug.pytorch as smd  # type: ignore[import-not-found]
    except ImportError:
        logger.info(
            "smdebug is not installed: Debugger tensor rules will see no tensors (profiling still works)"
        )
        return None
    hook = smd.Hook.create_from_json_file()
    hook.register_module(model)
    hook.register_loss(criterion)
    logger.info("smdebug hook registered for Debugger tensor rules")
    return hook


def set_hook_mode(hook: Any, training: bool) -> None:
    if hook is not None:
        import smdebug.pytorch as smd  # type: ignore[import-not-found]

        hook.set_mode(smd.modes.TRAIN if training else smd.modes.EVAL)
