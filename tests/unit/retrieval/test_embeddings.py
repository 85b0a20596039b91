"""Embeddings on hand-built worlds: weights, ALS, NetMF, the unified vector and cold start."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from components.retrieval.content_encoder import ContentEncoder
from components.retrieval.embedding_model import (
    fit_embeddings,
    load_model,
    model_version,
    save_model,
)
from components.retrieval.embedding_params import EmbeddingParams
from components.retrieval.embeddings import neighbour_category_agreement
from components.retrieval.factorization import (
    _window_filters,
    als_confidence,
    fit_als,
    graph_adjacency,
    netmf,
)
from components.retrieval.interactions import Interactions, build_interactions, catalogue
from tests.fixtures.params import project_params
from tests.fixtures.worlds import SMALL, T0, content_row, events_frame, make_world

PROJECT = EmbeddingParams.from_params(project_params())

# ---------------------------------------------------------------------------------------------
# Interactions


def test_interaction_weights_seen_and_blocked() -> None:
    ev = events_frame(
        [
            {"type": "view", "user": "a", "content": "x", "ratio": 0.5},
            {"type": "like", "user": "a", "content": "x"},
            {"type": "view", "user": "a", "content": "y", "ratio": 3.0},  # capped at 2
            {"type": "view", "user": "b", "content": "x", "ratio": 0.05},
            {"type": "skip", "user": "b", "content": "x"},
            {"type": "hide", "user": "b", "content": "y"},
            {"type": "content_upload", "user": "creator", "content": "z"},  # supply, not an interaction
        ]
    )
    inter = build_interactions(ev, PROJECT, item_ids=["x", "y", "z"])
    assert inter.user_ids.tolist() == ["a", "b"]
    assert inter.item_ids.tolist() == ["x", "y", "z"]
    w = inter.weights.toarray()
    np.testing.assert_allclose(w[0], [0.5 + 2.0, 2.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(w[1], [0.05 - 0.5, -3.0, 0.0], atol=1e-6)
    assert inter.seen.toarray().tolist() == [[1, 1, 0], [1, 1, 0]]
    assert inter.blocked.toarray().tolist() == [[0, 0, 0], [0, 1, 0]]
    assert inter.positive().toarray()[1].tolist() == [0.0, 0.0, 0.0]


def test_als_confidence_likes_and_down_weighted_dislikes() -> None:
    import scipy.sparse as sp

    p = dataclasses.replace(PROJECT, alpha=10.0, negative_alpha=2.0)
    c = als_confidence(sp.csr_matrix(np.array([[2.0, -0.5]], dtype=np.float32)), p)
    np.testing.assert_allclose(c.toarray(), [[21.0, -2.0]])
    off = als_confidence(sp.csr_matrix(np.array([[2.0, -0.5]], dtype=np.float32)), dataclasses.replace(p, negative_alpha=0.0))
    np.testing.assert_allclose(off.toarray(), [[21.0, 0.0]])  # dislikes ignored when switched off


@pytest.mark.parametrize(
    "bad",
    [{"factors": 0}, {"alpha": 0.0}, {"graph_window": 0}, {"block_weights": {"colour": 1.0}}, {"block_weights": {"text": -1.0}}],
)
def test_params_reject_bad_values(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        dataclasses.replace(PROJECT, **bad)


def test_params_from_yaml_section() -> None:
    params = project_params(base={"seed": 7}, embeddings={"factors": 16, "event_weights": {"like": 5}})
    p = EmbeddingParams.from_params(params)
    assert p.seed == 7 and p.factors == 16
    assert p.event_weights["like"] == 5.0 and p.event_weights["share"] == params["embeddings"]["event_weights"]["share"]


# ---------------------------------------------------------------------------------------------
# ALS and NetMF


def _group_precision(user_vecs: np.ndarray, item_vecs: np.ndarray, inter: Interactions) -> float:
    """Share of each user's top-5 unseen contents in the user's own category."""
    scores = user_vecs @ item_vecs.T
    scores[inter.seen.toarray() > 0] = -np.inf
    top = np.argsort(-scores, axis=1)[:, :5]
    user_cat = np.array([u.split("_")[1] for u in inter.user_ids])
    item_cat = np.array([c.split("_")[0] for c in inter.item_ids])
    return float(np.mean(item_cat[top] == user_cat[:, None]))


def test_als_recovers_interest_groups_and_is_reproducible_across_threads() -> None:
    ev, content, _ = make_world()
    inter = build_interactions(ev, SMALL, item_ids=content["content_id"])
    u1, v1 = fit_als(inter, dataclasses.replace(SMALL, threads=1))
    u2, v2 = fit_als(inter, dataclasses.replace(SMALL, threads=2))
    np.testing.assert_array_equal(u1, u2)
    np.testing.assert_array_equal(v1, v2)
    assert _group_precision(u1, v1, inter) > 0.9


def test_netmf_separates_communities() -> None:
    ev, content, _ = make_world()
    inter = build_interactions(ev, SMALL, item_ids=content["content_id"])
    ug, vg = netmf(graph_adjacency(inter), SMALL)
    assert ug.shape == (inter.n_users, SMALL.graph_dim) and vg.shape == (inter.n_items, SMALL.graph_dim)
    assert _group_precision(ug, vg, inter) > 0.9
    again = netmf(graph_adjacency(inter), SMALL)
    np.testing.assert_array_equal(ug, again[0])


def test_netmf_window_filters() -> None:
    odd, even = _window_filters(np.array([0.5, 1.0]), 3)
    np.testing.assert_allclose(odd, [(0.5 + 0.125) / 3, 2 / 3])
    np.testing.assert_allclose(even, [0.25 / 3, 1 / 3])


def test_netmf_of_empty_graph_is_zeros() -> None:
    import scipy.sparse as sp

    ug, vg = netmf(sp.csr_matrix((3, 4), dtype=np.float32), SMALL)
    assert not ug.any() and not vg.any()


# ---------------------------------------------------------------------------------------------
# Content encoder, unified vectors and cold start


def test_encoder_blocks_skip_uninformative_features() -> None:
    content = pd.DataFrame([content_row("a", "cooking"), content_row("b", "cooking")])
    content["category"] = "unknown"
    content["description"] = None
    content["tags"] = None
    enc = ContentEncoder.fit(content, SMALL)
    enc.cf_dim = SMALL.factors
    assert enc.block_dims() == {"collaborative": SMALL.factors}  # no text, one category, no vectors


def test_encoder_category_onehot_and_visual_block() -> None:
    rows = [content_row("a", "cooking", visual_embedding=[1.0, 0.0]), content_row("b", "gaming"), content_row("c", "music")]
    content = pd.DataFrame(rows)
    enc = ContentEncoder.fit(content, SMALL)
    assert enc.categories == ["cooking", "gaming", "music"] and enc.visual_dim == 2
    onehot = enc.category_onehot(pd.DataFrame({"category": ["gaming", "unknown", "Cooking"]}))
    assert onehot.tolist() == [[0, 1, 0], [0, 0, 0], [1, 0, 0]]
    vis = enc.vectors(content, "visual")
    assert vis.tolist() == [[1.0, 0.0], [0.0, 0.0], [0.0, 0.0]]


def test_unified_vectors_are_unit_and_cluster_by_category() -> None:
    ev, content, _ = make_world()
    model, inter = fit_embeddings(ev, content, SMALL)
    norms = np.linalg.norm(model.item_unified, axis=1)
    np.testing.assert_allclose(norms, 1.0, atol=1e-5)
    cats = np.array([c.split("_")[0] for c in model.item_ids], dtype=object)
    assert neighbour_category_agreement(model.item_unified, cats, k=5) > 0.95
    assert model.user_profile.shape == (inter.n_users, model.item_unified.shape[1])


def test_cold_content_gets_a_vector_next_to_its_category() -> None:
    """Contents without interactions are embedded from metadata through the ridge map."""
    ev, content, _ = make_world()
    cold = pd.DataFrame([content_row("new_gaming", "gaming"), content_row("new_music", "music")])
    model, _ = fit_embeddings(ev, pd.concat([content, cold], ignore_index=True), SMALL)
    pos = {c: i for i, c in enumerate(model.item_ids)}
    assert model.cold[pos["new_gaming"]] and model.cold[pos["new_music"]]
    # the collaborative block alone (ridge prediction) already points at the right category
    cf = model.encoder.block_slices()["collaborative"]
    vecs = model.item_unified[:, cf]
    warm = ~model.cold
    for cid, cat in (("new_gaming", "gaming"), ("new_music", "music")):
        sims = vecs[warm] @ vecs[pos[cid]]
        best = np.array(model.item_ids[warm])[np.argsort(-sims)[:5]]
        assert all(b.startswith(cat) for b in best), (cid, best)
    # and a later upload is embedded by the fitted encoder in the same way
    later = model.encoder.embed(pd.DataFrame([content_row("later_travel", "travel")]))
    sims = model.item_unified @ later[0]
    assert model.item_ids[int(np.argmax(sims))].startswith("travel")


def test_catalogue_availability_uses_upload_time_then_first_event() -> None:
    content = pd.DataFrame([content_row("a", "cooking", hours=-1), content_row("b", "gaming", hours=5)])
    content.loc[1, "upload_timestamp"] = pd.NaT
    ev = events_frame([{"content": "b", "t": 2}, {"content": "c", "t": 3}])
    cat = catalogue(content, ev, now=T0 + pd.Timedelta(hours=2.5))
    assert cat["content_id"].tolist() == ["a", "b"]  # c is first seen after now
    assert catalogue(content, ev)["content_id"].tolist() == ["a", "b", "c"]


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    ev, content, _ = make_world(n_users_per_cat=4, n_items_per_cat=8)
    model, _ = fit_embeddings(ev, content, SMALL)
    save_model(model, tmp_path)
    back = load_model(tmp_path)
    np.testing.assert_array_equal(back.item_unified, model.item_unified)
    np.testing.assert_array_equal(back.user_graph, model.user_graph)
    assert back.item_ids.tolist() == model.item_ids.tolist()
    assert model_version(back) == model_version(model)
    probe = pd.DataFrame([content_row("p", "music")])
    np.testing.assert_allclose(back.encoder.embed(probe), model.encoder.embed(probe))


class _Payload:
    """A pickle that runs code when loaded: it creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.marker,))


def test_a_tampered_encoder_pickle_is_refused_before_it_is_unpickled(tmp_path: Path) -> None:
    """Issue 16: ``encoder.pkl`` loads only with the SHA-256 that ``meta.json`` recorded; a
    replaced, truncated or unrecorded pickle is refused with the file and both hashes, and its
    code never runs."""
    import json
    import pickle

    from components.core.integrity import IntegrityError, sha256_hex

    ev, content, _ = make_world(n_users_per_cat=4, n_items_per_cat=8)
    model, _ = fit_embeddings(ev, content, SMALL)
    save_model(model, tmp_path)
    meta = json.loads((tmp_path / "meta.json").read_text())
    good = (tmp_path / "encoder.pkl").read_bytes()
    assert meta["encoder_sha256"] == sha256_hex(good)
    marker = tmp_path / "pwned"
    evil = pickle.dumps(_Payload(marker))
    (tmp_path / "encoder.pkl").write_bytes(evil)
    with pytest.raises(IntegrityError) as refused:
        load_model(tmp_path)
    msg = str(refused.value)
    assert str(tmp_path / "encoder.pkl") in msg and sha256_hex(evil) in msg and meta["encoder_sha256"] in msg
    assert not marker.exists()  # refused before unpickling: the payload never ran
    (tmp_path / "encoder.pkl").write_bytes(good[: len(good) // 2])
    with pytest.raises(IntegrityError, match="does not match"):
        load_model(tmp_path)
    (tmp_path / "encoder.pkl").write_bytes(good)
    del meta["encoder_sha256"]
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(IntegrityError, match="no SHA-256 recorded"):
        load_model(tmp_path)


def test_fit_embeddings_is_deterministic() -> None:
    ev, content, _ = make_world(n_users_per_cat=4, n_items_per_cat=8)
    a, _ = fit_embeddings(ev, content, SMALL)
    b, _ = fit_embeddings(ev, content, SMALL)
    assert model_version(a) == model_version(b)
