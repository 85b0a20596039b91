"""Offline evaluation: the whole pipeline and standard baselines under one protocol.

Protocol (``evaluate`` in params.yaml, per data set through ``overrides``)
    1. The interactions (one unit = a user's events on a content at one time: a KuaiRand row, a
       MovieLens rating) are split into train and test by ``protocol``: ``global_time`` (before
       the ``cut_quantile`` of times), ``temporal_per_user`` (each user's last ``test_fraction``)
       or ``random_per_user`` (seeded). A split given as files (:func:`run_files`) replaces this.
       Content uploads stay with train.
    2. The test truth of a user: the contents of their test events of ``positive_types`` (empty:
       any interaction) they had not interacted with in train. Users with a test truth and train
       interactions are scored; lists never contain a content seen in train.
    3. The ranker is trained on train only: ``inner_folds`` validation parts are carved from train
       with the same protocol (time-based protocols nest: fold 2 splits fold 1's inner train, and
       so on; random folds are independent resplits of train with other seeds). For each
       fold, stage 1 (embeddings, FAISS index, every candidate source) is fitted on the inner
       train, the serving candidates of the fold's users are labelled from the held-out part
       (placed just after the fold's cut, so the training-set labeller applies unchanged),
       negatives are sampled, and features are joined (below). The folds' groups are stacked;
       the ranker's time-based validation split holds out the latest fold.
    4. Stage 1 is refitted on the whole train; every test user's serving candidates are scored
       by the ranker; the top K form the pipeline's list.
    5. Baselines from the same stage-1 fit, with the same exclusions and users: ``popularity``
       (most engaged contents of train), ``recent`` (most engaged in the last
       ``candidates.recent.window_hours`` of train), ``item_knn``, ``mf`` (ALS alone), ``ease``
       (EASE alone) and ``candidates`` (the quota-merged retrieval list without the ranker).

Features of a (user, content) row, all as of the fold's cut and from train events only
    * pair scores of every pair source and their per-user z-scores, and the content's activity
      (:meth:`components.retrieval.candidates.Retriever.pair_features`): computed for every row alike,
      whether or not a source retrieved it;
    * with ``feast_features``, the FeatureService ``feast.feature_service`` through Feast's
      point-in-time join on a feature store built from the fold's train events only.

Metrics (:mod:`components.evaluation.metrics` conventions): Precision, Recall, NDCG, MAP and HitRate at
``ks``; catalogue coverage, intra-list diversity (unified content vectors), novelty and
creator-exposure Gini of the top-``beyond_k`` lists; AUC and log-loss of each ranker head on the
test candidates (labelled from test events). Curves of precision / recall / NDCG at every K up
to ``curve_max_k`` go to a CSV for ``dvc plots``; the side-by-side table to ``reports/``.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from components.core.catalog import DataPaths
from components.core.config import Params, stage_context, stage_parser
from components.core.io import write_metrics
from components.evaluation.metrics import (
    catalogue_coverage,
    exposure_gini,
    intra_list_diversity,
    novelty,
    ranking_metrics,
)

if TYPE_CHECKING:
    from components.ranking.ranker import RankerModel, RankerParams
    from components.retrieval.candidates import Candidates, Retriever

log = logging.getLogger(__name__)

PROTOCOLS = ("global_time", "temporal_per_user", "random_per_user")
BASELINES = ("popularity", "recent", "item_knn", "mf", "ease", "candidates")
PIPELINE = "pipeline"
DATASETS = ("synthetic", "kuairand", "movielens")
UNIT_COLUMNS = ["user_id", "content_id", "timestamp"]


@dataclass(frozen=True)
class EvalSettings:
    """The ``evaluate`` section for one data set (``overrides.<dataset>`` merged on top), with
    the ranker those evaluation params train (``ranking`` under ``evaluate.ranking``)."""

    protocol: str
    cut_quantile: float
    test_fraction: float
    positive_types: tuple[str, ...]  # empty: any interaction is relevant
    ks: tuple[int, ...]
    beyond_k: int
    curve_max_k: int
    inner_folds: int
    negatives_per_group: int
    feast_features: bool
    max_test_users: int  # 0: all
    seed: int
    ranker: RankerParams

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"evaluate.protocol must be one of {PROTOCOLS}, got {self.protocol!r}")
        if not 0.0 < self.test_fraction < 1.0 or not 0.0 < self.cut_quantile < 1.0:
            raise ValueError("evaluate.test_fraction and cut_quantile must be in (0, 1)")
        if self.inner_folds < 1:
            raise ValueError("evaluate.inner_folds must be >= 1")

    @classmethod
    def from_params(cls, params: Params | Mapping[str, Any], dataset: str) -> EvalSettings:
        from components.ranking.ranker import RankerParams

        cfg = Params.of(params).for_dataset(dataset, evaluation=True)
        section = cfg.evaluate.model_dump(exclude={"overrides", "ranking"})
        return cls(seed=cfg.base.seed, ranker=RankerParams.from_params(cfg), **section)


# ---------------------------------------------------------------------------------------------
# Splits


def interaction_units(events: pd.DataFrame) -> pd.DataFrame:
    """One row per (user, content, time) with any interaction, in a deterministic order."""
    from components.retrieval.embeddings import interaction_events

    units = interaction_events(events)[UNIT_COLUMNS].drop_duplicates()
    units = units.astype({"user_id": str, "content_id": str})
    return units.sort_values(UNIT_COLUMNS, kind="stable").reset_index(drop=True)


def _events_of(events: pd.DataFrame, test_units: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    test_keys = pd.MultiIndex.from_frame(test_units.rename(columns={"user": "user_id"})[UNIT_COLUMNS])
    keys = pd.MultiIndex.from_arrays(
        [events["user_id"].astype(str), events["content_id"].astype(str), events["timestamp"]],
        names=UNIT_COLUMNS,
    )
    in_test = keys.isin(test_keys) & events["user_id"].notna().to_numpy()
    return events[~in_test], events[in_test]


def split_events(
    events: pd.DataFrame, protocol: str, *, test_fraction: float, cut_quantile: float, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train events, test events): interaction units split by ``protocol``; every event of a
    unit follows it; events without a user (uploads) stay in train."""
    from components.evaluation.splits import global_time, random_per_user, temporal_per_user

    units = interaction_units(events).rename(columns={"user_id": "user"})
    if protocol == "random_per_user":
        sp = random_per_user(units, test_fraction=test_fraction, seed=seed)
    elif protocol == "temporal_per_user":
        sp = temporal_per_user(units, test_fraction=test_fraction)
    elif protocol == "global_time":
        sp = global_time(units, quantile=cut_quantile)
    else:
        raise ValueError(f"unknown protocol {protocol!r}")
    return _events_of(events, sp.test)


def kfold_events(events: pd.DataFrame, k: int, seed: int) -> list[tuple[pd.DataFrame, pd.DataFrame]]:
    """``k`` (train, test) event splits: per-user k-fold over interaction units."""
    from components.evaluation.splits import kfold_per_user

    units = interaction_units(events).rename(columns={"user_id": "user"})
    return [_events_of(events, sp.test) for sp in kfold_per_user(units, k, seed=seed)]


def relevant_items(train: pd.DataFrame, test: pd.DataFrame, positive_types: Sequence[str]) -> dict[str, set[str]]:
    """Each user's test contents of ``positive_types`` (any interaction if empty) not seen in
    train; only users with train interactions."""
    from components.retrieval.embeddings import interaction_events

    tr = interaction_events(train)
    seen = set(zip(tr["user_id"].astype(str), tr["content_id"].astype(str), strict=True))
    known = set(tr["user_id"].astype(str))
    te = interaction_events(test)
    if positive_types:
        te = te[te["event_type"].isin(list(positive_types))]
    out: dict[str, set[str]] = {}
    for u, c in zip(te["user_id"].astype(str), te["content_id"].astype(str), strict=True):
        if u in known and (u, c) not in seen:
            out.setdefault(u, set()).add(c)
    return out


def cut_of(train: pd.DataFrame) -> pd.Timestamp:
    """The time a model fitted on ``train`` is "as of": just after its last interaction."""
    from components.retrieval.embeddings import interaction_events

    return pd.Timestamp(interaction_events(train)["timestamp"].max()) + pd.Timedelta(milliseconds=1)


# ---------------------------------------------------------------------------------------------
# Stage 1, features


@dataclass
class Fitted:
    """Stage 1 fitted on one train part, and (optionally) its feature store."""

    retriever: Retriever
    cut: pd.Timestamp
    store: Any = None


def fit_stage1(
    params: Mapping[str, Any], dataset: str, train: pd.DataFrame, content: pd.DataFrame, users: pd.DataFrame
) -> Fitted:
    from components.retrieval.candidates import CandidateParams, Retriever
    from components.retrieval.embeddings import EmbeddingParams, fit_embeddings

    cp = CandidateParams.from_params(params, dataset)
    ep = EmbeddingParams.from_params(params)
    cut = cut_of(train)
    model, _ = fit_embeddings(train, content, ep, now=cut)
    return Fitted(Retriever.fit(model, train, content, users, cut, cp, ep), cut)


def build_store(params: Mapping[str, Any], root: Path, train: pd.DataFrame, content: pd.DataFrame, users: pd.DataFrame) -> Any:
    """A Feast store under ``root`` whose features come from ``train`` only."""
    from components.features.compute import run as features_run
    from components.features.feast_repo import StoreSettings, open_store
    from components.features.store import apply

    paths = DataPaths(root)
    paths.interim.mkdir(parents=True, exist_ok=True)
    for name, frame in (("interim_events", train), ("interim_content", content), ("interim_users", users)):
        pq.write_table(pa.Table.from_pandas(frame.reset_index(drop=True), preserve_index=False), paths.of(name))
    features_run(params, paths)
    store = open_store(paths, StoreSettings.from_params(params))
    apply(store)
    return store


def add_row_features(params: Mapping[str, Any], fitted: Fitted, rows: pd.DataFrame) -> pd.DataFrame:
    """Pair features (and the FeatureService's features as of the cut, with a store)."""
    pair = fitted.retriever.pair_features(rows["user_id"].tolist(), rows["content_id"].tolist())
    out = pd.concat([rows.reset_index(drop=True), pair], axis=1)
    if fitted.store is None:
        return out
    from components.features.point_in_time import training_frame

    service = Params.of(params).feast.feature_service
    return training_frame(fitted.store, out, service, timestamp_col="event_timestamp")


def candidate_rows(fitted: Fitted, user_ids: Sequence[str]) -> pd.DataFrame:
    """The serving candidates of ``user_ids`` (user_id, content_id, source, rank)."""
    from components.ranking.stage import serving_candidates

    cand = serving_candidates(fitted.retriever, list(user_ids), fitted.retriever.p.per_user)
    return cand[["user_id", "content_id", "source", "rank"]]


# ---------------------------------------------------------------------------------------------
# Ranker training on train only


def _labelled_part(
    params: Mapping[str, Any],
    s: EvalSettings,
    fitted: Fitted,
    held_out: pd.DataFrame,
    fold: int,
) -> pd.DataFrame:
    from components.ranking.stage import build_training_set
    from components.retrieval.embeddings import interaction_events

    users = sorted(set(interaction_events(held_out)["user_id"].astype(str)))
    # the held-out events are placed just after the cut: the window labeller then applies as is
    after = held_out.assign(timestamp=fitted.cut + pd.Timedelta(seconds=1))
    cand = candidate_rows(fitted, users)
    rows = build_training_set(
        after,
        cand,
        fitted.cut,
        pd.Timedelta(days=1),
        negatives_per_group=s.negatives_per_group,
        seed=s.seed + fold,
        users=users,
    )
    return add_row_features(params, fitted, rows)


def train_on(
    params: Mapping[str, Any],
    dataset: str,
    s: EvalSettings,
    train: pd.DataFrame,
    content: pd.DataFrame,
    users: pd.DataFrame,
    work: Path,
) -> tuple[RankerModel, pd.DataFrame]:
    """The ranker from ``inner_folds`` nested validation parts of ``train``."""
    from components.ranking.stage import train as train_ranker_on

    parts = []
    inner = train
    for fold in range(s.inner_folds):
        # time-based protocols nest (each fold ends where the next one's held-out part starts);
        # random folds are independent resplits of the whole train part, so every inner train
        # has the size of train x (1 - test_fraction), as the final model's train part relates to it
        source = train if s.protocol == "random_per_user" else inner
        inner, held = split_events(
            source, s.protocol, test_fraction=s.test_fraction, cut_quantile=s.cut_quantile, seed=s.seed + 1 + fold
        )
        fitted = fit_stage1(params, dataset, inner, content, users)
        if s.feast_features:
            fitted.store = build_store(params, work / f"fold{fold}", inner, content, users)
        part = _labelled_part(params, s, fitted, held, fold)
        part["group_id"] = part["group_id"] + f"#fold{fold}"
        if s.protocol == "random_per_user":
            # random folds share one cut; the fold number orders them for the ranker's
            # validation split (fold 0, the largest inner train, is the "latest")
            part["event_timestamp"] = pd.Series(fitted.cut - pd.Timedelta(days=fold), index=part.index).astype(
                "datetime64[ns, UTC]"
            )
        log.info("fold %d: cut %s, %d groups, %d rows", fold, fitted.cut, part["group_id"].nunique(), len(part))
        parts.append(part)
    frame = pd.concat(parts, ignore_index=True)
    service = Params.of(params).feast.feature_service if s.feast_features else ""
    model = train_ranker_on(frame, params, service, created_from=f"evaluate:{dataset}", ranker=s.ranker)
    return model, frame


# ---------------------------------------------------------------------------------------------
# Lists and metrics


def _lists_from(retr: Retriever, users: Sequence[str], lists: Sequence[Candidates], k: int) -> dict[str, list[str]]:
    ids = retr.index.content_ids
    return {u: [ids[int(i)] for i in c.items[:k]] for u, c in zip(users, lists, strict=True)}


def baseline_lists(retr: Retriever, users: Sequence[str], k: int, candidates: pd.DataFrame) -> dict[str, dict[str, list[str]]]:
    rows = retr.user_rows(list(users))
    out = {
        "popularity": _lists_from(retr, users, retr.popular(rows, k), k),
        "item_knn": _lists_from(retr, users, retr.item_knn(rows, k), k),
        "mf": _lists_from(retr, users, retr.mf(rows, k), k),
    }
    if retr.recent is not None:
        out["recent"] = _lists_from(retr, users, retr.recent_for(rows, k), k)
    if retr.ease_b is not None:
        out["ease"] = _lists_from(retr, users, retr.ease(rows, k), k)
    ordered = candidates.sort_values(["user_id", "rank"], kind="stable")
    merged = {u: g["content_id"].head(k).tolist() for u, g in ordered.groupby("user_id", sort=False)}
    out["candidates"] = {u: merged.get(u, []) for u in users}
    return out


def score_candidates(params: Mapping[str, Any], fitted: Fitted, model: RankerModel, user_ids: Sequence[str]) -> pd.DataFrame:
    """The serving candidates of ``user_ids`` at the fit's cut, with their features and the
    ranker's ``score``."""
    cand = candidate_rows(fitted, user_ids)
    rows = cand.assign(event_timestamp=pd.Series(fitted.cut, index=cand.index).astype("datetime64[ns, UTC]"))
    scored = add_row_features(params, fitted, rows)
    scored["score"] = model.predict(scored[model.feature_cols])
    return scored


def _by_score(scored: pd.DataFrame) -> pd.DataFrame:
    """Rows per user, best score first (ties by content id)."""
    return scored.sort_values(["user_id", "score", "content_id"], ascending=[True, False, True], kind="stable")


def ranked_lists(scored: pd.DataFrame, k: int) -> dict[str, list[str]]:
    """Top ``k`` per user by ``score`` (ties by content id)."""
    order = _by_score(scored)
    return {str(u): g["content_id"].head(k).tolist() for u, g in order.groupby("user_id", sort=False)}


def beyond_accuracy(retr: Retriever, lists: Mapping[str, Sequence[str]], train: pd.DataFrame, k: int) -> dict[str, float | None]:
    from components.retrieval.embeddings import interaction_events

    top = {u: list(v)[:k] for u, v in lists.items()}
    pos = {c: i for i, c in enumerate(retr.index.content_ids[: retr.n_fit])}
    vec = retr.model.item_unified
    ild = [
        intra_list_diversity(items, {c: vec[pos[c]] for c in items if c in pos}) for items in top.values() if len(items) > 1
    ]
    tr = interaction_events(train)
    pop = tr.groupby(tr["content_id"].astype(str))["user_id"].nunique().to_dict()
    creator = dict(zip(retr.items["content_id"].astype(str), retr.items["creator_id"].astype(object), strict=True))
    creator = {c: v for c, v in creator.items() if v is not None and v == v and v != "unknown"}
    return {
        f"coverage@{k}": catalogue_coverage(top, retr.n_fit),
        f"ild@{k}": float(np.mean(ild)) if ild else 0.0,
        f"novelty@{k}": novelty(top, pop, int(tr["user_id"].nunique())),
        # None when the data set has no creators (KuaiRand subset, MovieLens)
        f"exposure_gini@{k}": exposure_gini(top, creator, set(creator.values())) if creator else None,
    }


def curves(lists: Mapping[str, Sequence[str]], truth: Mapping[str, set[str]], max_k: int) -> list[dict[str, float]]:
    out = []
    for k in range(1, max_k + 1):
        m = ranking_metrics(lists, truth, ks=(k,))
        out.append({"k": k, "precision": m[f"precision@{k}"], "recall": m[f"recall@{k}"], "ndcg": m[f"ndcg@{k}"]})
    return out


def head_metrics(model: RankerModel, scored: pd.DataFrame) -> dict[str, dict[str, float]]:
    """AUC and log-loss of each binary head on labelled test candidates."""
    from sklearn.metrics import log_loss, roc_auc_score

    margins = model.predict_heads(scored[model.feature_cols], output="margin")
    out: dict[str, dict[str, float]] = {}
    for head, m in margins.items():
        col = "label_engaged" if head == "engaged" else f"label_{head}"
        if head == "watch_ratio" or col not in scored:
            continue
        y = scored[col].to_numpy(dtype=float)
        if len(np.unique(y)) < 2:
            continue
        entry = {"auc": float(roc_auc_score(y, m)), "positive_rate": float(y.mean())}
        if model.heads[head].kind == "binary":
            entry["logloss"] = float(log_loss(y, 1.0 / (1.0 + np.exp(-np.asarray(m, dtype=float))), labels=[0, 1]))
        out[head] = entry
    return out


# ---------------------------------------------------------------------------------------------
# The run


@dataclass
class EvalResult:
    dataset: str
    summary: dict[str, Any]
    curves: pd.DataFrame
    report: str


def evaluate_split(
    params: Mapping[str, Any],
    dataset: str,
    train: pd.DataFrame,
    test: pd.DataFrame,
    content: pd.DataFrame,
    users: pd.DataFrame,
    s: EvalSettings,
    work: Path,
) -> EvalResult:
    """Train the pipeline on ``train``; score the pipeline and every baseline on ``test``."""
    from components.ranking.stage import outcome_labels

    t0 = time.perf_counter()
    truth = relevant_items(train, test, s.positive_types)
    users_eval = sorted(truth)
    if s.max_test_users and len(users_eval) > s.max_test_users:
        rng = np.random.default_rng(s.seed)
        users_eval = sorted(rng.choice(users_eval, size=s.max_test_users, replace=False).tolist())
        truth = {u: truth[u] for u in users_eval}
    model, frame = train_on(params, dataset, s, train, content, users, work)
    t_train = time.perf_counter() - t0

    fitted = fit_stage1(params, dataset, train, content, users)
    if s.feast_features:
        fitted.store = build_store(params, work / "full", train, content, users)
    retr = fitted.retriever
    scored = score_candidates(params, fitted, model, users_eval)
    cand = scored[["user_id", "content_id", "source", "rank"]]
    after = test.assign(timestamp=fitted.cut + pd.Timedelta(seconds=1))
    scored = pd.concat(
        [scored, outcome_labels(scored.assign(_start=fitted.cut), after, pd.Timedelta(days=1), start_col="_start")], axis=1
    )
    k_max = max(max(s.ks), s.curve_max_k, s.beyond_k)
    lists = {PIPELINE: ranked_lists(scored, k_max), **baseline_lists(retr, users_eval, k_max, cand)}

    models: dict[str, dict[str, float | None]] = {}
    curve_rows = []
    for name, lst in lists.items():
        m: dict[str, float | None] = {**ranking_metrics(lst, truth, ks=s.ks), **beyond_accuracy(retr, lst, train, s.beyond_k)}
        models[name] = {k: (round(float(v), 6) if v is not None else None) for k, v in m.items()}
        curve_rows += [{"model": name, **{k: round(float(v), 6) for k, v in c.items()}} for c in curves(lst, truth, s.curve_max_k)]
    k0 = min(s.ks)
    def ndcg_of(model: str) -> float:
        return float(models[model][f"ndcg@{k0}"] or 0.0)

    best_base = max((b for b in models if b != PIPELINE), key=ndcg_of)
    best_val = ndcg_of(best_base)
    summary: dict[str, Any] = {
        "dataset": dataset,
        "protocol": s.protocol,
        "positive_types": list(s.positive_types) or "any interaction",
        "train_events": len(train),
        "test_events": len(test),
        "users_evaluated": len(users_eval),
        "relevant_items": int(sum(len(v) for v in truth.values())),
        "catalogue": int(retr.n_fit),
        "ranker": {
            "version": model.version,
            "backend": model.backend,
            "objective": model.objective,
            "training_rows": int((frame["in_candidates"] == 1).sum()),
            "training_groups": int(frame.loc[frame["in_candidates"] == 1, "group_id"].nunique()),
            "positives_missed_by_retrieval": int((frame["in_candidates"] == 0).sum()),
            "features": len(model.feature_cols),
            "validation": model.training_metrics.get("combined", {}),
        },
        "candidate_recall": round(
            float(np.mean([len(truth[str(u)] & set(g["content_id"])) / len(truth[str(u)]) for u, g in cand.groupby("user_id") if str(u) in truth])), 6
        ),
        "heads": {h: {k: round(v, 6) for k, v in d.items()} for h, d in head_metrics(model, scored).items()},
        "models": models,
        "best_baseline": best_base,
        f"ndcg@{k0}_lift_over_best_baseline": round(ndcg_of(PIPELINE) / best_val - 1.0, 6) if best_val > 0 else None,
    }
    seconds = round(time.perf_counter() - t0, 1)
    log.info("evaluate %s: ranker trained in %.0f s, total %.0f s", dataset, t_train, seconds)
    return EvalResult(dataset, summary, pd.DataFrame(curve_rows), render_report(summary))


METRIC_ORDER = ("ndcg", "map", "precision", "recall", "hit_rate")


def render_report(summary: Mapping[str, Any]) -> str:
    """Markdown: the side-by-side table of every model, then the heads and the protocol."""
    models = summary["models"]
    ks = sorted({int(k.split("@")[1]) for k in next(iter(models.values())) if k.split("@")[0] in METRIC_ORDER})
    cols = [f"{m}@{k}" for k in ks for m in METRIC_ORDER]
    extra = [c for c in next(iter(models.values())) if c.split("@")[0] in ("coverage", "ild", "novelty", "exposure_gini")]
    lines = [
        f"# Offline evaluation: {summary['dataset']}",
        "",
        f"Protocol `{summary['protocol']}`; relevant = {summary['positive_types']}; "
        f"{summary['users_evaluated']} users, {summary['relevant_items']} relevant items, "
        f"catalogue {summary['catalogue']}; train {summary['train_events']} / test {summary['test_events']} events. "
        "Every list excludes contents the user interacted with in train.",
        "",
        "| model | " + " | ".join(cols + extra) + " |",
        "|---" * (1 + len(cols) + len(extra)) + "|",
    ]
    for name, m in models.items():
        label = f"**{name}**" if name == PIPELINE else name
        lines.append(f"| {label} | " + " | ".join(f"{m[c]:.4f}" if m[c] is not None else "n/a" for c in cols + extra) + " |")
    k0 = ks[0]
    lift = summary.get(f"ndcg@{k0}_lift_over_best_baseline")
    lines += [
        "",
        f"Best baseline on NDCG@{k0}: `{summary['best_baseline']}`; pipeline lift: "
        + (f"{lift * 100:+.1f} %" if lift is not None else "n/a"),
        f"Candidate recall (share of a user's relevant items among the ranked candidates): {summary['candidate_recall']:.3f}",
        "",
        "## Ranker",
        "",
        f"`{summary['ranker']['version']}` ({summary['ranker']['backend']}, {summary['ranker']['objective']}), "
        f"{summary['ranker']['features']} features, {summary['ranker']['training_rows']} training rows in "
        f"{summary['ranker']['training_groups']} groups (carved from train only).",
        "",
        "| head | AUC | log-loss | positive rate |",
        "|---|---|---|---|",
    ]
    for h, d in summary["heads"].items():
        ll = d.get("logloss")
        lines.append(f"| {h} | {d['auc']:.4f} | {ll:.4f} | {d['positive_rate']:.4f} |" if ll is not None else f"| {h} | {d['auc']:.4f} | – | {d['positive_rate']:.4f} |")
    return "\n".join(lines) + "\n"


def write_outputs(result: EvalResult, paths: DataPaths, dataset: str | None = None) -> dict[str, Path]:
    """``metrics/evaluate[_<dataset>].json``, one curve CSV per model under
    ``metrics/plots/evaluate[_<dataset>]/`` (each a series in ``dvc plots``) and the report;
    without ``dataset`` the pipeline's own (``evaluate`` stage), else ``evaluate_real``'s."""
    if dataset is None:
        out = {k: paths.of(f"{k}_evaluate") for k in ("metrics", "plots", "report")}
    else:
        out = {k: paths.of(f"{k}_evaluate_dataset", dataset=dataset) for k in ("metrics", "plots", "report")}
    curves_dir = out["plots"]
    if curves_dir.exists():
        shutil.rmtree(curves_dir)
    curves_dir.mkdir(parents=True)
    out["report"].parent.mkdir(parents=True, exist_ok=True)
    write_metrics(out["metrics"], result.summary)
    for model, frame in result.curves.groupby("model", sort=False):
        frame.drop(columns="model").to_csv(curves_dir / f"{model}.csv", index=False)
    out["report"].write_text(result.report)
    return out


# ---------------------------------------------------------------------------------------------
# Entry points


def read_tables(paths: DataPaths) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Clean events with every column (the feature stage needs them all), content and users."""
    from components.core.frames import arrow_string_mapper
    from components.retrieval.embeddings import read_interim

    _, content, users = read_interim(paths)
    events = pq.read_table(paths.of("interim_events")).to_pandas(types_mapper=arrow_string_mapper)
    return events, content, users


def evaluate_events(
    params: Mapping[str, Any], dataset: str, events: pd.DataFrame, content: pd.DataFrame, users: pd.DataFrame, work: Path
) -> EvalResult:
    s = EvalSettings.from_params(params, dataset)
    train, test = split_events(events, s.protocol, test_fraction=s.test_fraction, cut_quantile=s.cut_quantile, seed=s.seed)
    return evaluate_split(params, dataset, train, test, content, users, s, work)


def cross_validate(
    params: Mapping[str, Any], dataset: str, events: pd.DataFrame, content: pd.DataFrame, users: pd.DataFrame, k: int, work: Path
) -> dict[str, Any]:
    """k-fold cross-validation (per user, random): the protocol on each fold (the ranker's
    validation parts carved by ``random_per_user`` from each fold's train), then the mean and
    standard deviation of every model's metrics over the folds."""
    s = replace(EvalSettings.from_params(params, dataset), protocol="random_per_user", test_fraction=1.0 / k)
    folds = []
    for f, (train, test) in enumerate(kfold_events(events, k, s.seed)):
        log.info("cross-validation fold %d of %d", f + 1, k)
        folds.append(evaluate_split(params, dataset, train, test, content, users, s, work / f"cv{f}").summary)
    models = folds[0]["models"]
    out: dict[str, Any] = {"dataset": dataset, "folds": k, "models": {}}
    for name in models:
        out["models"][name] = {
            metric: {
                "mean": round(float(np.mean([fd["models"][name][metric] for fd in folds])), 6),
                "std": round(float(np.std([fd["models"][name][metric] for fd in folds])), 6),
            }
            for metric in models[name]
        }
    return out


def run(params: Mapping[str, Any], paths: DataPaths) -> EvalResult:
    """Stage: evaluate the pipeline's own data (``data.source``) from ``data/interim``."""
    dataset = Params.of(params).data.source
    events, content, users = read_tables(paths)
    with tempfile.TemporaryDirectory(prefix="evaluate-") as tmp:
        result = evaluate_events(params, dataset, events, content, users, Path(tmp))
    write_outputs(result, paths)
    return result


def run_dataset(params: Mapping[str, Any], dataset: str, paths: DataPaths) -> EvalResult:
    """Evaluate one named data set, ingested and preprocessed into a throw-away folder."""
    from components.retrieval.candidates import prepare_dataset

    with tempfile.TemporaryDirectory(prefix=f"evaluate-{dataset}-") as tmp:
        prepared = prepare_dataset(params, dataset, Path(tmp) / "data-root")
        events, content, users = read_tables(prepared)
        result = evaluate_events(params, dataset, events, content, users, Path(tmp))
    write_outputs(result, paths, dataset)
    return result


def run_files(
    params: Mapping[str, Any],
    train_file: Path,
    test_file: Path,
    paths: DataPaths,
    *,
    name: str = "files",
    content_file: Path | None = None,
    inner_protocol: str = "random_per_user",
    positive_types: Sequence[str] = (),
) -> EvalResult:
    """Bring your own split: ``user,item,rating,timestamp`` tables (CSV or Parquet) for train and
    test. Both go through the project's ingestion (validation, pseudonymisation) and
    preprocessing together; the pipeline is then trained on the train part only (the ranker's
    validation parts carved from it by ``inner_protocol``) and scored on the test part."""
    from components.data.adapters.brought import table_to_drop
    from components.data.ingest import run as ingest_run
    from components.data.preprocess import run as preprocess_run
    from components.data.realdata import write_drop
    from components.evaluation.splits import read_split

    content = None
    if content_file is not None:
        content = pd.read_parquet(content_file) if content_file.suffix == ".parquet" else pd.read_csv(content_file, dtype={"content_id": str})
    drop = table_to_drop({"train": read_split(train_file), "test": read_split(test_file)}, content)
    s = replace(EvalSettings.from_params(params, name), protocol=inner_protocol, positive_types=tuple(positive_types))
    with tempfile.TemporaryDirectory(prefix="evaluate-files-") as tmp:
        root = Path(tmp)
        write_drop(drop, root / "drop")
        prepared = DataPaths(root / "data-root")
        local = {**params, "data": {"source": name}}
        # the key only pseudonymises ids inside this throw-away store; "now" only bounds timestamps
        ingest_run(dict(local), root / "drop", prepared, now=pd.Timestamp("2100-01-01", tz="UTC"), key=b"evaluation-split")
        preprocess_run(dict(local), prepared)
        events, content_t, users = read_tables(prepared)
        part = events["event_id"].astype(str).str.split("-", n=1).str[0].to_numpy()
        train, test = events[part != "test"], events[part == "test"]
        result = evaluate_split(params, name, train, test, content_t, users, s, root)
    write_outputs(result, paths, name)
    return result


def batch_feed(
    params: Mapping[str, Any], paths: DataPaths, user_ids: Sequence[str], k: int, key: bytes | None = None
) -> pd.DataFrame:
    """The top-``k`` feed of ``user_ids`` from the pipeline's trained artefacts (embeddings, the
    latest ranker, the project's feature store), as of the end of ``data/interim``: candidates
    from every source, ranked, contents the user already interacted with excluded.

    Ids may be raw (pseudonymised here with ``key``, as ingestion does) or pseudonyms already.
    Returns ``user_id`` (as given), ``rank``, ``content_id``, ``score``, ``source``.
    """
    from components.data.ingestion.pseudonyms import pseudonym
    from components.features.feast_repo import StoreSettings, open_store
    from components.ranking.ranker import load
    from components.retrieval.candidates import CandidateParams, Retriever
    from components.retrieval.embeddings import EmbeddingParams, load_model

    dataset = Params.of(params).data.source
    events, content, users = read_tables(paths)
    model = load(paths.of("ranker") / paths.of("ranker_latest").read_text().strip())
    cut = cut_of(events)
    retr = Retriever.fit(
        load_model(paths.of("embeddings")), events, content, users, cut,
        CandidateParams.from_params(params, dataset), EmbeddingParams.from_params(params),
    )
    store = open_store(paths, StoreSettings.from_params(params)) if model.feature_service else None
    known = set(retr.model.user_ids.astype(str))
    given = {(u if u in known or key is None else pseudonym(u, key)): u for u in (str(x) for x in user_ids)}
    scored = score_candidates(params, Fitted(retr, cut, store), model, sorted(given))
    top = _by_score(scored).groupby("user_id", sort=False).head(k).copy()
    top["rank"] = top.groupby("user_id", sort=False).cumcount() + 1
    top["user_id"] = top["user_id"].map(given)
    return top[["user_id", "rank", "content_id", "score", "source"]].reset_index(drop=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = stage_parser(__doc__)
    parser.add_argument("--dataset", choices=DATASETS, default=None, help="evaluate this data set instead of the pipeline's data/interim")
    parser.add_argument("--train-file", type=Path, help="bring your own split: train table (user,item,rating,timestamp)")
    parser.add_argument("--test-file", type=Path, help="bring your own split: test table")
    parser.add_argument("--content-file", type=Path, help="optional content table for --train-file (content_id, category, tags, ...)")
    parser.add_argument("--name", default="files", help="name of a brought split (output suffix)")
    parser.add_argument("--inner-protocol", choices=PROTOCOLS, default="random_per_user", help="how the ranker's validation parts are carved from a brought train part")
    parser.add_argument("--positive-types", nargs="*", default=[], help="relevant event types of a brought split (default: any interaction)")
    parser.add_argument("--cv", type=int, default=0, help="k-fold cross-validation (per user) of the data set instead of the hold-out")
    parser.add_argument("--feed-users", type=Path, help="batch mode: a file with one user id per line; writes the top-K feed CSV")
    parser.add_argument("--k", type=int, default=10, help="feed length in batch mode")
    parser.add_argument("--out", type=Path, help="batch mode: output CSV (default reports/feed.csv)")
    args = parser.parse_args(argv)
    params, paths = stage_context(args)
    if args.feed_users:
        from components.data.ingestion.pseudonyms import hmac_key_from_env

        wanted = [line.strip() for line in args.feed_users.read_text().splitlines() if line.strip()]
        feed = batch_feed(params, paths, wanted, args.k, hmac_key_from_env())
        out = args.out or paths.of("feed")
        out.parent.mkdir(parents=True, exist_ok=True)
        feed.to_csv(out, index=False)
        print(f"feed: {feed['user_id'].nunique()} users x top {args.k} -> {out}")
        return 0
    if args.cv:
        from components.retrieval.candidates import prepare_dataset

        dataset = args.dataset or Params.of(params).data.source
        with tempfile.TemporaryDirectory(prefix="evaluate-cv-") as tmp:
            source = prepare_dataset(params, dataset, Path(tmp) / "data-root") if args.dataset else paths
            events, content, users = read_tables(source)
            cv = cross_validate(params, dataset, events, content, users, args.cv, Path(tmp))
        write_metrics(paths.of("metrics_evaluate_cv", dataset=dataset), cv)
        for name, m in cv["models"].items():
            print(f"{name:12s} ndcg@10 {m['ndcg@10']['mean']:.4f} ± {m['ndcg@10']['std']:.4f}")
        return 0
    if args.train_file or args.test_file:
        if not (args.train_file and args.test_file):
            parser.error("--train-file and --test-file go together")
        result = run_files(
            params, args.train_file, args.test_file, paths, name=args.name, content_file=args.content_file,
            inner_protocol=args.inner_protocol, positive_types=args.positive_types,
        )
    else:
        result = run_dataset(params, args.dataset, paths) if args.dataset else run(params, paths)
    print(result.report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
