"""Check the dogImages layout in S3 before paying for any training.

Layout: ``<root>/{train,valid,test}/NNN.Breed_Name/<image>``; every split must hold
the same class folders, and every class folder at least one image.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from dog_breed.s3uri import split_s3_uri

SPLITS = ("train", "valid", "test")
CLASS_FOLDER = re.compile(r"^(\d{3})\.(\S+)$")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


class DatasetError(ValueError):
    """The dataset in S3 does not have the layout training needs."""


@dataclass(frozen=True)
class DatasetSummary:
    classes: tuple[str, ...]
    counts: dict[str, dict[str, int]] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "num_classes": len(self.classes),
            "classes": list(self.classes),
            "images_per_split": {split: sum(per_class.values()) for split, per_class in self.counts.items()},
        }


def count_images(keys: Iterable[str], root_prefix: str) -> dict[str, Counter]:
    """Images per split and class folder from object keys under ``root_prefix``."""
    counts: dict[str, Counter] = {split: Counter() for split in SPLITS}
    head = f"{root_prefix.strip('/')}/" if root_prefix.strip("/") else ""
    for key in keys:
        if not key.startswith(head) or not key.lower().endswith(IMAGE_SUFFIXES):
            continue
        parts = key[len(head) :].split("/")
        if len(parts) == 3 and parts[0] in counts and CLASS_FOLDER.match(parts[1]):
            counts[parts[0]][parts[1]] += 1
    return counts


def summarize(counts: dict[str, Counter], dataset_uri: str) -> DatasetSummary:
    """Validate per-split counts; raise DatasetError listing every problem."""
    problems = []
    for split in SPLITS:
        if not counts.get(split):
            problems.append(f"{dataset_uri}/{split}/ has no NNN.Breed_Name/<image> objects")
    present = [split for split in SPLITS if counts.get(split)]
    if present:
        reference = set(counts[present[0]])
        for split in present[1:]:
            missing, extra = reference - set(counts[split]), set(counts[split]) - reference
            if missing or extra:
                problems.append(
                    f"class folders of {split} differ from {present[0]}: "
                    f"missing {sorted(missing)[:5]}, extra {sorted(extra)[:5]}"
                )
    if problems:
        raise DatasetError("; ".join(problems))
    classes = tuple(sorted(counts[SPLITS[0]]))
    return DatasetSummary(
        classes=classes, counts={split: dict(sorted(counts[split].items())) for split in SPLITS}
    )


def list_keys(s3_client, dataset_uri: str, split: str | None = None) -> list[str]:
    bucket, prefix = split_s3_uri(dataset_uri)
    scoped = "/".join(part for part in (prefix, split) if part)
    paginator = s3_client.get_paginator("list_objects_v2")
    keys: list[str] = []
    for page in paginator.paginate(Bucket=bucket, Prefix=f"{scoped}/" if scoped else ""):
        keys.extend(item["Key"] for item in page.get("Contents", []))
    return keys


def check_dataset(s3_client, dataset_uri: str) -> DatasetSummary:
    """ListObjectsV2 over the dataset root, then validate the layout."""
    _, prefix = split_s3_uri(dataset_uri)
    return summarize(count_images(list_keys(s3_client, dataset_uri), prefix), dataset_uri)
