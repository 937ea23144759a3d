"""tar.gz archives of directories (model.tar.gz, sourcedir.tar.gz), packed and unpacked safely."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path


def tar_directory(source: Path, destination: Path, compresslevel: int = 9) -> Path:
    """Write ``destination``, the gzipped tar of what is in ``source`` (entries relative to it,
    sorted). ``compresslevel`` is zlib's: 0 stores (still a valid gzip stream), 9 is tarfile's default."""
    with tarfile.open(destination, mode="w:gz", compresslevel=compresslevel) as archive:
        for path in sorted(source.iterdir()):
            archive.add(path, arcname=path.name)
    return destination


def extract_tar(archive: bytes | Path, destination: Path) -> None:
    """Unpack into ``destination``; the ``data`` filter refuses absolute paths, links out of the
    tree and device files. Raises tarfile.TarError or OSError for a bad archive."""
    destination.mkdir(parents=True, exist_ok=True)
    fileobj = io.BytesIO(archive) if isinstance(archive, bytes) else None
    name = None if isinstance(archive, bytes) else archive
    with tarfile.open(name, fileobj=fileobj) as tar:
        tar.extractall(destination, filter="data")
