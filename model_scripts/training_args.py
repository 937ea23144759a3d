"""train.py's command line: hyperparameters as SageMaker passes them, locations from the SM_* environment.

Standard library only, so ``train.py --help`` answers without importing torch.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any

logger = logging.getLogger("train")

UNFREEZE_CHOICES = ("fc", "layer4", "layer3", "layer2", "layer1", "all")


def str2bool(value: str | bool) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().strip('"').lower()
    if text in ("true", "1", "yes", "y", "on"):
        return True
    if text in ("false", "0", "no", "n", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def _json_number(kind: type) -> Any:
    """Parse numbers that SageMaker may pass JSON-encoded (``"0.01"`` with quotes)."""

    def parse(value: str) -> Any:
        return kind(str(value).strip().strip('"'))

    parse.__name__ = kind.__name__
    return parse


def _json_choice(value: str) -> str:
    return str(value).strip().strip('"').lower()


def build_parser() -> argparse.ArgumentParser:
    env = os.environ
    base_dir = env.get("SAGEMAKER_BASE_DIR", "/opt/ml")
    parser = argparse.ArgumentParser(
        prog="train.py",
        description="Train ResNet50 on a dogImages-layout dataset (SageMaker script mode).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    integer, real = _json_number(int), _json_number(float)
    hyper = parser.add_argument_group("hyperparameters")
    hyper.add_argument("--epochs", type=integer, default=10)
    hyper.add_argument("--batch-size", type=integer, default=32, help="per process")
    hyper.add_argument("--lr", type=real, default=1e-3, help="peak learning rate (one-cycle)")
    hyper.add_argument("--weight-decay", type=real, default=0.05, help="AdamW decoupled weight decay")
    hyper.add_argument("--image-size", type=integer, default=224)
    hyper.add_argument("--pretrained", type=str2bool, default=True, help="start from ImageNet weights")
    hyper.add_argument(
        "--unfreeze",
        type=_json_choice,
        choices=UNFREEZE_CHOICES,
        default="layer4",
        help="train this stage and all after it (pretrained only)",
    )
    hyper.add_argument("--label-smoothing", type=real, default=0.1)
    hyper.add_argument("--patience", type=integer, default=3, help="epochs without a better valid accuracy")
    hyper.add_argument("--warmup-fraction", type=real, default=0.1, help="share of steps warming up")
    hyper.add_argument(
        "--amp",
        type=_json_choice,
        choices=("auto", "off"),
        default="auto",
        help="auto: bf16 autocast where the CPU has bf16 instructions (fp16 on GPU); off: fp32",
    )
    hyper.add_argument(
        "--cache-memory-mb",
        type=integer,
        default=-1,
        help="memory for the decoded images of all splits; -1: half of what the machine has free",
    )
    hyper.add_argument("--seed", type=integer, default=42)
    hyper.add_argument(
        "--export-onnx",
        type=str2bool,
        default=True,
        help="also write model.int8.onnx (only the job whose model is served needs it)",
    )

    paths = parser.add_argument_group("locations (default: SageMaker environment)")
    paths.add_argument(
        "--train", type=Path, default=env.get("SM_CHANNEL_TRAIN", f"{base_dir}/input/data/train")
    )
    paths.add_argument(
        "--valid", type=Path, default=env.get("SM_CHANNEL_VALID", f"{base_dir}/input/data/valid")
    )
    paths.add_argument("--test", type=Path, default=env.get("SM_CHANNEL_TEST", f"{base_dir}/input/data/test"))
    paths.add_argument("--model-dir", type=Path, default=env.get("SM_MODEL_DIR", f"{base_dir}/model"))
    paths.add_argument(
        "--output-data-dir", type=Path, default=env.get("SM_OUTPUT_DATA_DIR", f"{base_dir}/output/data")
    )
    paths.add_argument("--checkpoint-dir", type=Path, default=Path(base_dir) / "checkpoints")
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    args, unknown = build_parser().parse_known_args(argv)
    if unknown:
        logger.warning("ignoring unknown arguments: %s", " ".join(unknown))
    return args
