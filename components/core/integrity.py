"""SHA-256 integrity of artefacts that run code or native parsers when loaded (a pickle, a
compiled model's shared object): a hash is recorded when the artefact is written and checked
before anything reads it, so a truncated or tampered file is refused with an
:class:`IntegrityError` that names the file and both hashes instead of being executed.

A hash lives either in a record the writer already keeps (a manifest, ``meta.json``) or in a
sidecar ``<file>.sha256.json`` written atomically *after* the artefact: a crash between the
two leaves an artefact without a record, which is refused like a tampered one (fail closed).
The hash is computed over bytes already read into memory and those same bytes are what the
caller loads, so the file cannot change between the check and the load.

Hand-written over :mod:`hashlib` (a few lines; no library keeps this shape of sidecar).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from components.core.io import atomic_write_text

SIDECAR_SUFFIX = ".sha256.json"


class IntegrityError(ValueError):
    """An artefact's bytes do not match the SHA-256 recorded when it was written (or no hash
    was recorded): it is refused, never loaded."""


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    """SHA-256 of a file, streamed (for files mapped rather than read into memory)."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def file_sums(root: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """SHA-256 of every file under ``root`` by relative POSIX path, except the names in ``skip``."""
    root = Path(root)
    return {
        f.relative_to(root).as_posix(): sha256_file(f)
        for f in sorted(root.rglob("*"))
        if f.is_file() and f.relative_to(root).as_posix() not in skip
    }


def check_sums(root: Path, recorded: dict[str, str] | None, *, recorded_in: str, skip: tuple[str, ...] = ()) -> None:
    """Every file under ``root`` (but ``skip``) is listed in ``recorded`` with its SHA-256, and
    every listed file is there: :class:`IntegrityError` naming the first file that is not."""
    if not recorded:
        raise IntegrityError(f"{root}: no file hashes recorded in {recorded_in}: refused to load")
    actual = file_sums(root, skip)
    for name in sorted(set(recorded) | set(actual)):
        want, got = recorded.get(name), actual.get(name)
        if want != got:
            what = "is missing" if got is None else "is not listed" if want is None else f"has SHA-256 {got}, not the {want}"
            raise IntegrityError(f"{Path(root) / name} {what} (file hashes of {recorded_in}): refused to load")


def verified_bytes(path: Path, expected: str | None, *, recorded_in: str) -> bytes:
    """The bytes of ``path`` when their SHA-256 is ``expected``; :class:`IntegrityError`
    naming the file, the expected and the actual hash otherwise (also when ``expected`` is
    missing: an artefact without a recorded hash is not trusted)."""
    path = Path(path)
    data = path.read_bytes()
    actual = sha256_hex(data)
    if not expected:
        raise IntegrityError(
            f"{path}: no SHA-256 recorded in {recorded_in} (actual {actual}): refused to load"
        )
    if actual != expected:
        raise IntegrityError(
            f"{path}: SHA-256 {actual} does not match the {expected} recorded in {recorded_in} "
            f"({len(data)} bytes): refused to load"
        )
    return data


def sidecar_path(path: Path) -> Path:
    return Path(path).with_name(Path(path).name + SIDECAR_SUFFIX)


def write_sidecar(path: Path, data: bytes, extra: Mapping[str, Any] | None = None) -> Path:
    """Record ``data``'s SHA-256 (and ``extra`` facts about how it was made) next to ``path``,
    atomically. Call it after ``path`` itself is durably in place."""
    record = {"file": Path(path).name, "sha256": sha256_hex(data), "bytes": len(data), **(extra or {})}
    return atomic_write_text(sidecar_path(path), json.dumps(record, sort_keys=True) + "\n")


def read_sidecar(path: Path) -> dict[str, Any]:
    """The sidecar record of ``path``; empty when there is none or it is not readable JSON."""
    side = sidecar_path(path)
    try:
        record = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def verified_by_sidecar(path: Path, expect: Mapping[str, Any] | None = None) -> bytes:
    """The bytes of ``path`` checked against its sidecar; the sidecar's other fields must equal
    ``expect`` (e.g. the source the artefact was built from). :class:`IntegrityError` otherwise."""
    record = read_sidecar(path)
    for key, want in (expect or {}).items():
        if record and record.get(key) != want:
            raise IntegrityError(
                f"{path}: built from {key}={record.get(key)!r}, expected {want!r} "
                f"({sidecar_path(path).name}): refused to load"
            )
    return verified_bytes(path, record.get("sha256"), recorded_in=sidecar_path(path).name)
