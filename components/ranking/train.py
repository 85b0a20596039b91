"""Training the multi-head ranker: a time-ordered validation split, one booster per weighted head,
the standardisation statistics, the validation metrics, and the :class:`RankerModel` they make.

A head whose label has no variation in the training split is skipped with a warning and its
weight dropped; a head with weight 0 is not trained at all. Early stopping watches the
validation split (:mod:`components.ranking.split`); the artefact keeps the best iteration only.
Features are cast to float32 for training and scoring alike (both libraries bin / split in
float32 precision anyway).

Only the orchestration (splits, heads, standardisation) is written here; the boosting is
:mod:`components.ranking.boosting`'s, the metrics' arithmetic scikit-learn's and
:mod:`components.evaluation.metrics`'.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import log_loss, roc_auc_score

from components.evaluation.metrics import rank_by_score, ranking_metrics
from components.ranking.blend import choose_blend
from components.ranking.boosting import Fitted, HeadData, Trainer, trainer
from components.ranking.labels import head_labels
from components.ranking.model import HeadSpec, RankerModel, sigmoid, weighted_sum
from components.ranking.params import (
    HEADS,
    MAX_RELEVANCE,
    HeadKind,
    RankerParams,
    head_kind,
    label_column,
)
from components.ranking.split import GroupOrder, order_groups, time_repr

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- checks and metrics


def _check_frame(
    frame: pd.DataFrame, feature_cols: Sequence[str], label_cols: Sequence[str]
) -> None:
    if len(frame) == 0:
        raise ValueError("empty training frame")
    if not feature_cols:
        raise ValueError("no feature columns")
    dupes = sorted({c for c in feature_cols if list(feature_cols).count(c) > 1})
    if dupes:
        raise ValueError(f"duplicate feature columns: {dupes}")
    missing = [c for c in [*feature_cols, *label_cols] if c not in frame.columns]
    if missing:
        raise KeyError(f"frame is missing columns: {missing}")
    bad = [
        c
        for c in feature_cols
        if not (pd.api.types.is_numeric_dtype(frame[c]) or pd.api.types.is_bool_dtype(frame[c]))
    ]
    if bad:
        raise TypeError(f"feature columns must be numeric: {bad}")


def _check_labels(head: str, kind: HeadKind, col: str, y: np.ndarray) -> None:
    known = y[~np.isnan(y)]
    if kind == "lambdarank":
        if len(known) != len(y):
            raise ValueError(f"{col}: relevance must not be missing")
        if np.any(known != np.round(known)) or known.min() < 0 or known.max() > MAX_RELEVANCE:
            raise ValueError(f"{col}: relevance must be integer grades in 0..{MAX_RELEVANCE}")
    elif kind == "binary":
        if not np.isin(known, (0.0, 1.0)).all():
            raise ValueError(f"{col}: head {head!r} needs 0/1 labels")
    elif not np.isfinite(known).all():
        raise ValueError(f"{col}: head {head!r} has infinite labels")


def _sorted_float(frame: pd.DataFrame, col: str, order: np.ndarray) -> np.ndarray:
    return frame[col].to_numpy(dtype="float64", na_value=np.nan)[order]


def _feature_matrix(
    frame: pd.DataFrame, feature_cols: Sequence[str], order: np.ndarray
) -> np.ndarray:
    """Sorted float32 matrix built column by column (one column of temporaries at a time)."""
    X = np.empty((len(order), len(feature_cols)), dtype=np.float32)
    for j, c in enumerate(feature_cols):
        X[:, j] = frame[c].to_numpy(dtype=np.float32, na_value=np.nan)[order]
    return X


def _ndcg(
    scores: np.ndarray, relevant: np.ndarray, group_sizes: np.ndarray, k: int
) -> float | None:
    """Mean binary NDCG@k over groups with a relevant item (:mod:`components.evaluation.metrics`)."""
    recs: dict[Hashable, Sequence[Hashable]] = {}
    rel: dict[Hashable, Iterable[Hashable]] = {}
    start = 0
    for g, size in enumerate(group_sizes):
        s, r = scores[start : start + size], relevant[start : start + size]
        start += size
        if r.any():
            recs[g] = rank_by_score(list(range(size)), s, k)
            rel[g] = set(np.flatnonzero(r).tolist())
    if not rel:
        return None
    return float(ranking_metrics(recs, rel, ks=(k,))[f"ndcg@{k}"])


def _binary_metrics(y: np.ndarray, margin: np.ndarray) -> dict[str, Any]:
    both = len(np.unique(y)) == 2
    return {
        "auc": float(roc_auc_score(y, margin)) if both else None,
        "logloss": float(log_loss(y, np.clip(sigmoid(margin), 1e-15, 1 - 1e-15), labels=[0, 1])),
        "positive_rate": float(y.mean()),
    }




#: features ``base_feature: auto`` chooses from: per-user standardised retrieval scores and the
#: content's recent engagement counts
BASE_PREFIXES = ("z_", "item_eng_")


def _choose_base(
    p: RankerParams,
    feature_cols: Sequence[str],
    Xtr: np.ndarray,
    Xva: np.ndarray,
    engaged_va: np.ndarray,
    sizes_va: np.ndarray,
) -> HeadSpec | None:
    """The LambdaRank main head's base margin: ``base_feature`` itself or, with ``auto``, the
    feature among :data:`BASE_PREFIXES` with the best NDCG@eval_at on the validation groups
    (the time-based split carved from the training frame), standardised over the training rows
    and scaled by ``base_weight``.

    Trees see a feature through a few hundred bins, so they cannot reproduce the fine ordering a
    strong retrieval score gives at the top of a list; boosting from the score keeps that ordering
    and lets the trees learn corrections (early stopping on validation decides how many).
    """
    if not p.base_feature:
        return None
    if p.objective != "lambdarank":
        logger.warning("ranking.base_feature applies to the lambdarank objective only: ignored")
        return None
    cols = list(feature_cols)
    if p.base_feature == "auto":
        options = [c for c in cols if c.startswith(BASE_PREFIXES)]
        if not options:
            return None
        ndcg = {}
        for c in options:
            col = Xva[:, cols.index(c)].astype("float64")
            ndcg[c] = _ndcg(np.where(np.isnan(col), -np.inf, col), engaged_va == 1, sizes_va, p.eval_at) or 0.0
        name = max(options, key=lambda c: (ndcg[c], c))
        logger.info("base feature %s (validation NDCG@%d %.4f)", name, p.eval_at, ndcg[name])
    elif p.base_feature in cols:
        name = p.base_feature
    else:
        raise ValueError(f"ranking.base_feature {p.base_feature!r} is not a feature column")
    col = Xtr[:, cols.index(name)].astype("float64")
    finite = col[np.isfinite(col)]
    fill = float(finite.min()) if len(finite) else 0.0
    std = float(finite.std()) if len(finite) else 0.0
    return HeadSpec(
        name="engaged", kind="lambdarank", weight=0.0, mean=0.0, std=1.0, best_iteration=0, files=(),
        base_feature=name, base_weight=p.base_weight / (std if std > 0 else 1.0), base_fill=fill,
    )


# --------------------------------------------------------------------------- training


@dataclass(frozen=True)
class _Split:
    """The training frame in group-time order, cut into its training and validation rows."""

    order: GroupOrder
    n_tr: int  # training rows: they come first
    Xtr: np.ndarray
    Xva: np.ndarray
    sizes_tr: np.ndarray
    sizes_va: np.ndarray
    qid_tr: np.ndarray
    qid_va: np.ndarray
    engaged_va: np.ndarray  # label_engaged of the validation rows (the validation metrics)
    summary: dict[str, Any]


@dataclass(frozen=True)
class _TrainedHead:
    spec: HeadSpec
    files: dict[str, bytes]
    valid_margin: np.ndarray
    metrics: dict[str, Any]
    fit_s: float


def _active_heads(p: RankerParams) -> dict[str, float]:
    """The heads with a non-zero weight (the others are not trained)."""
    active = {h: float(w) for h, w in p.heads.items() if w != 0}
    for h in sorted(set(p.heads) - set(active)):
        logger.info("head %s has weight 0: not trained", h)
    return active


def _split_frame(
    frame: pd.DataFrame, feature_cols: Sequence[str], p: RankerParams, group_col: str, time_col: str
) -> _Split:
    """Order the rows by group time, build the float32 matrix and cut it at the time split."""
    order = order_groups(frame, p.validation_fraction, group_col, time_col)
    n_tr_groups = order.n_train_groups
    n_tr = int(order.group_sizes[:n_tr_groups].sum())
    X = _feature_matrix(frame, feature_cols, order.row_order)
    engaged = _sorted_float(frame, "label_engaged", order.row_order)
    _check_labels("engaged", "binary", "label_engaged", engaged)
    if np.isnan(engaged).any():
        raise ValueError("label_engaged must not be missing (it defines the validation metrics)")
    n_groups = len(order.group_sizes)
    summary = {
        "train_rows": n_tr,
        "validation_rows": len(X) - n_tr,
        "train_groups": n_tr_groups,
        "validation_groups": n_groups - n_tr_groups,
        "validation_group_share": (n_groups - n_tr_groups) / n_groups,
        "validation_starts_at": time_repr(frame[time_col], order.group_times[n_tr_groups]),
    }
    logger.info(
        "time split: %d train groups (%d rows), %d validation groups (%d rows) from %s",
        n_tr_groups,
        n_tr,
        summary["validation_groups"],
        summary["validation_rows"],
        summary["validation_starts_at"],
    )
    return _Split(
        order=order,
        n_tr=n_tr,
        Xtr=X[:n_tr],  # views: training groups come first
        Xva=X[n_tr:],
        sizes_tr=order.group_sizes[:n_tr_groups],
        sizes_va=order.group_sizes[n_tr_groups:],
        qid_tr=order.group_of_row[:n_tr],
        qid_va=order.group_of_row[n_tr:],
        engaged_va=engaged[n_tr:],
        summary=summary,
    )


def _skip_reason(kind: HeadKind, col: str, ytr: np.ndarray, p: RankerParams) -> str:
    """Why a head cannot be trained on these training labels ("" when it can)."""
    known_tr = ~np.isnan(ytr)
    if len(np.unique(ytr[known_tr])) < 2:
        return f"label {col} has no variation in the training split"
    if kind != "lambdarank" and int(known_tr.sum()) < 2 * p.min_child_samples:
        # LightGBM drops every feature it cannot split under min_data_in_leaf, then fails
        return f"only {int(known_tr.sum())} labelled training rows (< 2 x min_child_samples)"
    return ""


def _labelled(
    X: np.ndarray, y: np.ndarray, init: np.ndarray | None, known: np.ndarray
) -> HeadData:
    """The rows of a pointwise head whose label is known (the arrays themselves when all are)."""
    if known.all():
        return HeadData(X, y, None, None, init)
    return HeadData(X[known], y[known], None, None, None if init is None else init[known])


def _head_data(
    kind: HeadKind, s: _Split, y: np.ndarray, base: HeadSpec | None, feature_cols: Sequence[str]
) -> tuple[HeadData, HeadData | None]:
    """A head's training and validation rows (None: no labelled validation row)."""
    ytr, yva = y[: s.n_tr], y[s.n_tr :]
    init_tr = base.offset(s.Xtr, feature_cols) if base is not None else None
    init_va = base.offset(s.Xva, feature_cols) if base is not None else None
    if kind == "lambdarank":
        train = HeadData(s.Xtr, ytr, s.sizes_tr, s.qid_tr, init_tr)
        valid = HeadData(s.Xva, yva, s.sizes_va, s.qid_va, init_va)
    else:
        train = _labelled(s.Xtr, ytr, init_tr, ~np.isnan(ytr))
        valid = _labelled(s.Xva, yva, init_va, ~np.isnan(yva))
    return train, (valid if len(valid.y) else None)


def _validation_metrics(
    head: str,
    kind: HeadKind,
    fitted: Fitted,
    m_va: np.ndarray,
    yva: np.ndarray,
    s: _Split,
    eval_at: int,
) -> dict[str, Any]:
    """A head's validation metrics: rounds, error (regression) or log-loss / AUC (binary), and
    AUC / NDCG on ``label_engaged`` for the main head."""
    known_va = ~np.isnan(yva)
    metrics: dict[str, Any] = {
        "best_iteration": fitted.best_iteration,
        "rounds_run": fitted.rounds_run,
        "validation_rows": int(known_va.sum()),
    }
    if kind == "regression":
        err = m_va[known_va] - yva[known_va]
        metrics["rmse"] = float(np.sqrt(np.mean(err**2))) if len(err) else None
        metrics["mae"] = float(np.mean(np.abs(err))) if len(err) else None
    elif kind == "binary":
        metrics.update(_binary_metrics(yva[known_va], m_va[known_va]) if known_va.any() else {})
    if head == "engaged":
        metrics["auc"] = _binary_metrics(s.engaged_va, m_va)["auc"]
        metrics[f"ndcg@{eval_at}"] = _ndcg(m_va, s.engaged_va == 1, s.sizes_va, eval_at)
    return metrics


def _train_head(
    impl: Trainer,
    head: str,
    weight: float,
    y: np.ndarray,
    s: _Split,
    base: HeadSpec | None,
    p: RankerParams,
    feature_cols: Sequence[str],
) -> _TrainedHead:
    """Fit one head, score both splits with it and record its standardisation and metrics."""
    kind = head_kind(head, p.objective)
    train, valid = _head_data(kind, s, y, base, feature_cols)
    if valid is None:
        logger.warning(
            "head %s has no labelled validation rows: trained without early stopping", head
        )
    t1 = time.perf_counter()
    fitted = impl.fit(head, kind, train, valid, p, feature_cols)
    fit_s = time.perf_counter() - t1
    del train, valid
    booster = impl.build(head, fitted.files, p.n_threads)
    m_tr = impl.margin(booster, s.Xtr, p.n_threads)
    m_va = impl.margin(booster, s.Xva, p.n_threads)
    if base is not None:
        m_tr = m_tr + base.offset(s.Xtr, feature_cols)
        m_va = m_va + base.offset(s.Xva, feature_cols)
    std = float(m_tr.std())
    spec = HeadSpec(
        name=head,
        kind=kind,
        weight=weight,
        mean=float(m_tr.mean()),
        std=std if std > 0 else 1.0,
        best_iteration=fitted.best_iteration,
        files=tuple(sorted(fitted.files)),
        base_feature=base.base_feature if base is not None else "",
        base_weight=base.base_weight if base is not None else 0.0,
        base_fill=base.base_fill if base is not None else 0.0,
    )
    metrics = _validation_metrics(head, kind, fitted, m_va, y[s.n_tr :], s, p.eval_at)
    logger.info(
        "head %s (%s): %d of %d rounds kept; validation %s",
        head,
        kind,
        fitted.best_iteration,
        fitted.rounds_run,
        {k: v for k, v in metrics.items() if k not in {"rounds_run"}},
    )
    return _TrainedHead(spec, dict(fitted.files), m_va, metrics, fit_s)


def train_ranker(
    frame: pd.DataFrame,
    feature_cols: list[str],
    params: RankerParams,
    *,
    group_col: str = "group_id",
    time_col: str = "event_timestamp",
    feature_service: str = "",
    created_from: str = "",
) -> RankerModel:
    """Train every weighted head on a time-ordered split and return the combined model.

    ``frame`` has one row per (group, candidate): numeric features (NaN allowed), the label
    columns of the weighted heads (``relevance`` for LambdaRank, ``label_<head>`` otherwise;
    ``label_engaged`` is always needed, for the validation metrics) and the group / time columns.
    A missing label (NaN) leaves the row out of that head only (e.g. ``label_watch_ratio`` of
    unviewed candidates); ``relevance`` and ``label_engaged`` must be complete.
    ``feature_service`` (the Feast FeatureService the features came from) and ``created_from``
    (the training data's version) are recorded in the artefact.
    """
    p = params
    active = _active_heads(p)
    label_cols = sorted({label_column(h, p.objective) for h in active} | {"label_engaged"})
    _check_frame(frame, feature_cols, label_cols)
    impl = trainer(p.backend)
    t0 = time.perf_counter()
    s = _split_frame(frame, feature_cols, p, group_col, time_col)
    timings: dict[str, float] = {"prepare_s": time.perf_counter() - t0}
    base_spec = _choose_base(p, feature_cols, s.Xtr, s.Xva, s.engaged_va, s.sizes_va)
    trained: dict[str, _TrainedHead] = {}
    skipped: dict[str, str] = {}
    for head in (h for h in HEADS if h in active):
        kind, col = head_kind(head, p.objective), label_column(head, p.objective)
        y = head_labels(frame, col)[s.order.row_order]
        _check_labels(head, kind, col, y)
        reason = _skip_reason(kind, col, y[: s.n_tr], p)
        if reason:
            logger.warning("skipping head %s (weight %s dropped): %s", head, active[head], reason)
            skipped[head] = reason
            continue
        base = base_spec if head == "engaged" else None
        trained[head] = _train_head(impl, head, active[head], y, s, base, p, feature_cols)
        timings[f"{head}_fit_s"] = trained[head].fit_s
    if not trained:
        raise ValueError(f"no head could be trained: {skipped}")
    model = _assemble(p, impl, trained, skipped, s, base_spec, feature_cols, feature_service, created_from)
    model.timings = {k: round(v, 3) for k, v in timings.items()}
    logger.info(
        "trained ranker %s (%s/%s, heads %s): combined validation %s",
        model.version,
        p.backend,
        p.objective,
        {h: spec.weight for h, spec in model.heads.items()},
        model.training_metrics["combined"],
    )
    return model


def _assemble(
    p: RankerParams,
    impl: Trainer,
    trained: Mapping[str, _TrainedHead],
    skipped: Mapping[str, str],
    s: _Split,
    base_spec: HeadSpec | None,
    feature_cols: list[str],
    feature_service: str,
    created_from: str,
) -> RankerModel:
    """The model of the trained heads, with the combined score's validation metrics."""
    heads = {h: t.spec for h, t in trained.items()}
    files: dict[str, bytes] = {}
    for t in trained.values():
        files.update(t.files)
    combined_va = weighted_sum(heads, {h: t.valid_margin for h, t in trained.items()})
    combined = {
        "auc": _binary_metrics(s.engaged_va, combined_va)["auc"],
        f"ndcg@{p.eval_at}": _ndcg(combined_va, s.engaged_va == 1, s.sizes_va, p.eval_at),
    }
    blend, blend_figures = (
        choose_blend(combined_va, s.Xva, feature_cols, s.engaged_va == 1, s.sizes_va, p.eval_at, _ndcg)
        if p.blend and len(combined_va)
        else (None, {})
    )
    training_metrics = {
        "split": s.summary,
        "base_feature": base_spec.base_feature if base_spec is not None else None,
        "heads": {h: t.metrics for h, t in trained.items()},
        "combined": combined,
        "skipped_heads": dict(skipped),
        "blend": blend_figures,
    }
    return RankerModel(
        backend=p.backend,
        objective=p.objective,
        heads=heads,
        files=files,
        feature_cols=feature_cols,
        feature_service=feature_service,
        created_from=created_from,
        training_metrics=training_metrics,
        params=p,
        library_version=impl.library_version,
        blend=blend,
    )
