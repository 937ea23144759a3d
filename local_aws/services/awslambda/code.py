"""Deployment packages: checked as Lambda checks them, stored once, unpacked once per revision."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import uuid
import zipfile
from pathlib import Path
from typing import Any

from local_aws.services.awslambda.api import invalid_parameter
from local_aws.services.awslambda.state import LATEST, CodeConfig, LambdaState

MAX_UNZIPPED_BYTES = 262144000


def code_sha256(package: bytes) -> str:
    return base64.b64encode(hashlib.sha256(package).digest()).decode()


def check_zip(package: bytes) -> None:
    """Reject what Lambda rejects synchronously: not a zip, too big unzipped, unsafe paths."""
    try:
        with zipfile.ZipFile(io.BytesIO(package)) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, ValueError) as error:
        raise invalid_parameter(
            "Could not unzip uploaded file. Please check your file, then try to upload again."
        ) from error
    if sum(member.file_size for member in members) > MAX_UNZIPPED_BYTES:
        raise invalid_parameter(f"Unzipped size must be smaller than {MAX_UNZIPPED_BYTES} bytes")
    for member in members:
        parts = Path(member.filename).parts
        if member.filename.startswith("/") or ".." in parts:
            raise invalid_parameter(f"Could not unzip uploaded file: unsafe path {member.filename!r}.")


def store_package(state: LambdaState, function_dir: Path, code: dict[str, Any]) -> tuple[Path, str, int]:
    """Store the zip from ``ZipFile`` or ``S3Bucket``/``S3Key``; (path, CodeSha256, size)."""
    if code.get("ImageUri"):
        raise invalid_parameter("local_aws runs Zip packages only, not container images.")
    if code.get("ZipFile"):
        package = code["ZipFile"]  # bytes: the protocol layer decoded the base64
    elif code.get("S3Bucket") and code.get("S3Key"):
        package = _s3_package(state, code["S3Bucket"], code["S3Key"], code.get("S3ObjectVersion"))
    else:
        raise invalid_parameter("Please provide a source for function code: ZipFile or S3Bucket and S3Key.")
    check_zip(package)
    digest = hashlib.sha256(package).hexdigest()
    path = function_dir / "packages" / f"{digest}.zip"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        staging = path.with_name(f".{digest}.{uuid.uuid4().hex}")
        staging.write_bytes(package)
        staging.rename(path)
    return path, code_sha256(package), len(package)


def _s3_package(state: LambdaState, bucket: str, key: str, version: str | None) -> bytes:
    s3 = state.client("s3")
    try:
        extra = {"VersionId": version} if version else {}
        return s3.get_object(Bucket=bucket, Key=key, **extra)["Body"].read()
    except s3.exceptions.ClientError as error:
        detail = error.response.get("Error", {})
        raise invalid_parameter(
            f"Error occurred while GetObject. S3 Error Code: {detail.get('Code')}. S3 Error Message: "
            f"{detail.get('Message')}"
        ) from error


def latest_dir(function_dir: Path, config: CodeConfig) -> Path:
    """Where a $LATEST revision's code is unpacked: by content, so unchanged code is reused."""
    return function_dir / LATEST / base64.b64decode(config.code_sha256).hex()


def unpack(package: Path, destination: Path) -> None:
    """Unzip once into ``destination`` (content-addressed, so an existing one is complete)."""
    if destination.exists():
        return
    staging = destination.with_name(f".{destination.name}.{uuid.uuid4().hex}")
    with zipfile.ZipFile(package) as archive:
        staging.mkdir(parents=True)  # an empty zip is still a (useless) package
        archive.extractall(staging)
        for member in archive.infolist():  # keep the executable bits the zip carries
            mode = (member.external_attr >> 16) & 0o777
            if mode and not member.is_dir():
                os.chmod(staging / member.filename, mode | 0o400)
    staging.rename(destination)
