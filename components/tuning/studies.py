"""The tuning stage's studies: one search space and one objective per group of hyper-parameters,
each scored on the validation part carved from train (:mod:`components.tuning.stage` does the
carving and the I/O; nothing here sees a file or the test part).

    ease    candidates.ease.lambda                                   EASE's NDCG@10
    als     embeddings.factors / regularization / alpha / iterations the ALS ("mf") NDCG@10
    knn     candidates.knn.k / shrinkage / scoring                   item-kNN's NDCG@10
    mix     candidates.mix (one quota per source, rescaled to the    recall of the merged
            current sum)                                             candidates (per_user long)
    ranker  ranking.num_leaves / learning_rate / n_estimators /      NDCG@10 of the served
            min_child_samples (trained on the main head; the         ordering on the ranker's
            values apply to every head)                              validation groups
    folds   evaluate.inner_cut_quantile (temporal_per_user only:     the whole pipeline's
            where the ranker's validation folds cut the log) and     NDCG@10 on validation
            evaluate.negatives_per_group; each combination of        (the evaluation one level
            tuning.inner_cut_quantiles x fold_negatives once         down: inner | validation)

A source's study changes only that source, so its objective is its own top-10, which is also
what the corresponding baseline serves: the pipeline and its baselines take the same tuned
values. Optuna (TPE seeded from ``base.seed``) does the searching; what is written here is the
mapping between a trial and the params, and the objectives, which Optuna cannot know.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import optuna
import pandas as pd
import scipy.sparse as sp

from components.core.config import Tuning
from components.evaluation.metrics import ranking_metrics
from components.retrieval.collaborative import Neighbourhood, fit_ease
from components.retrieval.embedding_params import EmbeddingParams
from components.retrieval.factorization import fit_als
from components.retrieval.retriever import Retriever, ease_sequence
from components.retrieval.sources import merge

K = 10
#: the studies in the order they run (a later one sees the earlier ones' chosen values)
STUDIES: tuple[str, ...] = ("ease", "als", "knn", "mix", "ranker", "folds")
KNN_SCORINGS = ("global", "normalised", "aggregate")


@dataclass(frozen=True)
class Dim:
    """One searched hyper-parameter: the trial's name for it, where it goes in ``params.yaml``,
    its range (``choices`` for a categorical one)."""

    name: str
    path: tuple[str, ...]
    kind: Literal["int", "float", "cat"]
    low: float = 0.0
    high: float = 1.0
    log: bool = True
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: optuna.Trial) -> Any:
        if self.kind == "cat":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, log=self.log)

    def contains(self, value: Any) -> bool:
        if self.kind == "cat":
            return value in self.choices
        return bool(self.low <= float(value) <= self.high) and (self.kind == "float" or float(value).is_integer())


def spaces(t: Tuning, mix_sources: Sequence[str]) -> dict[str, list[Dim]]:
    """Every study's dimensions, ranges from the ``tuning`` section (named as its keys)."""

    def ranged(key: str, path: tuple[str, ...], kind: Literal["int", "float"], log: bool = True) -> Dim:
        low, high = getattr(t, key)
        return Dim(key, path, kind, float(low), float(high), log)

    return {
        "ease": [
            ranged("ease_lambda", ("candidates", "ease", "lambda"), "float"),
            ranged("ease_window", ("candidates", "ease", "window"), "int", log=False),
            ranged("ease_window_weight", ("candidates", "ease", "window_weight"), "float", log=False),
        ],
        "als": [
            ranged("als_factors", ("embeddings", "factors"), "int"),
            ranged("als_regularization", ("embeddings", "regularization"), "float"),
            ranged("als_alpha", ("embeddings", "alpha"), "float"),
            ranged("als_iterations", ("embeddings", "iterations"), "int", log=False),
        ],
        "knn": [
            ranged("knn_k", ("candidates", "knn", "k"), "int"),
            ranged("knn_shrinkage", ("candidates", "knn", "shrinkage"), "float"),
            Dim("knn_scoring", ("candidates", "knn", "scoring"), "cat", choices=KNN_SCORINGS),
        ],
        "mix": [Dim(f"mix_{s}", ("candidates", "mix", s), "float", 0.0, 1.0, log=False) for s in mix_sources],
        "ranker": [
            ranged("num_leaves", ("ranking", "num_leaves"), "int"),
            ranged("learning_rate", ("ranking", "learning_rate"), "float"),
            ranged("n_estimators", ("ranking", "n_estimators"), "int"),
            ranged("min_child_samples", ("ranking", "min_child_samples"), "int"),
        ],
    }


def value_at(raw: Mapping[str, Any], path: Sequence[str]) -> Any:
    for key in path:
        raw = raw[key]
    return raw


def as_overrides(dims: Sequence[Dim], values: Mapping[str, Any]) -> dict[str, Any]:
    """The chosen ``values`` as a nested params mapping (floats to 6 significant digits, so the
    written file does not depend on the last bits of the sampler's arithmetic)."""
    out: dict[str, Any] = {}
    for d in dims:
        node = out
        for key in d.path[:-1]:
            node = node.setdefault(key, {})
        v = values[d.name]
        node[d.path[-1]] = float(f"{v:.6g}") if d.kind == "float" else (int(v) if d.kind == "int" else v)
    return out


def rescaled_mix(values: Mapping[str, float], total: float) -> dict[str, float]:
    """Mix quotas from a trial's ``mix_<source>`` values: proportional, summing to at most
    ``total`` (the current quotas' sum), floored to 3 decimals so the sum never passes it."""
    raw = {k.removeprefix("mix_"): max(0.0, float(v)) for k, v in values.items()}
    s = sum(raw.values()) or 1.0
    # round first: 0.6 / 0.8 * 0.9 * 1000 is 674.999..., which floors to 674
    mix = {k: float(np.floor(round(v / s * total * 1000, 6)) / 1000) for k, v in raw.items()}
    while sum(mix.values()) > total + 1e-12:  # only when every quota rounded up
        top = max(mix, key=lambda k: mix[k])
        mix[top] = round(mix[top] - 0.001, 3)
    return mix


# --------------------------------------------------------------------------- objectives


@dataclass
class Validation:
    """The validation users (rows of the retriever fitted on the inner train part) and their
    relevant contents."""

    users: list[str]
    rows: np.ndarray
    truth: dict[str, set[str]]

    def ndcg(self, retr: Retriever, lists: Sequence[Any]) -> float:
        ids = retr.index.content_ids
        top = {u: [ids[int(i)] for i in c.items[:K]] for u, c in zip(self.users, lists, strict=True)}
        return float(ranking_metrics(top, self.truth, ks=(K,))[f"ndcg@{K}"])


Objective = Callable[[Mapping[str, Any]], float]


def ease_objective(retr: Retriever, v: Validation, events: pd.DataFrame) -> Objective:
    """EASE's lambda and its sequence window (:func:`~components.retrieval.retriever.ease_sequence`
    of ``events``, the retriever's training events; one matrix per window tried)."""
    positive = retr.inter.positive()
    grams: dict[int, sp.csr_matrix] = {}

    def score(x: Mapping[str, Any]) -> float:
        window, weight = int(x["ease_window"]), float(x["ease_window_weight"])
        seq = None
        if window > 0 and weight > 0:
            if window not in grams:
                grams[window] = ease_sequence(events, retr.inter, window)
            seq = grams[window]
        retr.ease_b = fit_ease(positive, float(x["ease_lambda"]), seq, weight)
        return v.ndcg(retr, retr.ease(v.rows, K))

    return score


def als_objective(retr: Retriever, v: Validation, ep: EmbeddingParams) -> Objective:
    """ALS refitted on the retriever's interactions (the same net weights as the embeddings stage)."""

    def score(x: Mapping[str, Any]) -> float:
        p = dataclasses.replace(
            ep, factors=int(x["als_factors"]), regularization=float(x["als_regularization"]),
            alpha=float(x["als_alpha"]), iterations=int(x["als_iterations"]),
        )
        user_mf, item_mf = fit_als(retr.inter, p)
        retr.model = dataclasses.replace(retr.model, user_mf=user_mf, item_mf=item_mf)
        return v.ndcg(retr, retr.mf(v.rows, K))

    return score


def knn_objective(retr: Retriever, v: Validation) -> Objective:
    """Item-kNN (the baseline; user-kNN shares k and shrinkage); neighbourhoods cached by k."""
    fitted: dict[int, Neighbourhood] = {}

    def score(x: Mapping[str, Any]) -> float:
        k = int(x["knn_k"])
        retr.p = dataclasses.replace(retr.p, knn_k=k, knn_shrinkage=float(x["knn_shrinkage"]), knn_scoring=str(x["knn_scoring"]))
        if k not in fitted:
            fitted[k] = Neighbourhood.fit(retr.inter, retr.p)
        retr.knn = fitted[k]
        return v.ndcg(retr, retr.item_knn(v.rows, K))

    return score


def mix_objective(retr: Retriever, v: Validation, total: float, batch: int = 256) -> Objective:
    """Recall of the merged ``per_user`` candidates: every source's lists are computed once."""
    n = retr.p.per_user
    ids = retr.index.content_ids
    parts: list[dict[str, Any]] = []
    fallback: list[Any] = []
    for start in range(0, len(v.users), batch):
        chunk = v.users[start : start + batch]
        sources = retr.all_sources(chunk, max(n, retr.p.per_source))
        parts += [{s: lists[i] for s, lists in sources.items()} for i in range(len(chunk))]
        fallback += retr.popular(retr.user_rows(chunk), n)

    def score(x: Mapping[str, Any]) -> float:
        mix = rescaled_mix(x, total)
        recall = []
        for u, lists, fb in zip(v.users, parts, fallback, strict=True):
            items = {ids[i] for i in merge(lists, mix, n, fb)[0]}
            recall.append(len(items & v.truth[u]) / len(v.truth[u]))
        return float(np.mean(recall)) if recall else 0.0

    return score


def served_ndcg(model: Any, eval_at: int) -> float:
    """The validation NDCG@k of what the ranker serves: the blend when it chose one, else the
    ranker's combined score."""
    m = model.training_metrics
    served = (m.get("blend") or {}).get("served_ndcg")
    return float(served if served is not None else m["combined"][f"ndcg@{eval_at}"] or 0.0)


def run_study(
    study: optuna.Study, dims: Sequence[Dim], current: Mapping[str, Any], objective: Objective, trials: int, timeout_s: float,
    also: Sequence[Mapping[str, Any]] = (),
) -> optuna.trial.FrozenTrial:
    """``trials`` trials of ``objective``, the current values (those in range) first, so the
    chosen values are never worse on validation than the current ones, then the trials ``also``
    names (a small categorical grid: every value once); the best trial."""
    first = {d.name: current[d.name] for d in dims if d.contains(current[d.name])}
    if first:
        study.enqueue_trial(first)
    for x in also:
        if x != first:
            study.enqueue_trial(dict(x))
    study.optimize(lambda tr: objective({d.name: d.suggest(tr) for d in dims}), n_trials=trials, timeout=timeout_s or None)
    return study.best_trial
