"""tar.gz archives of directories (model.tar.gz, sourcedir.tar.gz), packed and unpacked safely."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path


def tar_directory(source: Path) -> bytes:
    """The gzipped tar of what is in ``source`` (entries relative to it, sorted)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for path in sorted(source.iterdir()):
            archive.add(path, arcname=path.name)
    return buffer.getvalue()


def extract_tar(archive: bytes | Path, destination: Path) -> None:
    """Unpack into ``destination``; the ``data`` filter refuses absolute paths, links out of the
    tree and device files. Raises tarfile.TarError or OSError for a bad archive."""
    destination.mkdir(parents=True, exist_ok=True)
    fileobj = io.BytesIO(archive) if isinstance(archive, bytes) else None
    name = None if isinstance(archive, bytes) else archive
    with tarfile.open(name, fileobj=fileobj) as tar:
        tar.extractall(destination, filter="data")
