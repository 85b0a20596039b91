"""The registry's copies of ranker artefacts (``models/<version>/``): copied to a ``.tmp-*``
folder, each file fsynced, then renamed into place, so a crash leaves the whole artefact or none.
Stale ``.tmp-*`` folders are removed by the next write. Integrity (content hash = version) is
:func:`components.ranking.artefact.load`'s."""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from components.core.io import fsync_dir, fsync_file
from components.deploy.transitions import ArtefactError
from components.ranking.artefact import MANIFEST, load

if TYPE_CHECKING:
    from components.deploy.records import ModelRecord
    from components.ranking.model import RankerModel

logger = logging.getLogger(__name__)

MODELS_DIR = "models"
TMP_PREFIX = ".tmp-"


def copy_file(src: Path, dst: Path) -> None:
    """Copy one file and fsync it (a step of the artefact copy)."""
    with src.open("rb") as fi, dst.open("wb") as fo:
        shutil.copyfileobj(fi, fo, 1 << 20)
    fsync_file(dst)


def manifest_version(directory: Path) -> str:
    """The version an artefact folder's manifest names."""
    try:
        manifest = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
        return str(manifest["version"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ArtefactError(f"{directory}: not a ranker artefact ({exc})") from exc


def resolve_model_dir(model_dir: Path) -> Path:
    """``model_dir`` itself, or ``model_dir/<LATEST>`` for the train stage's output folder."""
    model_dir = Path(model_dir)
    latest = model_dir / "LATEST"
    if not (model_dir / MANIFEST).exists() and latest.exists():
        return model_dir / latest.read_text(encoding="utf-8").strip()
    return model_dir



def require_artefact(directory: Path, rec: ModelRecord) -> None:
    """Refuse a record whose registered copy is gone."""
    folder = directory / rec.artefact
    if not (folder / MANIFEST).exists():
        raise ArtefactError(f"{rec.version}: artefact {folder} is missing")


def clean_tmp(models_dir: Path) -> None:
    """Remove ``.tmp-*`` folders left by crashed copies (call holding the write lock:
    copies only run inside a write transaction, so none is in progress)."""
    for p in models_dir.glob(f"{TMP_PREFIX}*"):
        logger.info("removing stale temporary folder %s", p)
        shutil.rmtree(p, ignore_errors=True)


def store_artefact(models_dir: Path, src: Path, version: str) -> RankerModel:
    """Copy ``src`` to ``models_dir/<version>`` (temporary folder + fsync + rename) and load the
    copy, refusing one that does not load or is another version."""
    final = models_dir / version
    if final.exists():  # a complete copy left by a register that crashed before its commit
        aside = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}orphan-", dir=models_dir))
        os.rename(final, aside / version)
        shutil.rmtree(aside, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{version}-", dir=models_dir))
    try:
        os.chmod(tmp, 0o755)
        for f in sorted(src.iterdir()):
            if f.is_file():
                copy_file(f, tmp / f.name)
            else:
                logger.warning("artefact %s: %s is not a file, not copied", src, f.name)
        fsync_dir(tmp)
        try:
            model = load(tmp)
        except Exception as exc:
            raise ArtefactError(f"{src}: the artefact does not load: {exc}") from exc
        if model.version != version:
            raise ArtefactError(f"{src}: manifest says {version}, content is {model.version}")
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_dir(models_dir)
    return model
