"""Model data as SageMaker lays it out in /opt/ml/model: ModelDataUrl unpacked, code/ beside it."""

from __future__ import annotations

import tarfile
import tempfile
from pathlib import Path
from typing import Any

from local_aws.infra.archives import extract_tar
from local_aws.infra.s3 import split_s3_uri
from local_aws.services.base import Context
from local_aws.services.sagemaker.hosting.instance import StartupFailure


def _download(context: Context, uri: str, target: Path) -> None:
    try:
        bucket, key = split_s3_uri(uri)
    except ValueError as error:
        raise StartupFailure(f"local_aws reads model data from S3 only: {error}") from error
    try:
        context.client("s3").download_file(bucket, key, str(target))
    except Exception as error:
        raise StartupFailure(
            f"Failed to download model data(bucket: {bucket}, key: {key}). Please ensure that there is an "
            "object located at the URL and that the role passed to CreateModel has permissions to "
            f"download the object. ({error})"
        ) from error


def prepare_model_dir(context: Context, container: dict[str, Any], model_dir: Path) -> None:
    """Unpack the container's ``ModelDataUrl`` into ``model_dir`` as SageMaker does into /opt/ml/model.

    Handler code is ``code/`` inside the archive; when the archive has none and
    ``SAGEMAKER_SUBMIT_DIRECTORY`` names a source tarball in S3 (the framework containers'
    older convention), that tarball is unpacked into ``code/``.
    """
    model_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=model_dir.parent) as scratch:
        if model_data := container.get("ModelDataUrl"):
            archive = Path(scratch) / "model.tar.gz"
            _download(context, model_data, archive)
            try:
                extract_tar(archive, model_dir)
            except (tarfile.TarError, OSError) as error:
                raise StartupFailure(
                    f"Model data at {model_data} is not a valid tar.gz archive: {error}"
                ) from error
        environment = container.get("Environment") or {}
        program = environment.get("SAGEMAKER_PROGRAM") or "inference.py"
        submit_directory = environment.get("SAGEMAKER_SUBMIT_DIRECTORY", "")
        if submit_directory.startswith("s3://") and not (model_dir / "code" / program).exists():
            archive = Path(scratch) / "sourcedir.tar.gz"
            _download(context, submit_directory, archive)
            try:
                extract_tar(archive, model_dir / "code")
            except (tarfile.TarError, OSError) as error:
                raise StartupFailure(
                    f"Source at {submit_directory} is not a valid tar.gz archive: {error}"
                ) from error
