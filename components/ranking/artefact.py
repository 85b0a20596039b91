"""The ranker artefact folder: :func:`save` writes ``<directory>/<version>/`` atomically
(temporary folder + rename): ``manifest.json`` plus each head's model in the backend's native
format, and ``sha256sums.json`` (each file's SHA-256); :func:`load` checks every file against
those sums before any is parsed (a changed file is refused by name, with both hashes), then
refuses an artefact whose content no longer matches its version (the content hash, which the
registry records). Folders saved before the sums existed are checked by the version alone.

The manifest stores no class path: an artefact loads with whatever module layout reads it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from components.core.integrity import IntegrityError, sha256_hex, verified_bytes
from components.core.io import fsync_dir, fsync_file
from components.ranking.blend import BlendSpec
from components.ranking.model import FORMAT_VERSION, HeadSpec, RankerModel
from components.ranking.params import RankerParams

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
SUMS = "sha256sums.json"


def _write_file(path: Path, data: bytes) -> None:
    """Write one file of an artefact folder being built, durably (the folder is renamed later)."""
    path.write_bytes(data)
    fsync_file(path)


def save(model: RankerModel, directory: Path) -> Path:
    """Write the artefact to ``directory/<version>/`` atomically; returns that folder.

    Files go to a temporary folder next to it, which is renamed into place only when complete,
    so a crash leaves either the whole artefact or none (at worst a ``.tmp-*`` folder). Saving
    a version that already exists is a no-op (same version = same content).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / model.version
    if (final / MANIFEST).exists():
        logger.info("ranker artefact %s already exists: not rewritten", final)
        return final
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{model.version}-", dir=directory))
    try:
        for name, data in model._files.items():
            _write_file(tmp / name, data)
        manifest = json.dumps(model.manifest(), indent=2, sort_keys=True, allow_nan=False).encode()
        _write_file(tmp / MANIFEST, manifest)
        sums = {name: sha256_hex(data) for name, data in {**model._files, MANIFEST: manifest}.items()}
        _write_file(tmp / SUMS, json.dumps(sums, indent=2, sort_keys=True).encode())
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / MANIFEST).exists():  # not a concurrent save of the same version
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_dir(directory)
    logger.info("saved ranker artefact %s", final)
    return final


def _verified_reader(directory: Path) -> Callable[[str], bytes]:
    """Reads a file of the folder, checked against ``sha256sums.json`` when the folder has one
    (:class:`IntegrityError` for a changed file or one the sums do not list)."""
    sums_path = directory / SUMS
    if not sums_path.exists():
        return lambda name: (directory / name).read_bytes()
    sums = json.loads(sums_path.read_text(encoding="utf-8"))

    def read(name: str) -> bytes:
        if name not in sums:
            raise IntegrityError(f"{directory / name}: not listed in {sums_path}: refused to load")
        return verified_bytes(directory / name, sums[name], recorded_in=str(sums_path))

    return read


def load(directory: Path, *, predict_threads: int = 1) -> RankerModel:
    """Restore a saved ranker, refusing an artefact whose content no longer matches its version."""
    directory = Path(directory)
    read = _verified_reader(directory)
    manifest = json.loads(read(MANIFEST).decode("utf-8"))
    if manifest.get("kind") != "ranker" or manifest.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{directory}: not a ranker artefact of format {FORMAT_VERSION}")
    heads = {
        h: HeadSpec(
            name=h,
            kind=s["kind"],
            weight=float(s["weight"]),
            mean=float(s["mean"]),
            std=float(s["std"]),
            best_iteration=int(s["best_iteration"]),
            files=tuple(s["files"]),
            base_feature=str(s.get("base_feature", "")),
            base_weight=float(s.get("base_weight", 0.0)),
            base_fill=float(s.get("base_fill", 0.0)),
        )
        for h, s in manifest["heads"].items()
    }
    files = {n: read(n) for s in heads.values() for n in s.files}
    model = RankerModel(
        backend=manifest["backend"],
        objective=manifest["objective"],
        heads=heads,
        files=files,
        feature_cols=manifest["feature_cols"],
        feature_service=manifest["feature_service"],
        created_from=manifest["created_from"],
        training_metrics=manifest["training_metrics"],
        params=RankerParams(**manifest["params"]),
        library_version=manifest["library_version"],
        predict_threads=predict_threads,
        blend=BlendSpec(**manifest["blend"]) if manifest.get("blend") else None,
    )
    if model.version != manifest["version"]:
        raise IntegrityError(
            f"{directory}: content hash {model.version} does not match version {manifest['version']} "
            "(changed after it was saved, or saved by code that hashed models differently): refused to load"
        )
    logger.info("loaded ranker %s from %s", model.version, directory)
    return model
