"""Atomic, durable file writes and the metrics-JSON writer: the one implementation every stage uses.

A reader (a DVC stage, a serving worker, the registry) must see either the old file or the whole
new one, and a crash must not leave a torn file under the final name. Each write therefore goes to
a hidden temporary file in the destination's folder (same file system, so the rename is atomic),
which is fsynced, moved into place with :func:`os.replace`, and followed by an fsync of the folder
so the rename itself survives a power cut. Written here rather than taken from a library because it
is a dozen lines over :mod:`os` and the writers (pyarrow, pandas, numpy) each want a path or handle.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def fsync_file(path: Path) -> None:
    """Flush a written file's data to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(directory: Path) -> None:
    """Flush a folder's entries (renames, new files) to disk; a no-op where the file system
    cannot open or fsync a directory."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems cannot fsync a directory
        pass
    finally:
        os.close(fd)


def temporary_sibling(path: Path) -> Path:
    """A hidden, unique name next to ``path`` (same folder, so a rename onto ``path`` is atomic)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


def atomic_write(path: Path, write: Callable[[Path], object]) -> Path:
    """Have ``write(tmp)`` fill a temporary file, then fsync it and move it onto ``path``.

    Creates the parent folder; on any failure the temporary file is removed and ``path`` is
    untouched. Returns ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(path)
    try:
        write(tmp)
        fsync_file(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)
    return path


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: Path, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def json_text(obj: Any, *, sort_keys: bool = True, indent: int | None = 2) -> str:
    """``obj`` as JSON text with a final newline; values JSON cannot hold are written as ``str``."""
    return json.dumps(obj, indent=indent, sort_keys=sort_keys, default=str) + "\n"


def atomic_write_json(path: Path, obj: Any, *, sort_keys: bool = True, indent: int | None = 2) -> Path:
    """Write ``obj`` as JSON (see :func:`json_text`) to ``path`` atomically."""
    return atomic_write_text(path, json_text(obj, sort_keys=sort_keys, indent=indent))


def write_metrics(path: Path, metrics: Mapping[str, Any], *, sort_keys: bool = True) -> Path:
    """Write a stage's metrics file (``metrics/*.json``, read by DVC and the gates) atomically:
    indented JSON, keys sorted unless ``sort_keys`` is false, a final newline."""
    return atomic_write_json(path, dict(metrics), sort_keys=sort_keys)


def atomic_write_parquet(path: Path, data: pa.Table | Any, **options: Any) -> Path:
    """Write an Arrow table (``pq.write_table``) or a pandas frame (``DataFrame.to_parquet``)
    to ``path`` atomically; ``options`` go to that writer unchanged."""
    if isinstance(data, pa.Table):
        return atomic_write(path, lambda tmp: pq.write_table(data, tmp, **options))
    return atomic_write(path, lambda tmp: data.to_parquet(tmp, **options))


def atomic_write_numpy(path: Path, array: np.ndarray) -> Path:
    """Write ``array`` in ``.npy`` format to ``path`` atomically (memory-mappable on load)."""

    def write(tmp: Path) -> None:
        with tmp.open("wb") as fh:  # a handle, so numpy does not append ".npy" to the name
            np.save(fh, array, allow_pickle=False)

    return atomic_write(path, write)


#: the folder, next to a log's files, that unreadable ones are moved into
QUARANTINE_DIR = "quarantine"


def quarantine_file(path: Path, reason: str, *, at_s: float | None = None) -> Path:
    """Move the unreadable file ``path`` into ``quarantine/`` next to it, with
    ``<name>.reason.json`` saying why and when, so that one bad file neither fails every later
    reader nor disappears; returns its new path."""
    import time

    folder = path.parent / QUARANTINE_DIR
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / path.name
    record = {"file": path.name, "reason": reason, "at_s": time.time() if at_s is None else at_s}
    atomic_write_json(folder / f"{path.name}.reason.json", record)
    os.replace(path, target)
    fsync_dir(path.parent)
    fsync_dir(folder)
    return target
