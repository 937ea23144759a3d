"""A channel's S3 objects, and downloading a job's objects into its instances' input directories."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from local_aws.infra.s3 import download_object, run_transfers, split_s3_uri


@dataclass(frozen=True, order=True)
class S3Object:
    bucket: str
    key: str
    relative: str  # its path under the channel directory
    size: int | None = None  # from the listing; a manifest does not say


def channel_objects(s3: Any, source: dict[str, Any]) -> list[S3Object]:
    """Every object a channel (or checkpoint prefix) holds."""
    bucket, prefix = split_s3_uri(source["S3Uri"])
    if source.get("S3DataType", "S3Prefix") == "ManifestFile":
        manifest = json.loads(s3.get_object(Bucket=bucket, Key=prefix)["Body"].read())
        base_bucket, base_key = split_s3_uri(manifest[0]["prefix"])
        return [S3Object(base_bucket, base_key + rel, rel) for rel in manifest[1:]]
    objects: list[S3Object] = []
    directory = prefix.rsplit("/", 1)[0] + "/" if "/" in prefix else ""
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            key = item["Key"]
            if key.endswith("/"):
                continue  # "folder" placeholder objects
            if key == prefix:
                relative = key.rsplit("/", 1)[-1]
            elif prefix.endswith("/") or key[len(prefix)] == "/":
                relative = key[len(prefix) :].lstrip("/")
            else:  # a sibling that shares the prefix text, e.g. train2/ for prefix train
                relative = key[len(directory) :]
            objects.append(S3Object(bucket, key, relative, item.get("Size")))
    return objects


def download_objects(
    s3: Any, downloads: list[tuple[S3Object, Path]], cancelled: threading.Event | None = None
) -> int:
    """Each object into its directory, all in one bounded pool (every channel at once)."""
    return run_transfers(
        (
            lambda item=item, directory=directory: download_object(
                s3, item.bucket, item.key, directory / item.relative, item.size
            )
            for item, directory in downloads
        ),
        cancelled,
    )
