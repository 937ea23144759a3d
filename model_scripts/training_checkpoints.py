"""Resumable training state: one checkpoint file per job, written atomically after every epoch.

SageMaker syncs ``--checkpoint-dir`` (CheckpointConfig.LocalPath) to S3, so a
spot interruption or a retry resumes at the next epoch with the optimizer,
schedule and early-stopping counters as they were.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from training_model import cpu_state_dict

logger = logging.getLogger("train")

CHECKPOINT_FILE = "checkpoint.pt"


@dataclass
class TrainingState:
    next_epoch: int = 0
    best_accuracy: float = -1.0
    best_epoch: int = -1
    epochs_without_improvement: int = 0
    stopped_early: bool = False
    best_weights: dict[str, torch.Tensor] | None = None

    @property
    def best_is_latest(self) -> bool:
        return self.best_epoch >= 0 and self.best_epoch == self.next_epoch - 1


def ensure_checkpoint_dir(path: Path | None) -> Path | None:
    if path is None:
        return None
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".writable"
        probe.touch()
        probe.unlink()
    except OSError as error:
        logger.warning("checkpoint dir %s is not writable (%s): training without checkpoints", path, error)
        return None
    return path


def save_checkpoint(path: Path, state: TrainingState, bundle: dict[str, Any], classes: list[str]) -> None:
    """Write atomically: a spot interruption mid-write leaves the previous checkpoint intact.

    When the latest epoch is the best one, its weights are the model's own and
    are not stored twice (a ResNet50 copy is ~95 MB per epoch).
    """
    payload = {
        "classes": classes,
        "training_state": {key: value for key, value in vars(state).items() if key != "best_weights"},
        "best_weights": None if state.best_is_latest else state.best_weights,
        **{name: part.state_dict() for name, part in bundle.items() if part is not None},
    }
    temporary = path.with_suffix(".tmp")
    torch.save(payload, temporary)
    os.replace(temporary, path)


def load_checkpoint(path: Path, bundle: dict[str, Any], classes: list[str]) -> TrainingState | None:
    if not path.is_file():
        return None
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if payload.get("classes") != classes:
        logger.warning("checkpoint %s was trained on other classes: ignoring it", path)
        return None
    try:
        for name, part in bundle.items():
            if part is not None and name in payload:
                part.load_state_dict(payload[name])
    except (KeyError, ValueError, RuntimeError) as error:
        raise RuntimeError(
            f"checkpoint {path} does not fit this run ({error}); it was written with other "
            "hyperparameters (e.g. --unfreeze): use a new --checkpoint-dir or delete it"
        ) from error
    state = TrainingState(**payload["training_state"], best_weights=payload["best_weights"])
    if state.best_weights is None and state.best_is_latest:
        model: nn.Module = bundle["model"]
        state.best_weights = cpu_state_dict(model)
    logger.info(
        "resuming from %s at epoch %d (best valid accuracy %.4f)",
        path,
        state.next_epoch + 1,
        state.best_accuracy,
    )
    return state
