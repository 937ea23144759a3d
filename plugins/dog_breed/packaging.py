"""``model_scripts/``, the container code the plugin ships: where it is, a deterministic
``sourcedir.tar.gz`` of it under a content-addressed S3 key, and its modules for the plugin.

Same sources -> same bytes -> same key, so a rerun uploads nothing and a training
job's ``sagemaker_submit_directory`` always names exactly the code it ran.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import io
import os
import sys
import tarfile
from pathlib import Path
from types import ModuleType

EXCLUDED_DIRS = {"__pycache__", ".pytest_cache", ".ipynb_checkpoints"}
EXCLUDED_SUFFIXES = (".pyc", ".pyo")
MODEL_SCRIPTS_ENV = "DOG_BREED_MODEL_SCRIPTS"


def default_model_scripts_dir() -> Path:
    """``model_scripts/`` beside ``plugins/``, unless DOG_BREED_MODEL_SCRIPTS says otherwise."""
    override = os.environ.get(MODEL_SCRIPTS_ENV)
    return Path(override) if override else Path(__file__).resolve().parents[2] / "model_scripts"


def model_script(name: str) -> ModuleType:
    """Import ``model_scripts/<name>.py``, the same file the pipeline ships to the containers.

    The container code is not a package of this plugin (it must import without it), and
    ``model_scripts/`` is not on the workers' ``sys.path``; the plugin already reads it from
    ``default_model_scripts_dir()`` to package it, so it loads the modules it shares from
    there too (``serving_contract``). One module object per name, as ``import`` would give.
    """
    if name in sys.modules:
        return sys.modules[name]
    path = default_model_scripts_dir() / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None or not path.is_file():
        raise ModuleNotFoundError(f"no {path} (set {MODEL_SCRIPTS_ENV} to the model_scripts directory)")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def source_files(src_dir: Path) -> list[Path]:
    files = []
    for path in sorted(src_dir.rglob("*")):
        relative = path.relative_to(src_dir)
        if any(part in EXCLUDED_DIRS for part in relative.parts) or path.suffix in EXCLUDED_SUFFIXES:
            continue
        if path.is_file():
            files.append(path)
    if not files:
        raise FileNotFoundError(f"no source files in {src_dir}")
    return files


def build_tarball(src_dir: Path) -> bytes:
    """tar.gz with sorted entries, zeroed times and owners, normalised modes."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in source_files(src_dir):
            data = path.read_bytes()
            info = tarfile.TarInfo(path.relative_to(src_dir).as_posix())
            info.size = len(data)
            info.mtime = 0
            info.mode = 0o755 if os.access(path, os.X_OK) else 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    compressed = io.BytesIO()
    with gzip.GzipFile(fileobj=compressed, mode="wb", mtime=0, filename="") as gz:
        gz.write(raw.getvalue())
    return compressed.getvalue()


def content_key(prefix: str, payload: bytes) -> str:
    """``<prefix>/code/<sha256[:16]>/sourcedir.tar.gz``."""
    digest = hashlib.sha256(payload).hexdigest()[:16]
    head = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
    return f"{head}code/{digest}/sourcedir.tar.gz"


def upload_if_absent(s3_client, bucket: str, key: str, payload: bytes) -> bool:
    """Put the object unless it already exists; True when it uploaded."""
    from botocore.exceptions import ClientError

    try:
        s3_client.head_object(Bucket=bucket, Key=key)
        return False
    except ClientError as error:
        if error.response["Error"]["Code"] not in ("404", "NoSuchKey", "NotFound"):
            raise
    s3_client.put_object(Bucket=bucket, Key=key, Body=payload, ContentType="application/gzip")
    return True
