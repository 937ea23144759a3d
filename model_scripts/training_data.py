"""Images in, batches out: each image is decoded once, kept in memory, and augmented on tensors.

Why this shape: on a CPU instance the model needs every core, and a DataLoader
worker process decoding JPEGs beside it made training 15x slower on 2 cores
(measured). So each split is decoded once, at start, by a thread pool (Pillow
releases the GIL) into one tensor:

- training images as uint8 (3, R, R), R = ``inference.resize_side(image_size)``
  (the shorter side resized to R, centre square kept), which leaves the random
  crop its margin;
- evaluation images as float32 exactly as ``inference.preprocess`` makes them
  for serving, so valid/test accuracy is measured on what the endpoint sees.

Augmentation (random resized crop, horizontal flip, colour jitter) then runs
as a few batched tensor ops per batch (``affine_grid`` + ``grid_sample``),
which costs ~1% of a training step. If the decoded splits would exceed the
memory budget (``--cache-memory-mb``, default half the free memory), the
splits that do not fit are decoded batch by batch instead, one batch ahead in
a thread, and the job logs that it did so.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import inference
import numpy as np
import torch
from PIL import Image
from torch.nn import functional
from torch.utils.data import DistributedSampler
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset
from training_cluster import Cluster

logger = logging.getLogger("train")

CROP_SCALE = (0.35, 1.0)  # share of the image area a random crop keeps
CROP_RATIO = (3 / 4, 4 / 3)
JITTER = 0.2  # brightness, contrast and saturation factors drawn from [1 - JITTER, 1 + JITTER]
_GREY_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R 601 luma, as torchvision's rgb_to_grayscale


# ---------------------------------------------------------------- what is on disk


@dataclass(frozen=True)
class ImageFolder:
    """A ``split/NNN.Breed/*.jpg`` folder: sorted class names and (path, label) per image."""

    root: Path
    classes: list[str]
    paths: list[Path]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.paths)


def index_folder(root: Path, classes: list[str] | None = None) -> ImageFolder:
    """Index ``root``; with ``classes`` given, its class folders must be exactly those (as train's)."""
    found, class_to_index = find_classes(str(root))
    if classes is not None and found != classes:
        missing = sorted(set(classes) - set(found))
        extra = sorted(set(found) - set(classes))
        raise ValueError(f"class folders of {root} differ from train: missing {missing}, extra {extra}")
    samples = make_dataset(str(root), class_to_index, extensions=IMG_EXTENSIONS)
    return ImageFolder(root, found, [Path(path) for path, _ in samples], [label for _, label in samples])


# ---------------------------------------------------------------- decoding


def decode_for_training(path: Path, side: int) -> torch.Tensor:
    """uint8 (3, side, side): shorter side resized to ``side``, centre square, one resize call."""
    image = inference.decode_rgb(path.read_bytes(), side)
    width, height = image.size
    edge = min(width, height)
    box = ((width - edge) / 2, (height - edge) / 2, (width + edge) / 2, (height + edge) / 2)
    image = image.resize((side, side), Image.Resampling.BILINEAR, box=box)
    return torch.from_numpy(np.asarray(image).transpose(2, 0, 1).copy())


def decode_for_evaluation(path: Path, image_size: int) -> torch.Tensor:
    """float32 (3, S, S): exactly what serving feeds the model."""
    return torch.from_numpy(inference.preprocess(path.read_bytes(), image_size))


class DecodedImages:
    """One split's images as a tensor, either decoded up front (``cached``) or per batch."""

    def __init__(
        self,
        name: str,
        paths: Sequence[Path],
        decode: Callable[[Path], torch.Tensor],
        item_shape: tuple[int, ...],
        dtype: torch.dtype,
        threads: int,
    ):
        self.name = name
        self.paths = list(paths)
        self.decode = decode
        self.item_shape = item_shape
        self.dtype = dtype
        self.threads = max(1, threads)
        self._cache: torch.Tensor | None = None

    @property
    def nbytes(self) -> int:
        return len(self.paths) * math.prod(self.item_shape) * torch.empty((), dtype=self.dtype).element_size()

    @property
    def cached(self) -> bool:
        return self._cache is not None

    def _decode(self, path: Path) -> torch.Tensor:
        try:
            return self.decode(path)
        except Exception as error:  # say which file: a job with 8,000 images must not make you guess
            raise ValueError(f"{self.name} image {path} cannot be used: {error}") from error

    def load(self) -> None:
        """Decode every image into one preallocated tensor, ``threads`` at a time."""
        cache = torch.empty((len(self.paths), *self.item_shape), dtype=self.dtype)
        with ThreadPoolExecutor(self.threads, thread_name_prefix=f"decode-{self.name}") as pool:
            for index, image in enumerate(pool.map(self._decode, self.paths)):
                cache[index] = image
        self._cache = cache

    def batch(self, indices: Sequence[int]) -> torch.Tensor:
        if self._cache is not None:
            return self._cache[torch.as_tensor(indices, dtype=torch.long)]
        with ThreadPoolExecutor(min(self.threads, len(indices)) or 1) as pool:
            return torch.stack(list(pool.map(self._decode, [self.paths[i] for i in indices])))


def memory_budget_bytes(requested_mb: int, processes_per_host: int) -> int:
    """``requested_mb`` if given, else half of the memory the machine has available, per process."""
    if requested_mb >= 0:
        return requested_mb * 2**20
    available = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
    except OSError:
        pass
    if available is None:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return available // 2 // max(1, processes_per_host)


def load_within_budget(splits: Iterable[DecodedImages], budget: int) -> None:
    """Decode splits into memory in the order given while they fit; the rest stream (and say so)."""
    used = 0
    for split in splits:
        if used + split.nbytes <= budget:
            split.load()
            used += split.nbytes
            logger.info(
                "%s: %d images decoded into memory (%.1f MB)",
                split.name,
                len(split.paths),
                split.nbytes / 1e6,
            )
        else:
            logger.warning(
                "%s: %d decoded images (%.0f MB) would exceed the cache budget (%.0f MB, %.0f MB used): "
                "decoding them batch by batch instead, which is slower; raise --cache-memory-mb to avoid it",
                split.name,
                len(split.paths),
                split.nbytes / 1e6,
                budget / 1e6,
                used / 1e6,
            )


# ---------------------------------------------------------------- augmentation


def random_resized_crop_flip(
    images: torch.Tensor, size: int, generator: torch.Generator, flip: bool = True
) -> torch.Tensor:
    """Batched RandomResizedCrop(size, CROP_SCALE, CROP_RATIO) + RandomHorizontalFlip, bilinear.

    ``images`` is float (B, C, H, W); each sample gets its own crop box, drawn
    as torchvision draws it (area share and log-uniform aspect ratio), as one
    affine sampling grid, so the whole batch is one ``grid_sample`` call.
    """
    count = images.shape[0]
    area = torch.empty(count).uniform_(*CROP_SCALE, generator=generator)
    log_ratio = torch.empty(count).uniform_(
        math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1]), generator=generator
    )
    ratio = torch.exp(log_ratio)
    width = torch.sqrt(area * ratio).clamp(max=1.0)  # fractions of the source side
    height = torch.sqrt(area / ratio).clamp(max=1.0)
    centre_x = (1 - width) * (2 * torch.rand(count, generator=generator) - 1)  # in [-1, 1] grid units
    centre_y = (1 - height) * (2 * torch.rand(count, generator=generator) - 1)
    mirror = (
        torch.where(torch.rand(count, generator=generator) < 0.5, -1.0, 1.0) if flip else torch.ones(count)
    )
    theta = torch.zeros(count, 2, 3)
    theta[:, 0, 0] = width * mirror
    theta[:, 0, 2] = centre_x
    theta[:, 1, 1] = height
    theta[:, 1, 2] = centre_y
    theta = theta.to(images.device, images.dtype)
    grid = functional.affine_grid(theta, [count, images.shape[1], size, size], align_corners=False)
    return functional.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def color_jitter(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Batched brightness, contrast and saturation jitter on float RGB in [0, 1], per-sample factors."""
    count = images.shape[0]

    def factors() -> torch.Tensor:
        drawn = torch.empty(count, 1, 1, 1).uniform_(1 - JITTER, 1 + JITTER, generator=generator)
        return drawn.to(images.device, images.dtype)

    weights = torch.tensor(_GREY_WEIGHTS, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    images = images * factors()
    grey_mean = (images * weights).sum(dim=1, keepdim=True).mean(dim=(2, 3), keepdim=True)
    images = (images - grey_mean) * factors() + grey_mean
    grey = (images * weights).sum(dim=1, keepdim=True)
    images = (images - grey) * factors() + grey
    return images.clamp_(0.0, 1.0)


def normalize(images: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(inference.IMAGENET_MEAN, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    std = torch.tensor(inference.IMAGENET_STD, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    return (images - mean) / std


def augment(images: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """uint8 (B, 3, R, R) -> normalized float32 (B, 3, size, size), channels_last."""
    pixels = images.float().div_(255.0)
    pixels = color_jitter(random_resized_crop_flip(pixels, size, generator), generator)
    return normalize(pixels).contiguous(memory_format=torch.channels_last)


# ---------------------------------------------------------------- batches


def prefetched(
    batches: Iterator[tuple[torch.Tensor, torch.Tensor]],
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Produce the next item in a thread while the caller computes on this one (one ahead)."""
    ready: queue.Queue = queue.Queue(maxsize=1)
    done = object()

    def produce() -> None:
        try:
            for item in batches:
                ready.put(item)
        except BaseException as error:  # handed to the consumer, which re-raises it
            ready.put(error)
        ready.put(done)

    thread = threading.Thread(target=produce, name="batch-prefetch", daemon=True)
    thread.start()
    while (item := ready.get()) is not done:
        if isinstance(item, BaseException):
            raise item
        yield item
    thread.join()


class TrainingBatches:
    """This rank's augmented training batches, reshuffled every epoch (same shards as DistributedSampler).

    Full batches only (the remainder of each shuffle waits for the next epoch,
    unless the shard is smaller than one batch): a last short batch gives
    BatchNorm noisy statistics and a new input shape, for which oneDNN builds
    every kernel again (seconds per shape at 224 px).
    """

    def __init__(
        self,
        images: DecodedImages,
        labels: Sequence[int],
        batch_size: int,
        image_size: int,
        cluster: Cluster,
        seed: int,
    ):
        self.images = images
        self.labels = torch.as_tensor(labels, dtype=torch.long)
        self.batch_size = batch_size
        self.image_size = image_size
        self.device = cluster.device
        self.seed = seed
        self.rank = cluster.rank
        self.sampler = DistributedSampler(
            range(len(labels)), cluster.world_size, cluster.rank, shuffle=True, seed=seed
        )

    def __len__(self) -> int:
        return max(1, len(self.sampler) // self.batch_size)

    @property
    def images_per_epoch(self) -> int:
        return min(len(self.sampler), len(self) * self.batch_size)

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self.sampler.set_epoch(epoch)
        order = list(self.sampler)[: self.images_per_epoch]
        chunks = [order[start : start + self.batch_size] for start in range(0, len(order), self.batch_size)]
        raw = ((self.images.batch(chunk), self.labels[chunk]) for chunk in chunks)
        if not self.images.cached:
            raw = prefetched(raw)
        generator = torch.Generator().manual_seed(self.seed + 7919 * epoch + 104729 * self.rank)
        for pixels, labels in raw:
            pixels = pixels.to(self.device, non_blocking=True)
            yield augment(pixels, self.image_size, generator), labels.to(self.device, non_blocking=True)


class EvaluationBatches:
    """This rank's disjoint slice of an evaluation split (no padding, so sums over ranks are exact)."""

    def __init__(self, images: DecodedImages, labels: Sequence[int], batch_size: int, cluster: Cluster):
        self.images = images
        self.labels = torch.as_tensor(labels, dtype=torch.long)
        self.indices = list(range(cluster.rank, len(labels), cluster.world_size))
        self.batch_size = batch_size
        self.device = cluster.device

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        chunks = [
            self.indices[start : start + self.batch_size]
            for start in range(0, len(self.indices), self.batch_size)
        ]
        raw = ((self.images.batch(chunk), self.labels[chunk]) for chunk in chunks)
        if not self.images.cached:
            raw = prefetched(raw)
        for pixels, labels in raw:
            pixels = pixels.to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
            yield pixels, labels.to(self.device, non_blocking=True)


# ---------------------------------------------------------------- one job's data


@dataclass
class JobData:
    classes: list[str]
    train: TrainingBatches
    valid: EvaluationBatches
    test: EvaluationBatches | None
    train_folder: ImageFolder


def load_job_data(
    train_root: Path,
    valid_root: Path,
    test_root: Path | None,
    image_size: int,
    batch_size: int,
    cluster: Cluster,
    seed: int,
    cache_memory_mb: int,
) -> JobData:
    """Index the channels, decode what fits the budget into memory, and wrap them as batches."""
    train_folder = index_folder(train_root)
    classes = train_folder.classes
    valid_folder = index_folder(valid_root, classes)
    test_folder = index_folder(test_root, classes) if test_root is not None else None
    threads = cluster.cpus_per_process
    side = inference.resize_side(image_size)
    train_images = DecodedImages(
        "train",
        train_folder.paths,
        lambda path: decode_for_training(path, side),
        (3, side, side),
        torch.uint8,
        threads,
    )

    def evaluation_images(name: str, folder: ImageFolder) -> DecodedImages:
        return DecodedImages(
            name,
            folder.paths,
            lambda path: decode_for_evaluation(path, image_size),
            (3, image_size, image_size),
            torch.float32,
            threads,
        )

    valid_images = evaluation_images("valid", valid_folder)
    test_images = evaluation_images("test", test_folder) if test_folder is not None else None
    splits = [split for split in (train_images, valid_images, test_images) if split is not None]
    load_within_budget(splits, memory_budget_bytes(cache_memory_mb, cluster.processes_per_host))
    return JobData(
        classes,
        TrainingBatches(train_images, train_folder.labels, batch_size, image_size, cluster, seed),
        EvaluationBatches(valid_images, valid_folder.labels, batch_size, cluster),
        EvaluationBatches(test_images, test_folder.labels, batch_size, cluster)
        if test_images is not None and test_folder is not None
        else None,
        train_folder,
    )
