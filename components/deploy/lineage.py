"""What a registration records about where a model came from: the data version (from
``dvc.lock``) and the train / evaluate stages' metrics of the pipeline's latest ranker."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from components.core.catalog import DataPaths, artefact
from components.deploy.artefacts import MANIFEST, resolve_model_dir

#: outputs of the data stages whose ``dvc.lock`` md5s make up :func:`data_version`
DATA_OUTPUTS: tuple[str, ...] = tuple(artefact(n).path for n in ("raw", "interim", "features"))
UNKNOWN = "unknown"


def data_version_from_lock(lock: Mapping[str, Any]) -> str:
    """A short stable id of the data a model was trained on: the ``dvc.lock`` md5s of
    :data:`DATA_OUTPUTS` (a producing stage's ``outs`` preferred over a consumer's ``deps``)."""
    found: dict[str, dict[str, set[str]]] = {"outs": {}, "deps": {}}
    for stage in (lock.get("stages") or {}).values():
        if not isinstance(stage, Mapping):
            continue
        for kind, seen in found.items():
            for entry in stage.get(kind) or []:
                path = str(entry.get("path", "")).rstrip("/")
                if path in DATA_OUTPUTS and entry.get("md5"):
                    seen.setdefault(path, set()).add(str(entry["md5"]))
    parts = []
    for path in DATA_OUTPUTS:
        md5s = found["outs"].get(path) or found["deps"].get(path)
        if md5s:
            parts.append(f"{path}={'+'.join(sorted(md5s))}")
    if not parts:
        return UNKNOWN
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:12]


def data_version(root: Path) -> str:
    """:func:`data_version_from_lock` of ``root/dvc.lock`` ("unknown" without one)."""
    lock = DataPaths(Path(root)).of("dvc_lock")
    if not lock.exists():
        return UNKNOWN
    with lock.open(encoding="utf-8") as fh:
        return data_version_from_lock(yaml.safe_load(fh) or {})



def training_metrics(model_dir: Path) -> dict[str, Any]:
    """The artefact's combined validation metrics (the default metrics of a registration)."""
    manifest = json.loads((resolve_model_dir(model_dir) / MANIFEST).read_text(encoding="utf-8"))
    return {"training": (manifest.get("training_metrics") or {}).get("combined") or {}}


def pipeline_metrics(paths: DataPaths) -> dict[str, Any]:
    """What the train and evaluate stages measured for the pipeline's latest ranker: the end
    of its training data (``trained_until``, read by the offline gate's drift check: the end of
    the last cut's label window, whose events labelled its rows; the last cut for metrics
    written before ``labels_until``) and the offline evaluation of the whole pipeline."""

    def read(name: str) -> dict[str, Any]:
        path = paths.of(name)
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}

    ranking, evaluation = read("metrics_ranking"), read("metrics_evaluate")
    out: dict[str, Any] = {}
    if ranking.get("labels_until") or ranking.get("cuts"):
        out["trained_until"] = ranking.get("labels_until") or max(ranking["cuts"])
    if (evaluation.get("models") or {}).get("pipeline"):
        out["evaluation"] = evaluation["models"]["pipeline"]
    return out

