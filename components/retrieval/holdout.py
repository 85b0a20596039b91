"""Hold-out recall of the candidate sources (:func:`evaluate`).

Time-based hold-out: embeddings, neighbourhoods and source state are fitted on events before
the cut (``cut_quantile`` of interaction times); the test set of a user is the contents of
their positive events at or after the cut that they had not interacted with before it and
that were available at the cut. Recall@K is averaged over users with a test set and training
events; reported per source, for the popularity baseline and for the quota-merged set, with
the FAISS index's recall against exact search.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from components.core.splits import before, quantile_cut
from components.retrieval.embedding_model import EmbeddingModel
from components.retrieval.embedding_params import EmbeddingParams
from components.retrieval.index import index_recall
from components.retrieval.interactions import catalogue, interaction_events
from components.retrieval.params import BASELINE, SOURCES, CandidateParams, EvalParams
from components.retrieval.retriever import Retriever, fit_retrieval
from components.retrieval.sources import Candidates, merge


@dataclass(frozen=True)
class HoldOut:
    cut: pd.Timestamp
    train: pd.DataFrame
    truth: dict[str, set[str]]  # user -> test contents
    test_positives: int
    dropped_seen: int
    dropped_unavailable: int


def hold_out(events: pd.DataFrame, content: pd.DataFrame, ev_p: EvalParams) -> HoldOut:
    """Split at the ``cut_quantile`` of interaction times; test = later positives on new contents."""
    inter = interaction_events(events)
    cut = quantile_cut(inter["timestamp"], ev_p.cut_quantile, interpolation="linear")
    train = events[before(events["timestamp"], cut)]
    tr = interaction_events(train)
    test = inter[~before(inter["timestamp"], cut) & inter["event_type"].isin(list(ev_p.positive_types))]
    test = test[test["user_id"].isin(set(tr["user_id"].astype(str)))]
    pairs = test[["user_id", "content_id"]].astype(str).drop_duplicates()
    seen = set(zip(tr["user_id"].astype(str), tr["content_id"].astype(str), strict=True))
    is_seen = np.array([(u, c) in seen for u, c in zip(pairs["user_id"], pairs["content_id"], strict=True)], dtype=bool)
    available = set(catalogue(content, train, cut)["content_id"])
    is_avail = pairs["content_id"].isin(available).to_numpy()
    keep = pairs[~is_seen & is_avail]
    truth: dict[str, set[str]] = {}
    for u, c in zip(keep["user_id"], keep["content_id"], strict=True):
        truth.setdefault(u, set()).add(c)
    return HoldOut(cut, train, truth, len(keep), int(is_seen.sum()), int((~is_seen & ~is_avail).sum()))


def _recall(lists: Sequence[Sequence[str]], truth: Sequence[set[str]], k: int) -> float:
    vals = [len(t.intersection(lst[:k])) / len(t) for lst, t in zip(lists, truth, strict=True)]
    return round(float(np.mean(vals)), 6) if vals else 0.0


@dataclass
class HoldOutRun:
    """Everything fitted at the cut and every test user's candidates from every source."""

    split: HoldOut
    model: EmbeddingModel
    retriever: Retriever
    users: list[str]
    parts: dict[str, list[Candidates]]  # source (and the popularity baseline) -> one per user


def hold_out_run(
    events: pd.DataFrame,
    content: pd.DataFrame,
    users: pd.DataFrame,
    emb_p: EmbeddingParams,
    p: CandidateParams,
    ev_p: EvalParams,
    batch: int = 256,
) -> HoldOutRun:
    """Fit embeddings and sources on the events before the cut; retrieve for every test user."""
    split = hold_out(events, content, ev_p)
    retr = fit_retrieval(split.train, content, users, split.cut, p, emb_p)
    model = retr.model
    user_list = sorted(split.truth)
    if ev_p.max_users and len(user_list) > ev_p.max_users:
        rng = np.random.default_rng(p.seed)
        user_list = sorted(rng.choice(user_list, size=ev_p.max_users, replace=False).tolist())
    k_max = max(ev_p.ks)
    parts: dict[str, list[Candidates]] = {s: [] for s in (*SOURCES, BASELINE)}
    for start in range(0, len(user_list), batch):
        chunk = user_list[start : start + batch]
        got = retr.all_sources(chunk, max(k_max, p.per_source))
        got[BASELINE] = retr.popular(retr.user_rows(chunk), k_max)
        for s, lst in got.items():
            parts[s].extend(lst)
    return HoldOutRun(split, model, retr, user_list, parts)


def recall_report(run: HoldOutRun, mix: Mapping[str, float], ks: Sequence[int]) -> dict[str, dict[str, float]]:
    """Recall@K of every source, the popularity baseline and the quota-merged set."""
    ids = run.retriever.index.content_ids
    truth = [run.split.truth[u] for u in run.users]
    k_max = max(ks)
    out: dict[str, dict[str, float]] = {}
    for s, lst in run.parts.items():
        lists = [[ids[i] for i in c.items[:k_max]] for c in lst]
        out[s] = {f"@{k}": _recall(lists, truth, k) for k in ks}
    merged: dict[str, float] = {}
    for k in ks:
        lists = []
        for i in range(len(run.users)):
            one = {s: v[i] for s, v in run.parts.items() if s != BASELINE}
            items, _, _ = merge(one, mix, k, run.parts[BASELINE][i])
            lists.append([ids[j] for j in items])
        merged[f"@{k}"] = _recall(lists, truth, k)
    out["merged"] = merged
    return out


def evaluate(
    events: pd.DataFrame,
    content: pd.DataFrame,
    users: pd.DataFrame,
    emb_p: EmbeddingParams,
    p: CandidateParams,
    ev_p: EvalParams,
    batch: int = 256,
) -> dict[str, Any]:
    """Recall@K per source, merged and popularity on a time-based hold-out (see module doc)."""
    run = hold_out_run(events, content, users, emb_p, p, ev_p, batch)
    recall = recall_report(run, p.mix, ev_p.ks)
    lift = {
        f"@{k}": (round(recall["merged"][f"@{k}"] / recall[BASELINE][f"@{k}"], 4) if recall[BASELINE][f"@{k}"] > 0 else None)
        for k in ev_p.ks
    }
    rows = run.retriever.user_rows(run.users[:500])
    queries = run.retriever.profiles(rows[rows >= 0])
    split = run.split
    return {
        "cut": split.cut.isoformat(),
        "train_events": len(split.train),
        "test_users": len(run.users),
        "test_positives": int(sum(len(split.truth[u]) for u in run.users)),
        "test_pairs_dropped_seen_before_cut": split.dropped_seen,
        "test_pairs_dropped_unavailable_at_cut": split.dropped_unavailable,
        "catalogue": int(run.retriever.n_fit),
        "positive_types": list(ev_p.positive_types),
        "recall": recall,
        "merged_lift_over_popularity": lift,
        "index": {"type": p.index.type, **index_recall(run.retriever.index, run.model.item_unified, queries, p.index.recall_k)},
    }
