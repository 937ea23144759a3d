"""S3 URIs and transfers between S3 and local disk, for services that move files (and dev tools).

Many small objects (a dataset of thumbnails) cost one request each, so transfers run in one
bounded pool; an object up to ``SINGLE_REQUEST_BYTES`` goes in a single GetObject/PutObject,
a bigger one through s3transfer (``download_file``/``upload_file``: ranged GETs or a multipart
upload, in parallel), whose HeadObject and per-call set-up would double the cost of a small one.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

# s3transfer's own multipart threshold.
SINGLE_REQUEST_BYTES = 8 * 1024 * 1024
# Requests in flight at once: as many as one botocore client keeps connections (max_pool_connections);
# 4, 10 and 16 measured the same for 250 small objects here, where the server shares the GIL.
MAX_CONCURRENT_TRANSFERS = 10


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> (bucket, key); ValueError for anything else."""
    if not isinstance(uri, str) or not uri.startswith("s3://"):
        raise ValueError(f"Not an S3 URI: {uri!r}")
    bucket, _, key = uri[5:].partition("/")
    if not bucket:
        raise ValueError(f"Not an S3 URI: {uri!r}")
    return bucket, key


def run_transfers(transfers: Iterable[Callable[[], None]], cancelled: threading.Event | None = None) -> int:
    """Run every transfer in one bounded pool; the count run. The first error is raised once the
    transfers already running end, and none of the rest starts; so does ``cancelled`` being set."""
    calls = list(transfers)
    if not calls:
        return 0
    stop = cancelled or threading.Event()

    def run(call: Callable[[], None]) -> None:
        if not stop.is_set():
            call()

    with ThreadPoolExecutor(max_workers=min(MAX_CONCURRENT_TRANSFERS, len(calls))) as pool:
        futures = [pool.submit(run, call) for call in calls]
        done, pending = wait(futures, return_when=FIRST_EXCEPTION)
        for future in pending:
            future.cancel()
        for future in done:
            future.result()  # raises the first failure
    return len(calls)


def download_object(s3: Any, bucket: str, key: str, path: Path, size: int | None = None) -> None:
    """One object to ``path`` (parents created); ``size`` from the listing, when known."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if size is not None and size > SINGLE_REQUEST_BYTES:
        s3.download_file(bucket, key, str(path))
        return
    body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    with path.open("wb") as file:
        shutil.copyfileobj(body, file)


def upload_file(s3: Any, path: Path, bucket: str, key: str) -> None:
    if path.stat().st_size > SINGLE_REQUEST_BYTES:
        s3.upload_file(str(path), bucket, key)
        return
    with path.open("rb") as file:
        s3.put_object(Bucket=bucket, Key=key, Body=file)


def upload_directory(s3: Any, source: Path, uri: str) -> int:
    """Upload every file under ``source`` to the prefix ``uri``, keeping relative paths; the count."""
    bucket, prefix = split_s3_uri(uri)
    prefix = prefix.rstrip("/")
    uploads = []
    for path in sorted(p for p in Path(source).rglob("*") if p.is_file()):
        key = f"{prefix}/{path.relative_to(source).as_posix()}".lstrip("/")
        uploads.append(lambda path=path, key=key: upload_file(s3, path, bucket, key))
    return run_transfers(uploads)
