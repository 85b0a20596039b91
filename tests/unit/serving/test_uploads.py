"""Serving's uploads between exports, on a small hand-made artefact set: the item vectors grow
without rewriting published rows, the index overlay is searched with the exported index, the
catalogue's positions and tie-break ranks follow, and fresh candidates are the uploads closest
to the query."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any, cast

import numpy as np

from components.retrieval.serving_set import ServingIndex
from components.serving.catalogue import Catalogue
from components.serving.uploads import Uploads


def _world(n: int = 6, d: int = 4) -> tuple[Any, Catalogue]:
    import faiss

    vectors = np.eye(n, d, dtype=np.float32)
    flat = faiss.IndexIDMap2(faiss.IndexFlatIP(d))
    flat.add_with_ids(vectors, np.arange(n, dtype=np.int64))
    art = SimpleNamespace(item_vectors=vectors, index=ServingIndex(flat, "flat", 0), content_ids=[f"c{i}" for i in range(n)])
    return art, Catalogue(art.content_ids)


def test_vectors_grow_in_place_and_published_rows_stay() -> None:
    art, cat = _world()
    up = Uploads(cast(Any, art), cat, threading.Lock(), kept=3)
    first = up._grown(np.full((2, 4), 0.5, dtype=np.float32))
    art.item_vectors = first
    second = up._grown(np.full((1, 4), 0.25, dtype=np.float32))
    assert first.shape == (8, 4) and second.shape == (9, 4)
    assert second.base is first.base  # the spare rows were used: no copy of the catalogue
    np.testing.assert_array_equal(second[:8], first)
    np.testing.assert_array_equal(second[6:8], 0.5)


def test_index_overlay_and_catalogue_follow_an_added_content() -> None:
    art, cat = _world()
    positions = cat.extend(["b-new", "a-new"])
    assert positions.tolist() == [6, 7] and cat.lookup(["a-new", "c0", "zzz"]).tolist() == [7, 0, -1]
    assert cat.id_rank[7] == 0 and cat.id_rank[6] == 1  # "a-new" < "b-new" < "c0" ...
    added = np.array([[0, 0, 0, 2.0], [0, 0, 0, -1.0]], dtype=np.float32)
    art.index.add(added, positions)
    assert art.index.ntotal == 8 and art.index.n_added == 2
    scores, ids = art.index.search(np.array([[0, 0, 0, 1.0]], dtype=np.float32), 3)
    assert ids[0].tolist()[:2] == [6, 3]  # the added content beats the exported one
    assert scores[0][0] == 2.0


def test_fresh_candidates_are_the_recent_uploads_closest_to_the_query() -> None:
    art, cat = _world()
    up = Uploads(cast(Any, art), cat, threading.Lock(), kept=2)
    art.item_vectors = up._grown(np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]], dtype=np.float32))
    up.recent.extend([6, 7, 8])  # kept=2: the oldest (6) drops out
    assert up.candidates(np.array([1.0, 0, 0, 0]), 2).tolist() == [7, 8]  # 6 would match best, gone
    assert up.candidates(np.array([0, 0, 1.0, 0]), 1).tolist() == [8]
    assert up.candidates(np.zeros(4), 5).tolist() == [8, 7]  # no profile: the newest first


def test_uploads_get_their_share_of_the_exploration_slots() -> None:
    from components.serving.rerank import Reranker

    r = Reranker.__new__(Reranker)
    r.n_exported = 6
    below, ids = np.array([3, 7, 8, 2, 5]), ["c3", "u7", "u8", "c2", "c5"]
    r.settings = cast(Any, SimpleNamespace(explore_uploads=0.5))
    w = r.upload_weights(below, ids)
    assert w is not None and sum(w[c] for c in ("u7", "u8")) == 0.5 and w["c3"] == w["c2"] == w["c5"] == 0.5 / 3
    assert r.upload_weights(np.array([3, 2]), ["c3", "c2"]) is None  # no uploads: plain uniform
    r.settings = cast(Any, SimpleNamespace(explore_uploads=0.0))
    assert r.upload_weights(below, ids) is None
    r.settings = cast(Any, SimpleNamespace(explore_uploads=1.0))
    w = r.upload_weights(below, ids)
    assert w is not None and w["c3"] == 0.0 and w["u7"] == 0.5
