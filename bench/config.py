"""Sizes of one bench run: the full preset for `make bench`, a tiny one for the smoke test."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
CACHE_DIR = REPO_ROOT / "bench" / ".cache"
RESULTS_PATH = REPO_ROOT / "bench" / "results.json"


@dataclass(frozen=True)
class BenchConfig:
    name: str
    image_size: int  # model input side; the handler section's 224 px figure
    sample_classes: int  # the sample model's head size (133 = the real dogImages)
    sample_per_class: int  # training images per class
    sample_eval_per_class: int  # valid and test images per class (the agreement set draws on both)
    sample_image_side: int  # JPEG side the endpoint receives (decoded and resized by both paths)
    sample_epochs: int
    agreement_images: int  # images through both handlers (latency samples and top-1 agreement)
    latency_block: int  # requests per path before switching (interleaved so noise hits both)
    model_only_rounds: int  # batch-1 forward passes per runtime
    peak_matrix_side: int  # n of the n x n x n matmul that measures peak FLOP/s
    train_batch_size: int
    train_steps: int  # timed optimizer steps per path per round
    train_rounds: int  # alternating rounds (the first is untimed warm-up)
    dag_parse_repeats: int
    lambda_invocations: int
    cache_dir: Path = CACHE_DIR
    results_path: Path = RESULTS_PATH

    def with_paths(self, cache_dir: Path, results_path: Path) -> BenchConfig:
        return replace(self, cache_dir=cache_dir, results_path=results_path)


FULL = BenchConfig(
    name="full",
    image_size=224,
    sample_classes=133,
    sample_per_class=3,
    sample_eval_per_class=1,
    sample_image_side=400,
    sample_epochs=2,
    agreement_images=240,
    latency_block=20,
    model_only_rounds=30,
    peak_matrix_side=2048,
    train_batch_size=16,
    train_steps=3,
    train_rounds=3,
    dag_parse_repeats=7,
    lambda_invocations=30,
)

QUICK = BenchConfig(
    name="quick",
    image_size=64,
    sample_classes=3,
    sample_per_class=3,
    sample_eval_per_class=2,
    sample_image_side=96,
    sample_epochs=1,
    agreement_images=6,
    latency_block=3,
    model_only_rounds=3,
    peak_matrix_side=256,
    train_batch_size=4,
    train_steps=1,
    train_rounds=2,
    dag_parse_repeats=2,
    lambda_invocations=2,
)
