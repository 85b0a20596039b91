"""The :class:`Retriever`: every candidate source's state over one catalogue at time ``now``.

Sources — each returns ``(content_id, score, source)`` for one user, already-seen and
hidden / reported contents excluded
    * ``content``: cosine between the user profile and content embeddings (FAISS,
      :mod:`~components.retrieval.index`), kept when it is at least ``similarity_threshold``;
    * ``item_knn`` / ``user_knn``: neighbourhood CF with baseline biases, and ``ease``: EASE
      (:mod:`~components.retrieval.collaborative`);
    * ``hybrid``: ``alpha * content + (1 - alpha) * collaborative`` after per-user min-max
      normalisation of each source's scores (collaborative = mean of item- and user-kNN);
    * ``mf`` (ALS dot product) and ``graph`` (NetMF dot product) from :mod:`components.retrieval.embedding_model`;
    * ``trending`` and ``recent`` (:mod:`~components.retrieval.sources`);
    * ``fresh``: contents available within ``max_age_hours``, ranked by
      ``exp(-age / max_age) * (1 + cos(profile, content)) / 2``;
    * ``followed``: contents of the creators the user follows (profile list plus follow events,
      minus later unfollows), newest first.
    The lists are merged by quota (:func:`~components.retrieval.sources.merge`): one user with
    :meth:`Retriever.retrieve`, many with :func:`candidate_table`. :func:`fit_retrieval` fits it
    all from events (the retrieval step of :class:`components.pipeline.Pipeline`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from components.retrieval.collaborative import Neighbourhood, fit_ease, sequence_gram
from components.retrieval.embedding_model import EmbeddingModel, fit_embeddings
from components.retrieval.embedding_params import EmbeddingParams
from components.retrieval.index import ContentIndex
from components.retrieval.interactions import (
    Interactions,
    build_interactions,
    catalogue,
    interaction_events,
)
from components.retrieval.pair_features import (
    NEG_INF,
    PAIR_SOURCES,
    PairState,
    minmax,
    normalisers,
    z_scores,
)
from components.retrieval.params import CandidateParams
from components.retrieval.sources import (
    Candidates,
    followed_creators,
    item_activity,
    merge,
    popularity_scores,
    recent_scores,
    trending_scores,
)


def _top(scores: np.ndarray, k: int) -> list[Candidates]:
    """Per row: the best ``k`` finite scores, descending (ties by position, deterministic)."""
    out = []
    for row in scores:
        finite = np.flatnonzero(np.isfinite(row))
        part = finite[np.argpartition(-row[finite], k - 1)[:k]] if len(finite) > k else finite
        order = np.lexsort((part, -row[part]))
        sel = part[order]
        out.append(Candidates(sel.astype(np.int64), row[sel].astype(np.float32)))
    return out



def _text_or_none(values: pd.Series) -> np.ndarray:
    return np.array([None if pd.isna(v) else str(v) for v in values], dtype=object)


def preferred_categories(users: pd.DataFrame) -> dict[str, list[str]]:
    if "preferred_categories" not in users:
        return {}
    return {
        str(u): [str(c) for c in cl]
        for u, cl in zip(users["user_id"].astype(str), users["preferred_categories"], strict=True)
        if isinstance(cl, list | tuple | np.ndarray) and len(cl)
    }


def ease_sequence(events: pd.DataFrame, inter: Interactions, window: int) -> sp.csr_matrix:
    """:func:`sequence_gram` over each user's positive pairs (EASE's binary feedback), ordered by
    the pair's first interaction."""
    ev = interaction_events(events)
    u = pd.Index(inter.user_ids).get_indexer(ev["user_id"].astype(str))
    i = pd.Index(inter.item_ids).get_indexer(ev["content_id"].astype(str))
    t = pd.to_datetime(ev["timestamp"], utc=True).dt.tz_convert(None).to_numpy().astype("int64")
    ok = (u >= 0) & (i >= 0)
    first = pd.DataFrame({"u": u[ok], "i": i[ok], "t": t[ok]}).groupby(["u", "i"], sort=False)["t"].min().reset_index()
    pos = inter.positive()
    keep = np.asarray(pos[first["u"].to_numpy(), first["i"].to_numpy()]).ravel() > 0
    first = first[keep]
    return sequence_gram(first["u"].to_numpy(), first["i"].to_numpy(), first["t"].to_numpy(), inter.n_items, window)


@dataclass
class Retriever:
    """Source state at time ``now``: embeddings, index, neighbourhoods, trending, fresh, follows."""

    model: EmbeddingModel
    inter: Interactions
    index: ContentIndex
    knn: Neighbourhood
    items: pd.DataFrame  # catalogue aligned with the index ids: content_id, creator_id, available_at
    trending: Candidates
    popularity: Candidates
    follows: dict[str, set[str]]
    now: pd.Timestamp
    p: CandidateParams
    vectors: np.ndarray  # unified vectors aligned with ``items`` (grows with add_content)
    preferred: dict[str, list[str]] = field(default_factory=dict)  # declared categories per user
    recent: Candidates | None = None  # most engaged in the last recent_window_hours
    ease_b: np.ndarray | None = None  # EASE weights (None: catalogue too large or lambda 0)
    ease_seq: sp.csr_matrix | None = None  # EASE's sequence-window pairs (None: ease.window 0)
    activity: pd.DataFrame | None = None  # item_activity of the fitted catalogue
    _user_row: dict[str, int] = field(default_factory=dict)

    @classmethod
    def fit(
        cls,
        model: EmbeddingModel,
        events: pd.DataFrame,
        content: pd.DataFrame,
        users: pd.DataFrame,
        now: pd.Timestamp,
        p: CandidateParams,
        emb_p: EmbeddingParams,
        index: ContentIndex | None = None,
    ) -> Retriever:
        """Build every source's state from events before ``now`` and the embedding model."""
        ev = events[events["timestamp"] < now]
        inter = build_interactions(ev, emb_p, item_ids=model.item_ids, user_ids=model.user_ids)
        cat = catalogue(content, ev).set_index("content_id").reindex(model.item_ids)
        items = pd.DataFrame(
            {
                "content_id": model.item_ids.astype(str),
                "creator_id": _text_or_none(cat["creator_id"]) if "creator_id" in cat else None,
                "available_at": pd.to_datetime(cat["available_at"], utc=True).to_numpy(),
            }
        )
        if index is None:
            index = ContentIndex.build(model.item_unified, items["content_id"].tolist(), p.index)
        r = cls(
            model=model,
            inter=inter,
            index=index,
            knn=Neighbourhood.fit(inter, p),
            items=items,
            trending=trending_scores(ev, model.item_ids, now, p),
            popularity=popularity_scores(ev, model.item_ids),
            follows=followed_creators(users, ev),
            now=now,
            p=p,
            vectors=model.item_unified,
            preferred=preferred_categories(users),
            activity=item_activity(ev, model.item_ids, now, p.item_windows_hours),
            recent=recent_scores(ev, model.item_ids, now, p.recent_window_hours),
        )
        if p.ease_lambda > 0 and 0 < inter.n_items <= p.ease_max_items:
            if p.ease_window > 0 and p.ease_window_weight > 0:
                r.ease_seq = ease_sequence(ev, inter, p.ease_window)
            r.ease_b = fit_ease(inter.positive(), p.ease_lambda, r.ease_seq, p.ease_window_weight)
        r._user_row = inter.user_index()
        return r

    # ---- helpers
    @property
    def n_fit(self) -> int:
        return int(self.inter.n_items)

    def user_rows(self, user_ids: Sequence[str]) -> np.ndarray:
        return np.array([self._user_row.get(str(u), -1) for u in user_ids], dtype=np.int64)

    def _exclude(self, rows: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """Set seen and blocked contents to -inf (rows of unknown users keep everything)."""
        known = rows >= 0
        if known.any():
            mask = (self.inter.seen[rows[known]] + self.inter.blocked[rows[known]]).tocoo()
            sub = scores[known]
            sub[mask.row, mask.col] = NEG_INF
            scores[known] = sub
        return scores

    def _dense(self, rows: np.ndarray, fn: Any, width: int | None = None) -> np.ndarray:
        known = rows >= 0
        out = np.full((len(rows), self.n_fit if width is None else width), NEG_INF, dtype=np.float32)
        if known.any():
            out[known] = fn(rows[known])
        return out

    def profiles(self, rows: np.ndarray) -> np.ndarray:
        known = rows >= 0
        out = np.zeros((len(rows), self.model.item_unified.shape[1]), dtype=np.float32)
        out[known] = self.model.user_profile[rows[known]]
        return out

    # ---- sources (batch over user rows; -1 = user without training events)
    def content(self, rows: np.ndarray, k: int, queries: np.ndarray | None = None) -> list[Candidates]:
        q = self.profiles(rows) if queries is None else queries
        n_seen = np.diff(self.inter.seen.indptr)
        extra = int(max((n_seen[r] for r in rows if r >= 0), default=0))
        scores, ids = self.index.search(q, k + extra)
        out = []
        for i, r in enumerate(rows):
            ok = (ids[i] >= 0) & (scores[i] >= self.p.similarity_threshold) & (np.linalg.norm(q[i]) > 0)
            sel, sc = ids[i][ok], scores[i][ok]
            if r >= 0 and len(sel):
                excl = np.union1d(self.inter.seen[r].indices, self.inter.blocked[r].indices)
                keep = ~np.isin(sel, excl)
                sel, sc = sel[keep], sc[keep]
            out.append(Candidates(sel[:k].astype(np.int64), sc[:k].astype(np.float32)))
        return out

    def item_knn(self, rows: np.ndarray, k: int) -> list[Candidates]:
        return _top(self._exclude(rows, self._dense(rows, lambda r: self.knn.item_scores(r, self.p))), k)

    def user_knn(self, rows: np.ndarray, k: int) -> list[Candidates]:
        return _top(self._exclude(rows, self._dense(rows, lambda r: self.knn.user_scores(r, self.p))), k)

    def mf(self, rows: np.ndarray, k: int) -> list[Candidates]:
        return _top(self._exclude(rows, self._dense(rows, lambda r: self.model.user_mf[r] @ self.model.item_mf.T)), k)

    def ease_scores(self, rows: np.ndarray, cols: np.ndarray | None = None) -> np.ndarray:
        """EASE scores of known user rows over the fitted catalogue (or its contents ``cols``)."""
        assert self.ease_b is not None
        return self.pair_state()._ease(rows, cols)

    def ease(self, rows: np.ndarray, k: int) -> list[Candidates]:
        if self.ease_b is None:
            return [Candidates(np.zeros(0, np.int64), np.zeros(0, np.float32)) for _ in rows]
        return _top(self._exclude(rows, self._dense(rows, self.ease_scores)), k)

    def graph(self, rows: np.ndarray, k: int) -> list[Candidates]:
        has = np.linalg.norm(self.model.item_graph, axis=1) > 0

        def fn(r: np.ndarray) -> np.ndarray:
            s = self.model.user_graph[r] @ self.model.item_graph.T
            return np.where(has[None, :], s, NEG_INF)

        return _top(self._exclude(rows, self._dense(rows, fn)), k)

    def hybrid(self, rows: np.ndarray, k: int, parts: Mapping[str, list[Candidates]] | None = None) -> list[Candidates]:
        """alpha * content + (1 - alpha) * mean(item-kNN, user-kNN), each min-max normalised per user."""
        parts = dict(parts or {})
        for name in ("content", "item_knn", "user_knn"):
            if name not in parts:
                parts[name] = getattr(self, name)(rows, k)
        out = []
        a = self.p.alpha
        for i in range(len(rows)):
            total: dict[int, float] = {}
            for name, w in (("content", a), ("item_knn", (1 - a) / 2), ("user_knn", (1 - a) / 2)):
                c = parts[name][i]
                for item, s in zip(c.items.tolist(), minmax(c.scores).tolist(), strict=True):
                    total[item] = total.get(item, 0.0) + w * s
            if not total:
                out.append(Candidates(np.zeros(0, np.int64), np.zeros(0, np.float32)))
                continue
            ids = np.fromiter(total.keys(), dtype=np.int64, count=len(total))
            sc = np.fromiter(total.values(), dtype=np.float32, count=len(total))
            order = np.lexsort((ids, -sc))[:k]
            out.append(Candidates(ids[order], sc[order]))
        return out

    def _global(self, ranked: Candidates, rows: np.ndarray, k: int) -> list[Candidates]:
        out = []
        for r in rows:
            if r >= 0:
                excl = np.union1d(self.inter.seen[r].indices, self.inter.blocked[r].indices)
                keep = ~np.isin(ranked.items, excl)
                out.append(Candidates(ranked.items[keep][:k], ranked.scores[keep][:k]))
            else:
                out.append(Candidates(ranked.items[:k], ranked.scores[:k]))
        return out

    def trending_for(self, rows: np.ndarray, k: int) -> list[Candidates]:
        return self._global(self.trending, rows, k)

    def recent_for(self, rows: np.ndarray, k: int) -> list[Candidates]:
        if self.recent is None:
            return [Candidates(np.zeros(0, np.int64), np.zeros(0, np.float32)) for _ in rows]
        return self._global(self.recent, rows, k)

    def popular(self, rows: np.ndarray, k: int) -> list[Candidates]:
        return self._global(self.popularity, rows, k)

    def _age_hours(self) -> np.ndarray:
        avail = pd.to_datetime(self.items["available_at"], utc=True)
        return ((self.now - avail).dt.total_seconds() / 3600.0).to_numpy(dtype=np.float64)

    def fresh(self, rows: np.ndarray, k: int, queries: np.ndarray | None = None) -> list[Candidates]:
        age = self._age_hours()
        max_age = self.p.fresh_max_age_hours
        pool = np.flatnonzero((age >= 0) & (age <= max_age))
        q = self.profiles(rows) if queries is None else queries
        out = np.full((len(rows), len(self.items)), NEG_INF, dtype=np.float32)
        if len(pool):
            vec = self.item_vectors(pool)
            cos = q @ vec.T
            out[:, pool] = (np.exp(-age[pool] / max_age)[None, :] * (1.0 + cos) / 2.0).astype(np.float32)
        return _top(self._exclude_wide(rows, out), k)

    def followed(self, rows: np.ndarray, user_ids: Sequence[str], k: int) -> list[Candidates]:
        age = self._age_hours()
        creators = self.items["creator_id"].astype("string").fillna("").to_numpy(dtype=object)
        out = np.full((len(rows), len(self.items)), NEG_INF, dtype=np.float32)
        for i, u in enumerate(user_ids):
            f = self.follows.get(str(u))
            if f:
                sel = np.flatnonzero(np.isin(creators, list(f)) & (age >= 0))
                out[i, sel] = (1.0 / (1.0 + age[sel] / 24.0)).astype(np.float32)
        return _top(self._exclude_wide(rows, out), k)

    def _exclude_wide(self, rows: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """:meth:`_exclude` on a score matrix that may include contents added after fitting."""
        head = np.ascontiguousarray(scores[:, : self.n_fit])
        scores[:, : self.n_fit] = self._exclude(rows, head)
        return scores

    def item_vectors(self, positions: np.ndarray) -> np.ndarray:
        """Unified vectors by catalogue position (fitted contents and contents added later)."""
        return self.vectors[positions]

    # ---- all sources, merging, one-user API
    def all_sources(self, user_ids: Sequence[str], k: int | None = None) -> dict[str, list[Candidates]]:
        k = k or self.p.per_source
        rows = self.user_rows(user_ids)
        q = self._queries(user_ids, rows)
        parts: dict[str, list[Candidates]] = {
            "content": self.content(rows, k, q),
            "item_knn": self.item_knn(rows, k),
            "user_knn": self.user_knn(rows, k),
        }
        parts["hybrid"] = self.hybrid(rows, k, parts)
        parts["mf"] = self.mf(rows, k)
        parts["graph"] = self.graph(rows, k)
        parts["ease"] = self.ease(rows, k)
        parts["trending"] = self.trending_for(rows, k)
        parts["recent"] = self.recent_for(rows, k)
        parts["fresh"] = self.fresh(rows, k, q)
        parts["followed"] = self.followed(rows, user_ids, k)
        return parts

    def pair_state(self) -> PairState:
        """The arrays the pair features read (:mod:`components.retrieval.pair_features`), over
        this retriever's fitted members; built once per retriever."""
        key = (id(self.model), id(self.knn), id(self.inter), id(self.ease_b), id(self.activity), self.p)
        got = self.__dict__.get("_pair_state")
        if got is not None and got[0] == key:
            return got[1]  # type: ignore[no-any-return]
        m = self.model
        state = PairState(
            user_mf=m.user_mf,
            item_mf=m.item_mf,
            user_graph=m.user_graph,
            item_graph=m.item_graph,
            item_unified=m.item_unified,
            knn=self.knn.state(self.p),
            ease_b=self.ease_b,
            ease_x=(self.inter.positive() > 0).astype(np.float32) if self.ease_b is not None else None,
            activity=self.activity_matrix if self.activity is not None else None,
            activity_columns=[str(c) for c in self.activity.columns] if self.activity is not None else [],
            n_fit=self.n_fit,
        )
        self.__dict__["_pair_state"] = (key, state)
        return state

    def dense_scores(
        self, rows: np.ndarray, source: str, queries: np.ndarray | None = None, cols: np.ndarray | None = None
    ) -> np.ndarray:
        """One pair source's raw scores of user rows over the fitted catalogue, or over its
        contents at positions ``cols`` only (NaN: undefined, e.g. unknown users, contents without
        a neighbour or without a graph vector); :meth:`PairState.scores`."""
        q = self.profiles(rows) if queries is None else queries
        return self.pair_state().scores(rows, source, q, cols)

    def _queries(self, user_ids: Sequence[str], rows: np.ndarray) -> np.ndarray:
        q = self.profiles(rows)
        for i, r in enumerate(rows):
            if r < 0:
                q[i] = self.cold_profile(str(user_ids[i]))
        return q

    def pair_stats(self, user_ids: Sequence[str], batch: int = 256) -> np.ndarray:
        """``[n_users, len(PAIR_SOURCES), 2]`` float32: each pair source's mean and standard
        deviation over the user's whole catalogue (NaN when undefined), the normalisers of the
        ``z_<source>`` features. Computed in batch, so that :meth:`pair_features_at` can then
        score any few contents of the user without scoring the catalogue."""
        users = [str(u) for u in user_ids]
        out = np.full((len(users), len(PAIR_SOURCES), 2), np.nan, dtype=np.float32)
        state = self.pair_state()
        for b0 in range(0, len(users), batch):
            chunk = users[b0 : b0 + batch]
            rows = self.user_rows(chunk)
            out[b0 : b0 + len(chunk)] = state.stats(rows, self._queries(chunk, rows))
        return out

    @property
    def activity_matrix(self) -> np.ndarray:
        got = self.__dict__.get("_activity_matrix")
        if got is None:
            assert self.activity is not None
            got = self.activity.to_numpy(dtype=np.float32)
            self.__dict__["_activity_matrix"] = got
        return got

    def pair_features_at(self, user_id: str, positions: np.ndarray, stats: np.ndarray) -> dict[str, np.ndarray]:
        """:meth:`pair_features` of one user and the contents at catalogue ``positions``, given
        the user's :meth:`pair_stats` row (:meth:`PairState.features_at`, what serving calls on
        the exported arrays)."""
        rows = self.user_rows([user_id])
        q = self._queries([user_id], rows)
        return self.pair_state().features_at(int(rows[0]), q[0], positions, stats)

    def pair_features(self, user_ids: Sequence[str], content_ids: Sequence[str], batch: int = 256) -> pd.DataFrame:
        """Ranking features of arbitrary (user, content) pairs, defined identically whether or not
        a source retrieved the pair: each pair source's raw score (``score_<source>``) and its
        z-score over the user's whole catalogue (``z_<source>``), plus the content's activity
        (:func:`item_activity`, prefixed ``item_``). NaN where a score is undefined."""
        users = np.asarray([str(u) for u in user_ids], dtype=object)
        pos = pd.Index(self.index.content_ids[: self.n_fit]).get_indexer(pd.Index([str(c) for c in content_ids]))
        out = {f"{kind}_{s}": np.full(len(users), np.nan, dtype=np.float32) for s in PAIR_SOURCES for kind in ("score", "z")}
        state = self.pair_state()
        order = np.argsort(users, kind="stable")
        uniq, starts = np.unique(users[order], return_index=True)
        bounds = np.append(starts, len(order))
        for b0 in range(0, len(uniq), batch):
            chunk = uniq[b0 : b0 + batch]
            rows = self.user_rows(list(chunk))
            q = self._queries(list(chunk), rows)
            for s in PAIR_SOURCES:
                dense = state.scores(rows, s, q)
                mean, std = normalisers(dense)
                for i in range(len(chunk)):
                    sel = order[bounds[b0 + i] : bounds[b0 + i + 1]]
                    p_ = pos[sel]
                    ok = p_ >= 0
                    vals = np.full(len(sel), np.nan, dtype=np.float32)
                    vals[ok] = dense[i, p_[ok]]
                    out[f"score_{s}"][sel] = vals
                    out[f"z_{s}"][sel] = z_scores(vals, mean[i], std[i])
        out.update(state.activity_columns_at(pos))
        return pd.DataFrame(out)

    def cold_profile(self, user_id: str) -> np.ndarray:
        """Profile of a user without training events: preferred categories, when known."""
        prefs = self.preferred.get(user_id, [])
        return self.model.profile_from_categories(prefs) if prefs else np.zeros(self.model.item_unified.shape[1], np.float32)

    def retrieve(self, user_id: str, k: int | None = None) -> pd.DataFrame:
        """Merged candidates of one user: ``content_id, score, source``."""
        k = k or self.p.per_user
        parts = self.all_sources([user_id], max(k, self.p.per_source))
        fallback = self.popular(self.user_rows([user_id]), k)[0]
        items, scores, sources = merge({s: v[0] for s, v in parts.items()}, self.p.mix, k, fallback)
        return pd.DataFrame(
            {"content_id": [self.index.content_ids[i] for i in items], "score": scores, "source": sources}
        )

    def source_frame(self, user_id: str, source: str, k: int | None = None) -> pd.DataFrame:
        """One source's candidates for one user: ``content_id, score, source``."""
        c = self.all_sources([user_id], k or self.p.per_source)[source][0]
        return pd.DataFrame(
            {"content_id": [self.index.content_ids[i] for i in c.items], "score": c.scores, "source": source}
        )

    def add_content(self, content: pd.DataFrame) -> np.ndarray:
        """Embed new uploads from their metadata and add them to the index (no rebuild)."""
        vec = self.model.encoder.embed(content.reset_index(drop=True))
        ids = self.index.add(content["content_id"].astype(str).tolist(), vec)
        upload = pd.to_datetime(content["upload_timestamp"], utc=True) if "upload_timestamp" in content else pd.Series(self.now, index=content.index)
        new = pd.DataFrame(
            {
                "content_id": content["content_id"].astype(str).to_numpy(),
                "creator_id": _text_or_none(content["creator_id"]) if "creator_id" in content else None,
                "available_at": upload.fillna(self.now).to_numpy(),
            }
        )
        self.items = pd.concat([self.items, new], ignore_index=True)
        self.vectors = np.vstack([self.vectors, vec]).astype(np.float32)
        return ids


def fit_retrieval(
    events: pd.DataFrame,
    content: pd.DataFrame,
    users: pd.DataFrame,
    cut: pd.Timestamp,
    cp: CandidateParams,
    ep: EmbeddingParams,
    *,
    embeddings: EmbeddingModel | None = None,
    index: ContentIndex | None = None,
) -> Retriever:
    """Every retrieval source as of ``cut`` from the events before it; the embeddings are fitted
    on those events unless given (a stage's saved model), the index built unless given. The
    retrieval step of :class:`components.pipeline.Pipeline`."""
    model = embeddings if embeddings is not None else fit_embeddings(events, content, ep, now=cut)[0]
    return Retriever.fit(model, events, content, users, cut, cp, ep, index=index)


def candidate_table(retr: Retriever, user_ids: Sequence[str], k: int, batch: int = 256) -> pd.DataFrame:
    """Merged candidates of many users: ``user_id, content_id, score, source, rank``."""
    frames = []
    ids = retr.index.content_ids
    for start in range(0, len(user_ids), batch):
        chunk = list(user_ids[start : start + batch])
        parts = retr.all_sources(chunk, max(k, retr.p.per_source))
        fallback = retr.popular(retr.user_rows(chunk), k)
        for i, u in enumerate(chunk):
            items, scores, sources = merge({s: v[i] for s, v in parts.items()}, retr.p.mix, k, fallback[i])
            frames.append(
                pd.DataFrame(
                    {
                        "user_id": u,
                        "content_id": [ids[j] for j in items],
                        "score": np.asarray(scores, dtype=np.float32),
                        "source": sources,
                        "rank": np.arange(len(items), dtype=np.int32),
                    }
                )
            )
    if not frames:
        return pd.DataFrame({"user_id": [], "content_id": [], "score": [], "source": [], "rank": []})
    return pd.concat(frames, ignore_index=True)
