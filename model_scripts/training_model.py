"""The network, which of its stages train, the optimizer and schedule, and the arithmetic it runs in.

Precision is chosen for the machine the job runs on: bf16 autocast where the
CPU has bf16 dot-product instructions (AVX512-BF16, AMX), fp16 on GPU, fp32
otherwise; the model is channels_last either way (oneDNN's fast layout).
Master weights and the optimizer stay fp32.
"""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torchvision.models import ResNet50_Weights, resnet50

logger = logging.getLogger("train")

# Top-level resnet50 children in forward order; unfreezing a layer trains it and everything after it.
RESNET_STAGES = ("conv1", "bn1", "layer1", "layer2", "layer3", "layer4", "fc")


def build_model(num_classes: int, pretrained: bool) -> nn.Module:
    if not pretrained:
        # Zero-init of each block's last BN starts residual blocks as identities: trains better from scratch.
        return resnet50(weights=None, num_classes=num_classes, zero_init_residual=True)
    try:
        model = resnet50(weights=ResNet50_Weights.IMAGENET1K_V2)
    except Exception as error:
        raise RuntimeError(
            "could not load the ImageNet weights (IMAGENET1K_V2) for resnet50: "
            f"{error}. Give the job internet access, or put resnet50-11ad3fa6.pth in "
            "$TORCH_HOME/hub/checkpoints (default ~/.cache/torch/hub/checkpoints), "
            "or train from scratch with --pretrained false."
        ) from error
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    return model


def trainable_stages(unfreeze: str, pretrained: bool) -> tuple[str, ...]:
    if not pretrained:
        logger.info("--pretrained false: training all layers, since random features are useless frozen")
        return RESNET_STAGES
    if unfreeze == "all":
        return RESNET_STAGES
    return RESNET_STAGES[RESNET_STAGES.index(unfreeze) :]


def freeze_except(model: nn.Module, stages: tuple[str, ...]) -> None:
    for name, child in model.named_children():
        child.requires_grad_(name in stages)


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def set_train_mode(model: nn.Module, stages: tuple[str, ...]) -> None:
    """Train mode for trained stages; frozen ones stay in eval so BatchNorm keeps ImageNet statistics."""
    model.train()
    for name, child in unwrap(model).named_children():
        if name not in stages:
            child.eval()


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """No weight decay on biases and BatchNorm parameters."""
    decay, no_decay = [], []
    for parameter in model.parameters():
        if parameter.requires_grad:
            (no_decay if parameter.ndim <= 1 else decay).append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW with the fused kernel: one pass over all parameters, 5x faster per step than the
    default multi-tensor path on CPU (measured 20 vs 97 ms for ResNet50), which at 64 px is
    a fifth of a whole training step."""
    return torch.optim.AdamW(parameter_groups(model, weight_decay), lr=lr, fused=True)


def make_scheduler(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_fraction: float
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup, then cosine decay to zero."""
    warmup = max(1, round(total_steps * warmup_fraction))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


@dataclass(frozen=True)
class Precision:
    dtype: torch.dtype | None  # None: fp32
    device_type: str

    @property
    def name(self) -> str:
        return {None: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}[self.dtype]

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)


def cpu_supports_bf16() -> bool:
    """bf16 dot products in hardware; without them bf16 is emulated and slower than fp32."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, check, lambda: False)() for check in checks)


def choose_precision(amp: str, use_cuda: bool) -> Precision:
    device_type = "cuda" if use_cuda else "cpu"
    if amp == "off":
        return Precision(None, device_type)
    if use_cuda:
        return Precision(torch.float16, device_type)
    return Precision(torch.bfloat16 if cpu_supports_bf16() else None, device_type)


def cpu_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    return {
        key: value.detach().cpu().clone().contiguous() for key, value in unwrap(model).state_dict().items()
    }
