"""Train a ResNet50 dog-breed classifier under the SageMaker script-mode contract.

One entry point for tuning trials and final training. Hyperparameters arrive
as ``--key value`` flags; data, model and output locations come from the
``SM_*`` environment and may be overridden by flags, so it also runs by hand::

    python model_scripts/train.py --train data/train --valid data/valid --test data/test \\
        --model-dir out/model --pretrained false --epochs 3 --image-size 64

Metrics are printed as ``[metrics] key=value ...`` lines whose format
``plugins/dog_breed/metrics.py`` documents and scrapes (this script runs alone
in a container, so it repeats the key names instead of importing them).

Several hosts (``SM_HOSTS``) or GPUs (``SM_NUM_GPUS``) mean real
DistributedDataParallel: one process per GPU (or one per host on CPU),
rendezvous at ``MASTER_ADDR`` (default: the first host) and ``MASTER_PORT``
(default 29500), nccl on GPU and gloo on CPU. Rank 0 writes checkpoints, the
model directory and the final metrics.

SageMaker Debugger: framework profiling is deprecated from PyTorch 2.0, so the
job relies on system profiling and the ProfilerReport rule, which need nothing
from this script. Tensor rules (vanishing gradient, loss not decreasing...)
read tensors that only the ``smdebug`` hook saves, and smdebug is not shipped
in the PyTorch 2.x training containers. We register the hook when ``smdebug``
imports (older or custom images) and otherwise log one line saying tensor
rules will see no tensors: pinning an unmaintained library into the image
would cost more than those rules give, and the metrics above already cover
loss and accuracy.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import math
import os
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset
from torchvision import datasets, transforms
from torchvision.models import ResNet50_Weights, resnet50

sys.path.insert(0, str(Path(__file__).resolve().parent))
import inference
import serving_contract

logger = logging.getLogger("train")

UNFREEZE_CHOICES = ("fc", "layer4", "layer3", "layer2", "layer1", "all")
# Top-level resnet50 children in forward order; unfreezing a layer trains it and everything after it.
_RESNET_STAGES = ("conv1", "bn1", "layer1", "layer2", "layer3", "layer4", "fc")
SERVING_REQUIREMENTS = ("onnxruntime==1.31.1", "pillow==13.0.0")
CALIBRATION_IMAGES = 128
CHECKPOINT_FILE = "checkpoint.pt"
DEFAULT_MASTER_PORT = 29500


# ---------------------------------------------------------------- arguments


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
    hyper.add_argument("--amp", type=_json_choice, choices=("auto", "off"), default="auto")
    hyper.add_argument("--workers", type=integer, default=-1, help="DataLoader workers; -1 sizes to the CPUs")
    hyper.add_argument("--seed", type=integer, default=42)
    hyper.add_argument("--export-onnx", type=str2bool, default=True, help="also write model.int8.onnx")

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


# ---------------------------------------------------------------- distributed setup


@dataclass(frozen=True)
class Cluster:
    """Where this process sits: SageMaker hosts x local processes (one per GPU, or one on CPU)."""

    hosts: tuple[str, ...]
    host_index: int
    processes_per_host: int
    local_rank: int
    use_cuda: bool

    @property
    def world_size(self) -> int:
        return len(self.hosts) * self.processes_per_host

    @property
    def rank(self) -> int:
        return self.host_index * self.processes_per_host + self.local_rank

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def device(self) -> torch.device:
        return torch.device("cuda", self.local_rank) if self.use_cuda else torch.device("cpu")


def cluster_from_env(local_rank: int = 0) -> Cluster:
    hosts = tuple(json.loads(os.environ.get("SM_HOSTS", '["algo-1"]')) or ["algo-1"])
    current = os.environ.get("SM_CURRENT_HOST", hosts[0])
    if current not in hosts:
        raise ValueError(f"SM_CURRENT_HOST {current!r} is not in SM_HOSTS {list(hosts)}")
    use_cuda = torch.cuda.is_available()
    gpus = int(os.environ.get("SM_NUM_GPUS", torch.cuda.device_count() if use_cuda else 0))
    return Cluster(hosts, hosts.index(current), max(1, gpus) if use_cuda else 1, local_rank, use_cuda)


def init_distributed(cluster: Cluster) -> None:
    if not cluster.distributed:
        return
    address = os.environ.get("MASTER_ADDR", cluster.hosts[0])
    port = int(os.environ.get("MASTER_PORT", DEFAULT_MASTER_PORT))
    backend = "nccl" if cluster.use_cuda else "gloo"
    if cluster.use_cuda:
        torch.cuda.set_device(cluster.local_rank)
    logger.info(
        "distributed: backend=%s world_size=%d rank=%d rendezvous=%s:%d",
        backend,
        cluster.world_size,
        cluster.rank,
        address,
        port,
    )
    dist.init_process_group(
        backend, init_method=f"tcp://{address}:{port}", rank=cluster.rank, world_size=cluster.world_size
    )


def broadcast_buffers(model: nn.Module, cluster: Cluster) -> None:
    """Give every rank rank 0's BatchNorm statistics (each rank's last forward updated its own)."""
    if cluster.distributed:
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)


def all_reduce_sum(values: list[float], cluster: Cluster) -> list[float]:
    tensor = torch.tensor(values, dtype=torch.float64, device=cluster.device)
    if cluster.distributed:
        dist.all_reduce(tensor)
    return tensor.tolist()


# ---------------------------------------------------------------- data


def _pil_rgb_loader(path: str, min_side: int) -> Any:
    return inference.decode_rgb(Path(path).read_bytes(), min_side)


def _preprocessed_loader(path: str, image_size: int) -> torch.Tensor:
    return torch.from_numpy(inference.preprocess(Path(path).read_bytes(), image_size))


def train_transform(image_size: int) -> transforms.Compose:
    return transforms.Compose(
        [
            transforms.RandomResizedCrop(image_size, scale=(0.35, 1.0)),
            transforms.RandomHorizontalFlip(),
            transforms.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2),
            transforms.ToTensor(),
            transforms.Normalize(inference.IMAGENET_MEAN, inference.IMAGENET_STD),
        ]
    )


def training_set(root: Path, image_size: int) -> datasets.ImageFolder:
    loader = partial(_pil_rgb_loader, min_side=inference.resize_side(image_size))
    return datasets.ImageFolder(str(root), transform=train_transform(image_size), loader=loader)


def evaluation_set(root: Path, image_size: int, classes: list[str]) -> datasets.ImageFolder:
    """Evaluation images go through exactly ``inference.preprocess``, as in serving."""
    dataset = datasets.ImageFolder(str(root), loader=partial(_preprocessed_loader, image_size=image_size))
    if dataset.classes != classes:
        missing = sorted(set(classes) - set(dataset.classes))
        extra = sorted(set(dataset.classes) - set(classes))
        raise ValueError(f"class folders of {root} differ from train: missing {missing}, extra {extra}")
    return dataset


def cpus_per_process(cluster: Cluster) -> int:
    cpus = int(os.environ.get("SM_NUM_CPUS", os.cpu_count() or 1))
    return max(1, cpus // cluster.processes_per_host)


def worker_count(requested: int, cluster: Cluster) -> int:
    """DataLoader workers. A GPU step is fast, so decoding needs every spare core; a CPU step
    spends ~30x longer in ResNet50 than in decoding, and a loader process competing with the
    compute threads made training 15x slower on 2 cores (measured): one worker per 8 cores."""
    if requested >= 0:
        return requested
    cpus = cpus_per_process(cluster)
    if cluster.use_cuda:
        return max(0, min(8, cpus - 1))
    return 0 if cpus < 8 else min(4, cpus // 8)


def set_compute_threads(workers: int, cluster: Cluster) -> None:
    """Compute threads on the cores the loader workers leave free (no oversubscription)."""
    if not cluster.use_cuda:
        torch.set_num_threads(max(1, cpus_per_process(cluster) - workers))


def make_loader(
    dataset: Dataset,
    batch_size: int,
    workers: int,
    cluster: Cluster,
    sampler: Any = None,
    shuffle: bool = False,
) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle and sampler is None,
        sampler=sampler,
        num_workers=workers,
        pin_memory=cluster.use_cuda,
        persistent_workers=workers > 0,
        drop_last=False,
    )


def shard(dataset: Dataset, cluster: Cluster) -> Dataset:
    """Every rank evaluates a disjoint slice (no padding, so sums over ranks are exact)."""
    if not cluster.distributed:
        return dataset
    return Subset(dataset, range(cluster.rank, len(dataset), cluster.world_size))  # type: ignore[arg-type]


# ---------------------------------------------------------------- model


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
        return _RESNET_STAGES
    if unfreeze == "all":
        return _RESNET_STAGES
    return _RESNET_STAGES[_RESNET_STAGES.index(unfreeze) :]


def freeze_except(model: nn.Module, stages: tuple[str, ...]) -> None:
    for name, child in model.named_children():
        child.requires_grad_(name in stages)


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


# ---------------------------------------------------------------- precision


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
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, check, lambda: False)() for check in checks)


def choose_precision(amp: str, cluster: Cluster) -> Precision:
    device_type = "cuda" if cluster.use_cuda else "cpu"
    if amp == "off":
        return Precision(None, device_type)
    if cluster.use_cuda:
        return Precision(torch.float16, device_type)
    return Precision(torch.bfloat16 if cpu_supports_bf16() else None, device_type)


# ---------------------------------------------------------------- checkpoints


@dataclass
class TrainingState:
    next_epoch: int = 0
    best_accuracy: float = -1.0
    best_epoch: int = -1
    epochs_without_improvement: int = 0
    stopped_early: bool = False
    best_weights: dict[str, torch.Tensor] | None = None


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
    """Write atomically: a spot interruption mid-write leaves the previous checkpoint intact."""
    payload = {
        "classes": classes,
        "training_state": {key: value for key, value in vars(state).items() if key != "best_weights"},
        "best_weights": state.best_weights,
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
    logger.info(
        "resuming from %s at epoch %d (best valid accuracy %.4f)",
        path,
        state.next_epoch + 1,
        state.best_accuracy,
    )
    return state


# ---------------------------------------------------------------- debugger


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


def _set_hook_mode(hook: Any, training: bool) -> None:
    if hook is not None:
        import smdebug.pytorch as smd  # type: ignore[import-not-found]

        hook.set_mode(smd.modes.TRAIN if training else smd.modes.EVAL)


# ---------------------------------------------------------------- loops


def train_one_epoch(
    model: nn.Module,
    loader: DataLoader,
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler | None,
    precision: Precision,
    cluster: Cluster,
) -> tuple[float, int]:
    """Mean training loss over all ranks and the number of images this rank saw."""
    loss_sum, seen = 0.0, 0
    for images, labels in loader:
        images = images.to(cluster.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        labels = labels.to(cluster.device, non_blocking=True)
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
        loss_sum += loss.item() * len(labels)
        seen += len(labels)
    total_loss, total_seen = all_reduce_sum([loss_sum, float(seen)], cluster)
    return total_loss / max(total_seen, 1.0), seen


def evaluate(
    model: nn.Module, loader: DataLoader, precision: Precision, cluster: Cluster
) -> tuple[float, float]:
    """(loss, accuracy) over the whole set, summed across ranks. Plain cross entropy, no smoothing."""
    model.eval()
    loss_sum, correct, count = 0.0, 0.0, 0.0
    with torch.inference_mode():
        for images, labels in loader:
            images = images.to(cluster.device, non_blocking=True).contiguous(
                memory_format=torch.channels_last
            )
            labels = labels.to(cluster.device, non_blocking=True)
            with precision.autocast():
                logits = model(images)
            loss_sum += nn.functional.cross_entropy(logits.float(), labels, reduction="sum").item()
            correct += (logits.argmax(dim=1) == labels).sum().item()
            count += len(labels)
    loss_sum, correct, count = all_reduce_sum([loss_sum, correct, count], cluster)
    return loss_sum / max(count, 1.0), correct / max(count, 1.0)


def print_metrics(**values: float | int) -> None:
    """One ``[metrics]`` line in the format plugins/dog_breed/metrics.py scrapes."""
    parts = [
        f"{key}={value}" if isinstance(value, int) else f"{key}={value:.4f}" for key, value in values.items()
    ]
    print("[metrics] " + " ".join(parts), flush=True)


def weights_fingerprint(model: nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


# ---------------------------------------------------------------- outputs


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def cpu_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    return {
        key: value.detach().cpu().clone().contiguous() for key, value in unwrap(model).state_dict().items()
    }


def save_model_dir(
    model_dir: Path, weights: dict[str, torch.Tensor], classes: list[str], image_size: int
) -> None:
    """SageMaker PyTorch inference layout: weights, config and code/ (so model.tar.gz serves as is)."""
    model_dir.mkdir(parents=True, exist_ok=True)
    torch.save(weights, model_dir / "model.pth")
    config = {
        "arch": "resnet50",
        "num_classes": len(classes),
        "image_size": image_size,
        "classes": classes,
        "mean": list(inference.IMAGENET_MEAN),
        "std": list(inference.IMAGENET_STD),
    }
    config_file = model_dir / serving_contract.MODEL_CONFIG_FILE
    config_file.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    code_dir = model_dir / "code"
    code_dir.mkdir(exist_ok=True)
    scripts = Path(__file__).resolve().parent
    for name in serving_contract.SERVING_CODE:
        if (scripts / name).is_file():
            shutil.copy2(scripts / name, code_dir / name)
    (code_dir / "requirements.txt").write_text("\n".join(SERVING_REQUIREMENTS) + "\n", encoding="utf-8")
    logger.info("model directory written to %s", model_dir)


def calibration_batches(
    dataset: datasets.ImageFolder, image_size: int, batch_size: int = 16
) -> Iterator[np.ndarray]:
    """Up to CALIBRATION_IMAGES training images, spread over classes, preprocessed as in serving."""
    count = min(CALIBRATION_IMAGES, len(dataset.samples))
    picks = np.linspace(0, len(dataset.samples) - 1, count).round().astype(int)
    paths = [dataset.samples[index][0] for index in picks]
    for start in range(0, len(paths), batch_size):
        chunk = paths[start : start + batch_size]
        yield np.stack([inference.preprocess(Path(path).read_bytes(), image_size) for path in chunk])


def export_onnx(model: nn.Module, dataset: datasets.ImageFolder, model_dir: Path, image_size: int) -> None:
    """Best effort: the PyTorch artifact always exists; a missing or failing exporter only warns."""
    try:
        import fast_serving
    except ImportError as error:
        logger.warning(
            "fast_serving is not available (%s): serving will use PyTorch (no model.int8.onnx)", error
        )
        return
    try:
        fast_serving.export_int8_onnx(model, calibration_batches(dataset, image_size), model_dir, image_size)
        logger.info("int8 ONNX model written to %s", model_dir / inference.ONNX_MODEL_FILE)
    except Exception:
        logger.warning("int8 ONNX export failed: serving will use PyTorch", exc_info=True)


# ---------------------------------------------------------------- main


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


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


def run(args: argparse.Namespace, cluster: Cluster) -> dict[str, float]:
    seed_everything(args.seed)
    # Denormal floats make CPU convolutions 10x slower here (measured); flushing them costs no accuracy.
    torch.set_flush_denormal(True)
    precision = choose_precision(args.amp, cluster)
    train_data = training_set(args.train, args.image_size)
    classes = list(train_data.classes)
    valid_data = evaluation_set(args.valid, args.image_size, classes)
    test_data = evaluation_set(args.test, args.image_size, classes) if args.test.is_dir() else None
    workers = worker_count(args.workers, cluster)
    set_compute_threads(workers, cluster)
    logger.info(
        "%d classes, %d/%d/%d train/valid/test images, precision %s, %d workers, world_size=%d rank=%d",
        len(classes),
        len(train_data),
        len(valid_data),
        len(test_data) if test_data else 0,
        precision.name,
        workers,
        cluster.world_size,
        cluster.rank,
    )

    model = build_model(len(classes), args.pretrained)
    stages = trainable_stages(args.unfreeze, args.pretrained)
    freeze_except(model, stages)
    model = model.to(cluster.device, memory_format=torch.channels_last)
    criterion = nn.CrossEntropyLoss(label_smoothing=args.label_smoothing)
    optimizer = torch.optim.AdamW(parameter_groups(model, args.weight_decay), lr=args.lr)

    sampler = (
        DistributedSampler(train_data, cluster.world_size, cluster.rank, shuffle=True, seed=args.seed)
        if cluster.distributed
        else None
    )
    train_loader = make_loader(train_data, args.batch_size, workers, cluster, sampler, shuffle=True)
    valid_loader = make_loader(shard(valid_data, cluster), args.batch_size, workers, cluster)
    scheduler = make_scheduler(optimizer, max(1, args.epochs * len(train_loader)), args.warmup_fraction)
    scaler = torch.amp.GradScaler("cuda") if precision.dtype == torch.float16 else None

    checkpoint_dir = ensure_checkpoint_dir(args.checkpoint_dir)
    checkpoint = checkpoint_dir / CHECKPOINT_FILE if checkpoint_dir else None
    bundle = {"model": model, "optimizer": optimizer, "scheduler": scheduler, "scaler": scaler}
    state = (load_checkpoint(checkpoint, bundle, classes) if checkpoint else None) or TrainingState()

    training_model: nn.Module = model
    if cluster.distributed:
        # DDP broadcasts rank 0's weights at construction: every rank starts from the same model.
        training_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[cluster.local_rank] if cluster.use_cuda else None
        )
    hook = debugger_hook(model, criterion)

    for epoch in range(state.next_epoch, args.epochs):
        if state.stopped_early:
            break
        if sampler is not None:
            sampler.set_epoch(epoch)
        set_train_mode(training_model, stages)
        _set_hook_mode(hook, training=True)
        started = time.perf_counter()
        train_loss, seen = train_one_epoch(
            training_model, train_loader, criterion, optimizer, scheduler, scaler, precision, cluster
        )
        images_per_sec = seen * cluster.world_size / (time.perf_counter() - started)
        broadcast_buffers(model, cluster)
        _set_hook_mode(hook, training=False)
        # The unwrapped model: DDP's forward would sync buffers, and ranks' eval shards differ in size.
        valid_loss, valid_accuracy = evaluate(model, valid_loader, precision, cluster)
        if valid_accuracy > state.best_accuracy:
            state.best_accuracy, state.best_epoch = valid_accuracy, epoch
            state.epochs_without_improvement = 0
            state.best_weights = cpu_state_dict(model)
        else:
            state.epochs_without_improvement += 1
        state.stopped_early = state.epochs_without_improvement >= args.patience
        state.next_epoch = epoch + 1
        if cluster.is_main:
            print_metrics(
                epoch=epoch + 1,
                train_loss=train_loss,
                valid_loss=valid_loss,
                valid_accuracy=valid_accuracy,
                images_per_sec=images_per_sec,
            )
            if checkpoint:
                save_checkpoint(checkpoint, state, bundle, classes)
        if state.stopped_early:
            logger.info("early stopping: no better valid accuracy for %d epochs", args.patience)
    logger.info(
        "rank=%d world_size=%d trained_images_last_epoch_this_rank=%d weights_sha256=%s",
        cluster.rank,
        cluster.world_size,
        len(sampler) if sampler is not None else len(train_data),
        weights_fingerprint(model),
    )

    if state.best_weights is not None:
        model.load_state_dict(state.best_weights)
        logger.info("restored the best weights (epoch %d)", state.best_epoch + 1)
    final = {"best_valid_accuracy": max(state.best_accuracy, 0.0)}
    if test_data is not None:
        test_loader = make_loader(shard(test_data, cluster), args.batch_size, workers, cluster)
        final["test_loss"], final["test_accuracy"] = evaluate(model, test_loader, precision, cluster)
    else:
        logger.warning("no test channel at %s: skipping test metrics", args.test)
    if cluster.is_main:
        print_metrics(**final)
        model = model.cpu().float().eval()
        save_model_dir(args.model_dir, cpu_state_dict(model), classes, args.image_size)
        if args.export_onnx:
            export_onnx(model, train_data, args.model_dir, args.image_size)
        write_summary(args, final)
    return final


def write_summary(args: argparse.Namespace, final: dict[str, float]) -> None:
    try:
        args.output_data_dir.mkdir(parents=True, exist_ok=True)
        summary = {"metrics": final, "hyperparameters": {k: str(v) for k, v in vars(args).items()}}
        (args.output_data_dir / "training_summary.json").write_text(
            json.dumps(summary, indent=2), encoding="utf-8"
        )
    except OSError as error:
        logger.warning("could not write the training summary to %s: %s", args.output_data_dir, error)


def _worker(local_rank: int, args: argparse.Namespace) -> None:
    cluster = cluster_from_env(local_rank)
    init_distributed(cluster)
    try:
        run(args, cluster)
    finally:
        if cluster.distributed:
            dist.destroy_process_group()


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stdout
    )
    args = parse_args(argv)
    cluster = cluster_from_env()
    if cluster.processes_per_host > 1:
        # One process per GPU on this host; SageMaker starts this script once per host.
        torch.multiprocessing.spawn(_worker, args=(args,), nprocs=cluster.processes_per_host)
    else:
        _worker(0, args)


if __name__ == "__main__":
    main()
