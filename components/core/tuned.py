"""The tuned values: the hyper-parameters the ``tune`` stage chose (``data/tuning/<study>.json``,
:mod:`components.tuning.stage`) laid over a stage's params.

The production stages (embeddings, candidates, ranking, export) and the evaluation read them the
same way, so the served model is built with the values the evaluation measured. Here, not in
:mod:`components.tuning`, because the production stages must not import the tuner (Optuna, the
evaluation protocols) to read a JSON file.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from components.core.catalog import DataPaths
from components.core.config import Params, deep_merge

log = logging.getLogger(__name__)

#: the study of the pipeline's own data (the DVC ``tune`` stage); a real data set's is its name
PIPELINE_STUDY = "pipeline"


def tuned_params(params: Mapping[str, Any], paths: DataPaths, study: str = PIPELINE_STUDY) -> dict[str, Any]:
    """``params`` with the chosen values of ``data/tuning/<study>.json`` laid over them (when
    ``tuning.apply`` and the file exists; otherwise as they are)."""
    path = paths.of("tuning_chosen", study=study)
    if not Params.of(params).tuning.apply or not path.exists():
        return dict(params)
    chosen = json.loads(path.read_text())
    log.info("tuned values of %s: %s", path, chosen["overrides"])
    return deep_merge(params, chosen["overrides"])
