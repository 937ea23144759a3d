"""The bench's inputs: synthetic datasets and models trained on them by train.py (cached by content)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.config import REPO_ROOT, BenchConfig, SampleRecipe

MODEL_SCRIPTS = REPO_ROOT / "model_scripts"
STAMP_FILE = "bench_stamp.json"
EPOCHS_PER_RESUME = 2
# One run trains each model at most once: sections (and recipes that are the same) share it,
# even if model_scripts/ change mid-run.
_PREPARED: dict[tuple[BenchConfig, SampleRecipe], SampleArtifacts] = {}


@dataclass(frozen=True)
class SampleArtifacts:
    recipe: SampleRecipe
    dataset_dir: Path
    model_dir: Path
    training_log: Path
    test_accuracy: float | None
    epochs: int

    def evaluation_images(self) -> list[Path]:
        """Valid and test images (never trained on), class-interleaved so any prefix spans the classes."""
        by_class: dict[str, list[Path]] = {}
        for split in ("test", "valid"):
            for path in sorted((self.dataset_dir / split).glob("*/*.jpg")):
                by_class.setdefault(path.parent.name, []).append(path)
        rows = [paths for _, paths in sorted(by_class.items())]
        return [
            row[index] for index in range(max(map(len, rows), default=0)) for row in rows if index < len(row)
        ]

    def describe(self) -> str:
        accuracy = f"{self.test_accuracy:.3f}" if self.test_accuracy is not None else "unknown"
        return (
            f"{self.recipe.name} model: train.py, synthetic {self.recipe.classes}-class set "
            f"({self.recipe.per_class} training images per class), {self.epochs} epochs from random init, "
            f"test accuracy {accuracy}"
        )


def _fingerprint(config: BenchConfig, recipe: SampleRecipe) -> str:
    """Changes whenever the data recipe or the code that trains and exports the model changes."""
    digest = hashlib.sha256(json.dumps([config.image_size, asdict(recipe)]).encode())
    for path in sorted(MODEL_SCRIPTS.glob("*.py")):
        if path.name != "lambda_function.py":
            digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:16]


def _generate_dataset(recipe: SampleRecipe, dataset_dir: Path) -> None:
    import sample_data

    shutil.rmtree(dataset_dir, ignore_errors=True)
    sample_data.generate(
        dataset_dir,
        classes=recipe.classes,
        per_class_train=recipe.per_class,
        size=recipe.image_side,
        seed=0,
        per_class_eval=recipe.eval_per_class,
    )


def final_test_accuracy(text: str) -> float | None:
    """train.py's last ``[metrics] ... test_accuracy=X``."""
    for line in reversed(text.splitlines()):
        if line.startswith("[metrics]") and "test_accuracy=" in line:
            return float(line.split("test_accuracy=", 1)[1].split()[0])
    return None


def _train(
    config: BenchConfig, root: Path, dataset_dir: Path, epochs: int, log: Callable[[str], None]
) -> str:
    """One train.py run to ``epochs`` (resuming from root/checkpoints); returns its output."""
    command = [
        sys.executable,
        str(MODEL_SCRIPTS / "train.py"),
        *("--train", str(dataset_dir / "train"), "--valid", str(dataset_dir / "valid")),
        *("--test", str(dataset_dir / "test"), "--model-dir", str(root / "model")),
        *("--output-data-dir", str(root / "output"), "--checkpoint-dir", str(root / "checkpoints")),
        *("--pretrained", "false", "--epochs", str(epochs), "--patience", str(epochs)),
        *("--image-size", str(config.image_size), "--batch-size", "16", "--export-onnx", "true"),
    ]
    lines = []
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO_ROOT
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if line.startswith("[metrics]"):
                log(f"   train.py {line.strip()}")
    output = "".join(lines)
    if process.returncode != 0:
        raise RuntimeError(f"train.py failed ({process.returncode}):\n{output[-3000:]}")
    return output


def sample_artifacts(
    config: BenchConfig, which: str = "agreement", log: Callable[[str], None] = print
) -> SampleArtifacts:
    """Dataset and model for ``config``'s ``which`` recipe, reused while nothing they depend on changed."""
    recipes = {"agreement": config.agreement_model, "hard": config.hard_model}
    if which not in recipes:
        raise ValueError(f"which must be one of {sorted(recipes)}, got {which!r}")
    key = (config, recipes[which])
    if key not in _PREPARED:
        _PREPARED[key] = _prepare(config, recipes[which], log)
    return _PREPARED[key]


def _prepare(config: BenchConfig, recipe: SampleRecipe, log: Callable[[str], None]) -> SampleArtifacts:
    root = config.cache_dir / f"sample-{config.name}-{recipe.name}"
    dataset_dir, model_dir, training_log = root / "dogImages", root / "model", root / "train.log"
    fingerprint = _fingerprint(config, recipe)
    stamp = model_dir / STAMP_FILE
    if stamp.is_file() and (saved := json.loads(stamp.read_text())).get("fingerprint") == fingerprint:
        log(f"   reusing the {recipe.name} model in {model_dir}")
        return SampleArtifacts(
            recipe, dataset_dir, model_dir, training_log, saved["test_accuracy"], saved["epochs"]
        )
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    log(f"   {recipe.name} model: generating {recipe.classes} classes x {recipe.per_class} images, training")
    _generate_dataset(recipe, dataset_dir)
    epochs = recipe.epochs
    output = _train(config, root, dataset_dir, epochs, log)
    accuracy = final_test_accuracy(output)
    while accuracy is not None and accuracy < recipe.min_test_accuracy and epochs < recipe.max_epochs:
        epochs = min(recipe.max_epochs, epochs + EPOCHS_PER_RESUME)
        log(f"   test accuracy {accuracy:.3f} < {recipe.min_test_accuracy}: resuming to {epochs} epochs")
        output += _train(config, root, dataset_dir, epochs, log)
        accuracy = final_test_accuracy(output)
    training_log.write_text(output, encoding="utf-8")
    if not (model_dir / "model.int8.onnx").is_file():
        raise RuntimeError(f"train.py wrote no model.int8.onnx; see {training_log}")
    stamp.write_text(
        json.dumps({"fingerprint": fingerprint, "test_accuracy": accuracy, "epochs": epochs}),
        encoding="utf-8",
    )
    return SampleArtifacts(recipe, dataset_dir, model_dir, training_log, accuracy, epochs)


def served_int8_predictor(model_dir: Path) -> Any:
    """The int8 model as the endpoint serves it by default (``inference.model_fn``, runtime auto)."""
    import inference

    os.environ[inference.RUNTIME_ENV] = "auto"
    predictor = inference.model_fn(str(model_dir))
    if not predictor.runtime.endswith("-int8"):
        raise RuntimeError(f"inference.model_fn chose {predictor.runtime}, not the int8 ONNX model")
    return predictor
