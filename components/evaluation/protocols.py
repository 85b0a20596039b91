"""Evaluation protocols: split the events, train the pipeline on train only, score on test.

Protocol (``evaluate`` in params.yaml, per data set through ``overrides``)
    1. The interactions (one unit = a user's events on a content at one time: a KuaiRand row, a
       MovieLens rating) are split into train and test by ``protocol``: ``global_time`` (before
       the ``cut_quantile`` of times), ``temporal_per_user`` (each user's last ``test_fraction``)
       or ``random_per_user`` (seeded). A split given as files replaces this. Content uploads
       stay with train.
    2. The test truth of a user: the contents of their test events of ``positive_types`` (empty:
       any interaction) they had not interacted with in train. Users with a test truth and train
       interactions are scored; lists never contain a content seen in train.
    3. The ranker is trained on train only: ``inner_folds`` validation parts are carved from train
       with the same protocol (time-based protocols nest: fold 2 splits fold 1's inner train, and
       so on; random folds are independent resplits of train with other seeds). With
       ``inner_cut_quantile`` (``temporal_per_user`` only), a fold first drops the events from
       that quantile of its source's interaction times on, and so repeats the protocol on the log
       as it stood then. Without it, a fold's held-out parts sit further before the fold's cut
       than the test part sits before the final one (on KuaiRand a median 109 h against 50 h:
       the fold's cut is set by the users active last), so recency features look older on
       validation than on test, and what the ranker chooses on validation (its base feature, its
       recency windows) need not carry over. Each fold is one
       :class:`components.pipeline.TrainingPart`: retrieval fitted on the inner train, the
       fold's users' serving candidates labelled from the held-out part (placed just after the
       fold's cut, so the training-set labeller applies unchanged), negatives sampled, features
       joined (below). The folds' groups are stacked; the ranker's time-based validation split
       holds out the latest fold.
    4. Retrieval is refitted on the whole train; every test user's serving candidates are scored
       by the ranker; the top K form the pipeline's list.
    5. Baselines from the same retrieval fit, with the same exclusions and users
       (:mod:`components.evaluation.report`).

Features of a (user, content) row, all as of the fold's cut and from train events only: the pair
features (every pair source's score and per-user z-score, the content's activity), and with
``feast_features`` the FeatureService ``feast.feature_service`` through Feast's point-in-time
join on a feature store built from the fold's train events only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Self

import numpy as np
import pandas as pd
from pydantic import model_validator

from components.core.config import EvaluateProtocol, Params, Seed
from components.core.splits import before, quantile_cut
from components.evaluation.intervals import t_half_width
from components.evaluation.report import (
    PIPELINE,
    RANKER_ALONE,
    EvalResult,
    baseline_lists,
    candidate_recall,
    combine_repeats,
    comparison,
    head_metrics,
    model_metrics,
    ranked_lists,
    ranker_summary,
    render_report,
    user_ndcg,
)
from components.evaluation.splits import (
    global_time,
    kfold_per_user,
    random_per_user,
    temporal_per_user,
)
from components.pipeline import Fitted, Pipeline, TrainingPart
from components.ranking.labels import outcome_labels
from components.ranking.model import RankerModel
from components.ranking.params import RankerParams
from components.retrieval.interactions import interaction_events

log = logging.getLogger(__name__)

PROTOCOLS = ("global_time", "temporal_per_user", "random_per_user")
UNIT_COLUMNS = ["user_id", "content_id", "timestamp"]
#: the held-out part of a fold (and the test part) is placed just after the cut, labelled over a day
LABEL_WINDOW = pd.Timedelta(days=1)


class EvalSettings(EvaluateProtocol):
    """The ``evaluate`` section for one data set (``overrides.<dataset>`` merged on top; ranges
    checked by :class:`EvaluateProtocol`), with ``base.seed`` and the ranker those evaluation
    params train (``ranking`` under ``evaluate.ranking``)."""

    seed: Seed
    ranker: RankerParams

    @model_validator(mode="after")
    def _known_protocol(self) -> Self:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"evaluate.protocol must be one of {PROTOCOLS}, got {self.protocol!r}")
        return self

    @classmethod
    def from_params(cls, params: Params | Mapping[str, Any], dataset: str) -> EvalSettings:
        cfg = Params.of(params).for_dataset(dataset, evaluation=True)
        section = cfg.evaluate.model_dump(exclude={"overrides", "ranking", "brought"})
        return cls(seed=cfg.base.seed, ranker=RankerParams.from_params(cfg), **section)


def evaluation_pipeline(params: Mapping[str, Any], dataset: str, s: EvalSettings) -> Pipeline:
    """The pipeline as the protocol trains it: the evaluation ranker, the FeatureService only
    with ``feast_features``."""
    service = Params.of(params).feast.feature_service if s.feast_features else ""
    return Pipeline.of(params, dataset, ranker=s.ranker, feature_service=service)


# ---------------------------------------------------------------------------------------------
# Splits


def interaction_units(events: pd.DataFrame) -> pd.DataFrame:
    """One row per (user, content, time) with any interaction, in a deterministic order."""
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
    units = interaction_units(events).rename(columns={"user_id": "user"})
    return [_events_of(events, sp.test) for sp in kfold_per_user(units, k, seed=seed)]


def relevant_items(train: pd.DataFrame, test: pd.DataFrame, positive_types: Sequence[str]) -> dict[str, set[str]]:
    """Each user's test contents of ``positive_types`` (any interaction if empty) not seen in
    train; only users with train interactions."""
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
    return pd.Timestamp(interaction_events(train)["timestamp"].max()) + pd.Timedelta(milliseconds=1)


def as_of_quantile(events: pd.DataFrame, quantile: float) -> pd.DataFrame:
    """``events`` as the log stood at the ``quantile`` of its interaction times: every event
    (uploads included) strictly before that time."""
    cut = quantile_cut(interaction_events(events)["timestamp"], quantile, interpolation="lower")
    return events[before(events["timestamp"], cut)]


def after_cut(events: pd.DataFrame, cut: pd.Timestamp) -> pd.DataFrame:
    """``events`` moved to just after ``cut``: the window labeller then applies as is."""
    return events.assign(timestamp=cut + pd.Timedelta(seconds=1))


# ---------------------------------------------------------------------------------------------
# Fitting on train only


#: retrieval fits kept across the repeats of a split the seed does not change, by part name
FitCache = dict[str, Fitted]


def fit_train(
    pipe: Pipeline,
    s: EvalSettings,
    train: pd.DataFrame,
    content: pd.DataFrame,
    users: pd.DataFrame,
    store_root: Path,
    cache: FitCache | None = None,
) -> Fitted:
    """Retrieval fitted on ``train`` as of its cut, with a store from ``train`` under
    ``store_root`` when the protocol uses the FeatureService. With ``cache`` (a split and
    retrieval the repeat's seed does not change), a part fitted by an earlier repeat is reused."""
    key = store_root.name
    if cache is not None and key in cache:
        return cache[key]
    fitted = pipe.fit(train, content, users, cut_of(train))
    if s.feast_features:
        fitted.store = pipe.build_store(store_root, train, content, users)
    if cache is not None:
        cache[key] = fitted
    return fitted


def fold_parts(
    pipe: Pipeline,
    s: EvalSettings,
    train: pd.DataFrame,
    content: pd.DataFrame,
    users: pd.DataFrame,
    work: Path,
    cache: FitCache | None = None,
) -> Iterator[TrainingPart]:
    """The ``inner_folds`` nested validation parts of ``train``, one training part each."""
    inner = train
    for fold in range(s.inner_folds):
        # time-based protocols nest (each fold ends where the next one's held-out part starts);
        # random folds are independent resplits of the whole train part, so every inner train
        # has the size of train x (1 - test_fraction), as the final model's train part relates to it
        source = train if s.protocol == "random_per_user" else inner
        if s.protocol == "temporal_per_user" and s.inner_cut_quantile is not None:
            source = as_of_quantile(source, s.inner_cut_quantile)
        inner, held = split_events(
            source, s.protocol, test_fraction=s.test_fraction, cut_quantile=s.cut_quantile, seed=s.seed + 1 + fold
        )
        fitted = fit_train(pipe, s, inner, content, users, work / f"fold{fold}", cache)
        held_users = sorted(set(interaction_events(held)["user_id"].astype(str)))
        # random folds share one cut; the fold number orders them for the ranker's validation
        # split (fold 0, the largest inner train, is the "latest")
        order = fitted.cut - pd.Timedelta(days=fold) if s.protocol == "random_per_user" else None
        yield TrainingPart(
            fitted, after_cut(held, fitted.cut), held_users, LABEL_WINDOW, s.negatives_per_group, s.seed + fold,
            name=f"#fold{fold}", order_time=order,
        )


def train_on(
    params: Mapping[str, Any],
    dataset: str,
    s: EvalSettings,
    train: pd.DataFrame,
    content: pd.DataFrame,
    users: pd.DataFrame,
    work: Path,
    cache: FitCache | None = None,
) -> tuple[RankerModel, pd.DataFrame]:
    """The ranker from ``inner_folds`` nested validation parts of ``train``."""
    pipe = evaluation_pipeline(params, dataset, s)
    parts = fold_parts(pipe, s, train, content, users, work, cache)
    return pipe.train_on(parts, created_from=f"evaluate:{dataset}")


# ---------------------------------------------------------------------------------------------
# The run


def _test_truth(train: pd.DataFrame, test: pd.DataFrame, s: EvalSettings) -> dict[str, set[str]]:
    """The relevant items of the scored users (a seeded sample of ``max_test_users``)."""
    truth = relevant_items(train, test, s.positive_types)
    users_eval = sorted(truth)
    if s.max_test_users and len(users_eval) > s.max_test_users:
        rng = np.random.default_rng(s.seed)
        users_eval = sorted(rng.choice(users_eval, size=s.max_test_users, replace=False).tolist())
        truth = {u: truth[u] for u in users_eval}
    return truth


def evaluate_split(
    params: Mapping[str, Any],
    dataset: str,
    train: pd.DataFrame,
    test: pd.DataFrame,
    content: pd.DataFrame,
    users: pd.DataFrame,
    s: EvalSettings,
    work: Path,
    cache: FitCache | None = None,
) -> EvalResult:
    """Train the pipeline on ``train``; score the pipeline and every baseline on ``test`` (one
    repeat: :func:`evaluate_repeated` runs several)."""
    t0 = time.perf_counter()
    truth = _test_truth(train, test, s)
    users_eval = sorted(truth)
    model, frame = train_on(params, dataset, s, train, content, users, work, cache)
    t_train = time.perf_counter() - t0

    pipe = evaluation_pipeline(params, dataset, s)
    fitted = fit_train(pipe, s, train, content, users, work / "full", cache)
    retr = fitted.retriever
    scored = pipe.score(fitted, model, users_eval)
    cand = scored[["user_id", "content_id", "source", "rank"]]
    labels = outcome_labels(scored.assign(_start=fitted.cut), after_cut(test, fitted.cut), LABEL_WINDOW, start_col="_start")
    scored = pd.concat([scored, labels], axis=1)
    k_max = max(max(s.ks), s.curve_max_k, s.beyond_k)
    alone = scored.assign(score=model.predict_ranker_alone(scored[model.feature_cols]))
    lists = {
        PIPELINE: ranked_lists(scored, k_max),
        RANKER_ALONE: ranked_lists(alone, k_max),
        **baseline_lists(retr, users_eval, k_max, cand),
    }
    models, curves = model_metrics(retr, lists, truth, train, ks=s.ks, beyond_k=s.beyond_k, curve_max_k=s.curve_max_k)
    summary: dict[str, Any] = {
        "dataset": dataset,
        "protocol": s.protocol,
        "positive_types": list(s.positive_types) or "any interaction",
        "train_events": len(train),
        "test_events": len(test),
        "users_evaluated": len(users_eval),
        "relevant_items": int(sum(len(v) for v in truth.values())),
        "catalogue": int(retr.n_fit),
        "ranker": ranker_summary(model, frame),
        "candidate_recall": candidate_recall(cand, truth),
        "heads": {h: {k: round(v, 6) for k, v in d.items()} for h, d in head_metrics(model, scored).items()},
        "models": models,
        **comparison(models, min(s.ks)),
    }
    log.info("evaluate %s (seed %d): ranker trained in %.0f s, total %.0f s", dataset, s.seed, t_train, time.perf_counter() - t0)
    per_user = user_ndcg(lists, truth, min(s.ks))
    return EvalResult(dataset, summary, curves, render_report(summary), per_user)


def repeat_settings(s: EvalSettings, r: int) -> EvalSettings:
    """Repeat ``r``'s settings: every seed (split when random, folds, negatives, booster) + r."""
    return s.replace(seed=s.seed + r, ranker=s.ranker.replace(seed=s.seed + r))


def evaluate_repeated(
    params: Mapping[str, Any],
    dataset: str,
    split: Callable[[EvalSettings], tuple[pd.DataFrame, pd.DataFrame]],
    content: pd.DataFrame,
    users: pd.DataFrame,
    s: EvalSettings,
    work: Path,
) -> EvalResult:
    """``evaluate.repeats`` runs of :func:`evaluate_split` (seeds ``base.seed + r``), every
    figure as mean ± 95 % interval. ``split(settings)`` gives the (train, test) of a repeat.
    When the seed changes neither the split nor the validation folds (time-based protocols),
    the retrieval fits and feature stores are made once and shared: only the ranker (its
    negatives and booster seed) is trained again."""
    shared: FitCache | None = {} if s.protocol != "random_per_user" else None
    results = []
    for r in range(s.repeats):
        t0 = time.perf_counter()
        sr = repeat_settings(s, r)
        train, test = split(sr)
        results.append(evaluate_split(params, dataset, train, test, content, users, sr, work / f"r{r}" if shared is None else work, shared))
        key = f"ndcg@{min(s.ks)}"
        figures = {m: round(float(v[key]), 4) for m, v in results[-1].summary["models"].items() if v.get(key) is not None}
        # each repeat's figures in the log: a long run cut short still reports what it measured
        log.info("evaluate %s: repeat %d of %d in %.0f s; %s %s", dataset, r + 1, s.repeats, time.perf_counter() - t0, key, figures)
    summary = combine_repeats([res.summary for res in results], [res.per_user for res in results], min(s.ks), s.seed)
    curves = pd.concat([res.curves for res in results]).groupby(["model", "k"], sort=False).mean().reset_index()
    return EvalResult(dataset, summary, curves, render_report(summary))


def evaluate_events(
    params: Mapping[str, Any], dataset: str, events: pd.DataFrame, content: pd.DataFrame, users: pd.DataFrame, work: Path
) -> EvalResult:
    """The data set's protocol (``evaluate.protocol``) on its events, ``evaluate.repeats`` times."""
    s = EvalSettings.from_params(params, dataset)

    def split(sr: EvalSettings) -> tuple[pd.DataFrame, pd.DataFrame]:
        return split_events(events, sr.protocol, test_fraction=sr.test_fraction, cut_quantile=sr.cut_quantile, seed=sr.seed)

    return evaluate_repeated(params, dataset, split, content, users, s, work)


def cross_validate(
    params: Mapping[str, Any], dataset: str, events: pd.DataFrame, content: pd.DataFrame, users: pd.DataFrame, k: int, work: Path
) -> dict[str, Any]:
    """k-fold cross-validation (per user, random): the protocol on each fold (the ranker's
    validation parts carved by ``random_per_user`` from each fold's train), then the mean and
    standard deviation of every model's metrics over the folds."""
    s = EvalSettings.from_params(params, dataset).replace(protocol="random_per_user", test_fraction=1.0 / k)
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
                "ci95": round(t_half_width([fd["models"][name][metric] or 0.0 for fd in folds]), 6),
            }
            for metric in models[name]
        }
    return out
