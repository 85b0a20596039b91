"""Continued boosting of a ranker on new rows: ``rounds`` more trees per head, starting from the
parent's margin of that head.

Each head gets ``rounds`` more trees fitted on the new rows, starting from the production model's
margin of that head (its trees plus the base margin of ``ranking.base_feature``), with the booster
parameters the artefact's manifest records and the learning rate the schedule would have reached
(or a fixed one). A head whose label has no variation in the new rows keeps its trees unchanged.
The standardisation statistics stay the parent's, so scores stay on the parent's scale and a
change of score is a change of the trees. LightGBM: the training booster starts from a Dataset
whose ``init_score`` is that margin and merges the parent's trees in front (the C API call
``LGBM_BoosterMerge`` that ``lgb.train(init_model=)`` makes itself; ``lgb.train`` cannot be used
because it replaces ``init_score`` by the init model's raw prediction, dropping the base margin).
XGBoost: ``xgb.train(xgb_model=parent)`` with the base margin as the DMatrix's ``base_margin``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import xgboost as xgb
from lightgbm.basic import _LIB, _safe_call

from components.ranking.boosting import Trainer, trainer
from components.ranking.labels import head_labels
from components.ranking.model import HeadSpec, RankerModel
from components.ranking.params import RankerParams, label_column

log = logging.getLogger(__name__)


def _learning_rates(
    parent_rounds: int, rounds: int, params: RankerParams, fixed: float | None
) -> list[float]:
    """The learning rates of the added rounds: ``fixed``, or the parent's schedule continued."""
    if fixed is not None:
        return [float(fixed)] * rounds
    return [params.learning_rate_at(parent_rounds + j) for j in range(rounds)]


def _continue_lightgbm(
    booster: Any,
    X: np.ndarray,
    y: np.ndarray,
    group_sizes: np.ndarray | None,
    init: np.ndarray,
    bp: Mapping[str, Any],
    rates: Sequence[float],
    feature_cols: Sequence[str],
) -> tuple[dict[str, bytes], int]:
    """The parent's trees plus up to ``len(rates)`` new ones fitted from ``init``; returns the
    model text and the total number of trees."""
    dtrain = lgb.Dataset(
        X,
        label=y,
        group=group_sizes,
        init_score=init,
        feature_name=list(feature_cols),
        params=dict(bp),
    )
    new = lgb.Booster(params=dict(bp), train_set=dtrain)
    # the parent's trees first, as lgb.train(init_model=...) does; scores start from ``init``
    _safe_call(_LIB.LGBM_BoosterMerge(new._handle, booster._handle))
    for lr in rates:
        new.reset_parameter({"learning_rate": lr})
        if new.update():  # no split left that meets the constraints: the round added no tree
            break
    text = new.model_to_string(num_iteration=-1)
    return {"text": text.encode("utf-8")}, int(new.current_iteration())


def _continue_xgboost(
    booster: Any,
    X: np.ndarray,
    y: np.ndarray,
    qid: np.ndarray | None,
    base: np.ndarray | None,
    bp: Mapping[str, Any],
    rates: Sequence[float],
    feature_cols: Sequence[str],
) -> tuple[dict[str, bytes], int]:
    """``xgb.train(xgb_model=parent)`` for ``len(rates)`` rounds from the base margin; returns
    the model and config bytes and the total number of rounds."""
    dtrain = xgb.DMatrix(
        X,
        label=y,
        qid=qid,
        base_margin=base,
        feature_names=list(feature_cols),
        nthread=int(bp["nthread"]),
    )
    new = xgb.train(
        dict(bp),
        dtrain,
        num_boost_round=len(rates),
        xgb_model=booster,
        callbacks=[xgb.callback.LearningRateScheduler(lambda i: float(rates[i]))],
        verbose_eval=False,
    )
    return {"ubj": bytes(new.save_raw("ubj")), "config": new.save_config().encode()}, int(
        new.num_boosted_rounds()
    )



def _skip_reason(spec: HeadSpec, col: str, y: np.ndarray, p: RankerParams) -> str:
    """Why a head keeps its trees on these labels ("" when it can be continued)."""
    known = ~np.isnan(y)
    if len(np.unique(y[known])) < 2:
        return f"label {col} has no variation in the new rows"
    if spec.kind == "lambdarank" and not known.all():
        return f"{col} has missing values"
    if spec.kind != "lambdarank" and int(known.sum()) < 2 * p.min_child_samples:
        return f"only {int(known.sum())} labelled rows (< 2 x min_child_samples)"
    return ""


def _continue_head(
    parent: RankerModel,
    impl: Trainer,
    name: str,
    X: np.ndarray,
    y: np.ndarray,
    codes: np.ndarray,
    margin: np.ndarray,
    rates: Sequence[float],
    p: RankerParams,
) -> tuple[dict[str, bytes], int]:
    """One head's continued model files and its total number of trees."""
    spec = parent.heads[name]
    known = ~np.isnan(y)
    bp = impl.booster_params(spec.kind, p)
    Xh, yh = X[known], y[known]
    if parent.backend == "lightgbm":
        sizes = np.bincount(codes[known]) if spec.kind == "lambdarank" else None
        sizes = sizes[sizes > 0] if sizes is not None else None
        out, total = _continue_lightgbm(
            parent.boosters[name], Xh, yh, sizes, margin[known], bp, rates, parent.feature_cols
        )
        return {f"{name}.txt": out["text"]}, total
    qid = codes[known] if spec.kind == "lambdarank" else None
    base = spec.offset(Xh, parent.feature_cols)
    out, total = _continue_xgboost(
        parent.boosters[name], Xh, yh, qid, base, bp, rates, parent.feature_cols
    )
    return {f"{name}.ubj": out["ubj"], f"{name}.config.json": out["config"]}, total


def continue_training(
    parent: RankerModel,
    parent_files: Mapping[str, bytes],
    rows: pd.DataFrame,
    X: np.ndarray,
    *,
    rounds: int,
    learning_rate: float | None = None,
    n_threads: int = 1,
    lineage: Mapping[str, Any] | None = None,
) -> RankerModel:
    """``parent`` with ``rounds`` more trees per head fitted on ``rows`` (labels of
    :data:`components.ranking.labels.LABEL_COLUMNS`, one group per ``request_id``, contiguous) and ``X``
    (``parent.feature_cols`` order). ``parent_files`` are the parent artefact's files (heads that
    are not continued keep theirs). Raises :class:`ValueError` when no head can learn anything.
    """
    if len(rows) != len(X) or X.shape[1] != len(parent.feature_cols):
        raise ValueError(f"rows ({len(rows)}) and X {X.shape} do not match the parent's features")
    impl = trainer(parent.backend)
    p = parent.params.replace(n_threads=int(n_threads))
    margins = parent.predict_heads(X, output="margin")  # trees + base margin, per head
    codes = pd.factorize(rows["request_id"].astype(str), sort=False)[0]
    if len(codes) and np.any(np.diff(codes) < 0):
        raise ValueError("rows must be sorted by request_id (contiguous groups)")
    files = {name: parent_files[name] for s in parent.heads.values() for name in s.files}
    heads: dict[str, HeadSpec] = {}
    added: dict[str, int] = {}
    skipped: dict[str, str] = {}
    for name, spec in parent.heads.items():
        heads[name] = spec
        col = label_column(name, parent.objective)
        y = head_labels(rows, col) if col in rows else np.full(len(rows), np.nan)
        reason = _skip_reason(spec, col, y, p)
        if reason:
            skipped[name] = reason
            log.info("online update: head %s keeps its trees: %s", name, reason)
            continue
        rates = _learning_rates(spec.best_iteration, rounds, p, learning_rate)
        new_files, total = _continue_head(parent, impl, name, X, y, codes, margins[name], rates, p)
        if total <= spec.best_iteration:
            skipped[name] = "boosting found no split that meets the constraints"
            continue
        files.update(new_files)
        heads[name] = replace(spec, best_iteration=total)
        added[name] = total - spec.best_iteration
    if not added:
        raise ValueError(f"no head could be continued: {skipped}")
    metrics = {
        "online_update": {
            **dict(lineage or {}),
            "parent_version": parent.version,
            "rows": len(rows),
            "groups": int(codes.max() + 1) if len(codes) else 0,
            "rounds_added": added,
            "skipped_heads": skipped,
            "learning_rate": learning_rate if learning_rate is not None else "parent schedule",
        }
    }
    return RankerModel(
        backend=parent.backend,
        objective=parent.objective,
        heads=heads,
        files=files,
        feature_cols=parent.feature_cols,
        feature_service=parent.feature_service,
        created_from=f"online-update:{parent.version}",
        training_metrics=metrics,
        params=parent.params,
        library_version=impl.library_version,
        blend=parent.blend,  # the parent's validated blend with the best source carries over
    )
