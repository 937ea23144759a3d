"""The bench's inputs: a sample dataset and a model trained on it by train.py (cached by content)."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.config import REPO_ROOT, BenchConfig

MODEL_SCRIPTS = REPO_ROOT / "model_scripts"
STAMP_FILE = "bench_stamp.json"
# One run trains at most once: sections share it even if model_scripts/ change mid-run.
_PREPARED: dict[BenchConfig, SampleArtifacts] = {}


@dataclass(frozen=True)
class SampleArtifacts:
    dataset_dir: Path
    model_dir: Path
    training_log: Path

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


def _fingerprint(config: BenchConfig) -> str:
    """Changes whenever the data recipe or the code that trains and exports the model changes."""
    digest = hashlib.sha256()
    recipe = [
        config.image_size,
        config.sample_classes,
        config.sample_per_class,
        config.sample_eval_per_class,
        config.sample_image_side,
        config.sample_epochs,
    ]
    digest.update(json.dumps(recipe).encode())
    for name in ("train.py", "inference.py", "fast_serving.py", "sample_data.py"):
        digest.update((MODEL_SCRIPTS / name).read_bytes())
    return digest.hexdigest()[:16]


def _generate_dataset(config: BenchConfig, dataset_dir: Path) -> None:
    sys.path.insert(0, str(MODEL_SCRIPTS))
    import sample_data

    shutil.rmtree(dataset_dir, ignore_errors=True)
    sample_data.generate(
        dataset_dir,
        classes=config.sample_classes,
        per_class_train=config.sample_per_class,
        size=config.sample_image_side,
        seed=0,
        per_class_eval=config.sample_eval_per_class,
    )


def _train(config: BenchConfig, dataset_dir: Path, model_dir: Path, log_path: Path) -> None:
    shutil.rmtree(model_dir, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix="bench-train-") as scratch:
        command = [
            sys.executable,
            str(MODEL_SCRIPTS / "train.py"),
            *("--train", str(dataset_dir / "train"), "--valid", str(dataset_dir / "valid")),
            *("--test", str(dataset_dir / "test"), "--model-dir", str(model_dir)),
            *(
                "--output-data-dir",
                str(Path(scratch) / "output"),
                "--checkpoint-dir",
                str(Path(scratch) / "ckpt"),
            ),
            *("--pretrained", "false", "--epochs", str(config.sample_epochs)),
            *("--image-size", str(config.image_size), "--batch-size", "16", "--export-onnx", "true"),
        ]
        with open(log_path, "w", encoding="utf-8") as log:
            completed = subprocess.run(
                command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT, check=False
            )
    if completed.returncode != 0:
        raise RuntimeError(f"train.py failed ({completed.returncode}); see {log_path}")


def sample_artifacts(config: BenchConfig, log: Callable[[str], None] = print) -> SampleArtifacts:
    """Dataset and trained model for ``config``, reused from the cache when nothing they depend on changed."""
    if config in _PREPARED:
        return _PREPARED[config]
    _PREPARED[config] = _prepare(config, log)
    return _PREPARED[config]


def _prepare(config: BenchConfig, log: Callable[[str], None]) -> SampleArtifacts:
    root = config.cache_dir / f"sample-{config.name}"
    artifacts = SampleArtifacts(root / "dogImages", root / "model", root / "train.log")
    fingerprint = _fingerprint(config)
    stamp = artifacts.model_dir / STAMP_FILE
    if stamp.is_file() and json.loads(stamp.read_text()).get("fingerprint") == fingerprint:
        log(f"   reusing the sample model in {artifacts.model_dir}")
        return artifacts
    root.mkdir(parents=True, exist_ok=True)
    log(f"   generating the sample dataset and training it with train.py ({config.sample_epochs} epochs)...")
    _generate_dataset(config, artifacts.dataset_dir)
    _train(config, artifacts.dataset_dir, artifacts.model_dir, artifacts.training_log)
    if not (artifacts.model_dir / "model.int8.onnx").is_file():
        raise RuntimeError(f"train.py wrote no model.int8.onnx; see {artifacts.training_log}")
    stamp.write_text(json.dumps({"fingerprint": fingerprint}), encoding="utf-8")
    return artifacts
