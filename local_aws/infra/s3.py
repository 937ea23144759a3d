"""S3 URIs and directory uploads, for services that move files between S3 and local disk."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> (bucket, key); ValueError for anything else."""
    if not isinstance(uri, str) or not uri.startswith("s3://"):
        raise ValueError(f"Not an S3 URI: {uri!r}")
    bucket, _, key = uri[5:].partition("/")
    if not bucket:
        raise ValueError(f"Not an S3 URI: {uri!r}")
    return bucket, key


def upload_directory(s3: Any, source: Path, uri: str) -> int:
    """Upload every file under ``source`` to the prefix ``uri``, keeping relative paths; the count."""
    bucket, prefix = split_s3_uri(uri)
    prefix = prefix.rstrip("/")
    count = 0
    for path in sorted(p for p in Path(source).rglob("*") if p.is_file()):
        key = f"{prefix}/{path.relative_to(source).as_posix()}".lstrip("/")
        s3.upload_file(str(path), bucket, key)
        count += 1
    return count
