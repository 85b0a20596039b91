"""The ranker artefact folder: :func:`save` writes ``<directory>/<version>/`` atomically
(temporary folder + rename): ``manifest.json`` plus each head's model in the backend's native
format; :func:`load` restores it and refuses an artefact whose bytes no longer match its version.

The manifest stores no class path: an artefact loads with whatever module layout reads it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

from components.core.io import fsync_dir, fsync_file
from components.ranking.model import FORMAT_VERSION, HeadSpec, RankerModel
from components.ranking.params import RankerParams

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"


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
        _write_file(
            tmp / MANIFEST,
            json.dumps(model.manifest(), indent=2, sort_keys=True, allow_nan=False).encode(),
        )
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


def load(directory: Path, *, predict_threads: int = 1) -> RankerModel:
    """Restore a saved ranker, refusing an artefact whose content no longer matches its version."""
    directory = Path(directory)
    manifest = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
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
    files = {n: (directory / n).read_bytes() for s in heads.values() for n in s.files}
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
    )
    if model.version != manifest["version"]:
        raise ValueError(
            f"{directory}: content hash {model.version} does not match version {manifest['version']}"
        )
    logger.info("loaded ranker %s from %s", model.version, directory)
    return model
