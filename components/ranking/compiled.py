"""The compiled-model cache: one LLVM object per LightGBM head (lleaves) under
``<cache_dir>/<version>/<head>.so``, shared by every serving worker of a host.

lleaves loads a cached object by linking its bytes into the process, without any check, and
writes a new one with a plain ``write_bytes``; so whoever can write the folder runs code in
every worker, and a kill during the write leaves a truncated object that crashes the next
load. Here instead:

* an object is published atomically (temporary file, fsync, rename, folder fsync) and only
  then its sidecar ``<head>.so.sha256.json`` (:mod:`components.core.integrity`), which also
  records the SHA-256 of the model text it was compiled from and the compiler's version;
* before a cached object is used, its bytes are checked against the sidecar; a missing,
  truncated or tampered object (or one built from other model text) is refused with an
  :class:`~components.core.integrity.IntegrityError` naming the file and both hashes (logged),
  and the head is compiled again from the model's own, already verified, text;
* lleaves reads the model text and the object from a private temporary folder holding the
  verified bytes, never from the shared folder, so nothing can swap them after the check.

A file lock keeps concurrent processes from compiling the same head twice.
"""

from __future__ import annotations

import fcntl
import logging
import tempfile
from pathlib import Path
from typing import Any

import lleaves

from components.core.integrity import IntegrityError, sha256_hex, verified_by_sidecar, write_sidecar
from components.core.io import atomic_write_bytes

logger = logging.getLogger(__name__)


def provenance(model_text: bytes) -> dict[str, Any]:
    """What a cached object must have been built from to be reused."""
    from importlib.metadata import version

    return {"source_sha256": sha256_hex(model_text), "lleaves": version("lleaves")}


def cached_object(so: Path, model_text: bytes) -> bytes | None:
    """The cached object's verified bytes, or None (logged) when it is absent or refused."""
    if not so.exists():
        return None
    try:
        return verified_by_sidecar(so, provenance(model_text))
    except (IntegrityError, OSError) as exc:
        logger.error("compiled model cache: %s; compiling it again", exc)
        return None


def compile_head(folder: Path, name: str, model_text: bytes) -> Any:
    """A compiled lleaves model of one head (raw margins) from ``model_text``, reusing the
    verified cached object ``folder/<name>.so`` or compiling and publishing a new one."""
    folder.mkdir(parents=True, exist_ok=True)
    so = folder / f"{name}.so"
    with open(folder / ".lock", "w") as lock, tempfile.TemporaryDirectory(prefix="lleaves-") as private:
        fcntl.flock(lock, fcntl.LOCK_EX)
        text_file, obj_file = Path(private) / f"{name}.txt", Path(private) / f"{name}.so"
        text_file.write_bytes(model_text)
        blob = cached_object(so, model_text)
        if blob is not None:
            obj_file.write_bytes(blob)
        fast = lleaves.Model(model_file=str(text_file))
        fast.compile(cache=str(obj_file), raw_score=True)  # loads obj_file, or writes it
        if blob is None and obj_file.exists():
            fresh = obj_file.read_bytes()
            atomic_write_bytes(so, fresh)
            write_sidecar(so, fresh, provenance(model_text))
            logger.info("compiled model cache: wrote %s (%d bytes)", so, len(fresh))
    return fast
