"""Sizes of one bench run: the full preset for `make bench`, a tiny one for the smoke test."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
CACHE_DIR = REPO_ROOT / "bench" / ".cache"
RESULTS_PATH = REPO_ROOT / "bench" / "results.json"


@dataclass(frozen=True)
class SampleRecipe:
    """A synthetic dataset (model_scripts/sample_data.py) and how long train.py trains on it."""

    name: str
    classes: int  # the model's head size (133 = the real dogImages)
    per_class: int  # training images per class
    eval_per_class: int  # valid and test images per class (the agreement set draws on both)
    image_side: int  # JPEG side the endpoint receives (decoded and resized by both paths)
    epochs: int
    min_test_accuracy: float = 0.0  # train on (resuming, 2 epochs at a time) until reached...
    max_epochs: int = 0  # ...or this many epochs


@dataclass(frozen=True)
class BenchConfig:
    name: str
    image_size: int  # model input side; the handler section's 224 px figure
    # The served model the agreement target is judged on: trained until it is right most of the time.
    agreement_model: SampleRecipe
    # The hard case: 133 classes barely trained, so top-1/top-2 margins are tiny and int8 flips show.
    hard_model: SampleRecipe
    agreement_images: int  # images through both handlers (latency samples and top-1 agreement)
    latency_block: int  # requests per path before switching (interleaved so noise hits both)
    model_only_rounds: int  # batch-1 forward passes per runtime
    recipe_latency_rounds: int  # batch-1 forward passes per quantization recipe
    recipe_calibration_images: int  # calibration set of every recipe compared (train.py uses 128)
    sensitivity_images: int  # images through the per-layer quantization error analysis
    # n of the n x n x n matmuls that measure peak FLOP/s: the best of them is the peak (a small one
    # fits the caches, a large one amortizes the packing; which wins differs by runtime and CPU)
    peak_matrix_sides: tuple[int, ...]
    train_sizes: tuple[int, ...]  # training section: image sides (the demo's 64 px, ImageNet's 224)
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
    # Two epochs reach 0.97 test accuracy here, one only 0.80 (its schedule is shorter); each resume
    # is another train.py run and int8 export at 224 px, so start where the target is safely met.
    agreement_model=SampleRecipe(
        "agreement", classes=5, per_class=30, eval_per_class=24, image_side=320, epochs=2,
        min_test_accuracy=0.8, max_epochs=8,
    ),
    # Two images per class: with one, the logits stay so small that every int8 recipe agrees alike.
    hard_model=SampleRecipe("hard", classes=133, per_class=2, eval_per_class=1, image_side=320, epochs=1),
    agreement_images=240,
    latency_block=20,
    model_only_rounds=30,
    recipe_latency_rounds=12,
    recipe_calibration_images=32,
    sensitivity_images=4,
    peak_matrix_sides=(512, 2048),
    train_sizes=(64, 224),
    train_batch_size=16,
    train_steps=2,
    train_rounds=3,
    dag_parse_repeats=9,
    lambda_invocations=30,
)  # fmt: skip

# Quick mode checks the machinery once, on the smallest inputs: one train.py run (the hard case
# reuses the agreement model; its own recipe only changes figures), 32 px like the tests' model.
QUICK_SAMPLE = SampleRecipe(
    "agreement", classes=3, per_class=4, eval_per_class=2, image_side=40, epochs=1,
    min_test_accuracy=0.0, max_epochs=1,
)  # fmt: skip

QUICK = BenchConfig(
    name="quick",
    image_size=32,
    agreement_model=QUICK_SAMPLE,
    hard_model=QUICK_SAMPLE,
    agreement_images=6,
    latency_block=3,
    model_only_rounds=3,
    recipe_latency_rounds=2,
    recipe_calibration_images=4,
    sensitivity_images=2,
    peak_matrix_sides=(256,),
    train_sizes=(32,),
    train_batch_size=4,
    train_steps=1,
    train_rounds=2,
    dag_parse_repeats=1,
    lambda_invocations=2,
)  # fmt: skip
