"""A channel's S3 objects, and downloading them into an instance's input directory."""

from __future__ import annotations

import json
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from local_aws.infra.s3 import split_s3_uri


def channel_objects(s3: Any, source: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(bucket, key, path relative to the channel dir) for every object a channel holds."""
    bucket, prefix = split_s3_uri(source["S3Uri"])
    if source.get("S3DataType", "S3Prefix") == "ManifestFile":
        manifest = json.loads(s3.get_object(Bucket=bucket, Key=prefix)["Body"].read())
        base_bucket, base_key = split_s3_uri(manifest[0]["prefix"])
        return [(base_bucket, base_key + rel, rel) for rel in manifest[1:]]
    objects: list[tuple[str, str, str]] = []
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
            objects.append((bucket, key, relative))
    return objects


def download_objects(s3: Any, objects: Iterable[tuple[str, str, str]], target: Path) -> int:
    def fetch(item: tuple[str, str, str]) -> None:
        bucket, key, relative = item
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(bucket, key, str(path))

    items = list(objects)
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(fetch, items))
    return len(items)
