"""The data stages composed into a throw-away root: a drop generated or imported, ingested and
preprocessed, for evaluations of a named data set or of a split brought as files.

The project's own ``data/`` is never touched: the key only pseudonymises ids inside the root,
and "now" (far in the future) only bounds timestamps.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from components.core.catalog import DataPaths
from components.data import datagen, realdata
from components.data.ingest import run as ingest_run
from components.data.preprocess import run as preprocess_run

#: "now" of a throw-away ingestion: only bounds timestamps
FAR_FUTURE = pd.Timestamp("2100-01-01", tz="UTC")


def ingest_drop(params: Mapping[str, Any], dataset: str, drop: Path, root: Path, key: bytes) -> DataPaths:
    """Ingest and preprocess ``drop`` into ``root`` as data set ``dataset``."""
    local = {**params, "data": {"source": dataset}}
    paths = DataPaths(root)
    ingest_run(dict(local), drop, paths, now=FAR_FUTURE, key=key)
    preprocess_run(dict(local), paths)
    return paths


def prepare_data(params: Mapping[str, Any], dataset: str, root: Path) -> DataPaths:
    """One named data set ingested and preprocessed under ``root`` (its drop generated or
    imported under ``root`` when the project has none)."""
    drop = DataPaths().of("drop", dataset=dataset)
    if not (drop / "events").exists():
        drop = root / "drop"
        if dataset == "synthetic":
            datagen.run(params, drop)
        else:
            realdata.run(dataset, realdata.default_src(dataset), drop)
    return ingest_drop(params, dataset, drop, root, key=b"candidate-evaluation")
