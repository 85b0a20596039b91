"""The serving engine on a tiny project built by the real pipeline (materialize, candidates, train,
export): it serves from the exported artefact set; the batch retriever fitted beside it is what
it must agree with.

One module-scoped project (~1.5 min to build); the registry then gets the trained ranker in
production, and re-weighted copies of it (other versions, other scores) as canary and shadow.
The tests run in file order: later ones change the registry (promotion, rollback, archive).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from components.core.catalog import DataPaths
from components.core.config import deep_merge, load_params
from components.deploy.artefacts import resolve_model_dir
from components.deploy.gates.canary import in_canary
from components.deploy.registry import ModelRegistry
from components.deploy.registry import run as register_latest
from components.features.context import RequestContext
from components.ranking.artefact import load, save
from components.ranking.model import RankerModel
from components.retrieval.export import fit_retriever, seen_by_user
from components.retrieval.export import run as export
from components.retrieval.retriever import Retriever
from components.serving.engine import Recommender
from components.serving.feed import Feed, FeedItem
from components.serving.impressions import ImpressionLog
from components.serving.rerank import boost, trend_factors
from components.serving.settings import ServingSettings
from components.serving.stream import moderated_contents
from tests.fixtures.params import project_params
from tests.fixtures.tiny_project import copy_project

T0 = datetime(2026, 3, 1, tzinfo=UTC)
K = 10


# ---------------------------------------------------------------------------------------------
# Pure helpers (no project)


def test_boost_never_lowers_and_scales_positive_scores() -> None:
    s = np.array([2.0, -2.0, 0.0, 1.0])
    t = np.array([0.5, 0.5, 0.5, 0.0])
    out = boost(s, t, 0.2)
    assert np.allclose(out, [2.2, -1.8, 0.0, 1.0])
    assert np.all(out >= s)


def test_trend_factors_in_unit_interval_zero_when_not_trending() -> None:
    f = trend_factors(5, np.array([3, 1]), np.array([4.0, -1.0]))
    assert np.allclose(f, [0.0, 0.0, 0.0, 0.8, 0.0])


def test_moderation_counts_distinct_reporters_over_threshold() -> None:
    ev = pd.DataFrame(
        {
            "user_id": ["a", "b", "c", "a", "a", "b"],
            "content_id": ["x", "x", "x", "y", "y", None],
            "event_type": ["report", "report", "report", "report", "report", "report"],
        }
    )
    assert moderated_contents(ev, 2) == {"x"}
    assert moderated_contents(ev, 0) == {"x", "y"}
    assert moderated_contents(ev, 3) == frozenset()


def test_seen_by_user_ignores_uploads() -> None:
    ev = pd.DataFrame(
        {
            "user_id": ["a", "a", "b", None],
            "content_id": ["x", "y", "x", "z"],
            "event_type": ["view", "like", "skip", "content_upload"],
        }
    )
    assert seen_by_user(ev) == {"a": {"x", "y"}, "b": {"x"}}


def test_settings_from_params() -> None:
    project = ServingSettings.from_params(project_params())
    assert project.realtime_weight == load_params()["serving"]["realtime_weight"]  # no code default in between
    s = ServingSettings.from_params(
        project_params(
            base={"seed": 7},
            serving={"moderation_report_threshold": 0, "budget_ms": 150},
            promote={"canary": {"share": 0.5, "salt": "s"}},
        )
    )
    assert (s.moderation_report_threshold, s.budget_ms, s.canary_share, s.canary_salt, s.seed) == (
        0,
        150.0,
        0.5,
        "s",
        7,
    )
    with pytest.raises(ValueError):
        dataclasses.replace(s, budget_ms=0)


def test_impression_log_flushes_every_n_rows(tmp_path: Path) -> None:
    logbook = ImpressionLog(tmp_path / "imp", flush_every=3, clock=lambda: 0.0)
    row: dict[str, Any] = {
        "request_id": "r",
        "user_id": "u",
        "content_id": "c",
        "position": 0,
        "timestamp": pd.Timestamp("2026-01-01", tz="UTC"),
    }
    logbook.add([row, row])
    assert not (tmp_path / "imp").exists()
    snap = {**row, "features": np.array([1.5, np.nan], dtype=np.float32)}
    logbook.add([row, snap])
    assert len(logbook) == 0  # handed to the background writer
    assert logbook.flush() is None  # nothing left to write; waits for the writer
    assert len(logbook.files) == 1
    back = pd.read_parquet(logbook.files[0])
    assert len(back) == 4 and back["features"].isna().tolist() == [True, True, True, False]
    assert np.array_equal(back["features"].iloc[3], [1.5, np.nan], equal_nan=True)


# ---------------------------------------------------------------------------------------------
# The tiny project


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, tiny_pipeline: Path) -> Path:
    root = copy_project(tiny_pipeline, tmp_path_factory.mktemp("serving"))
    paths = DataPaths(root)
    rec = register_latest(paths, now=T0)
    with ModelRegistry(paths) as reg:
        for i, stage in enumerate(("shadow", "canary", "production")):
            reg.promote(rec.version, stage, now=T0 + timedelta(minutes=i + 1), reason="test")
    return root


@pytest.fixture(scope="module")
def params(project: Path) -> dict[str, Any]:
    p = yaml.safe_load((project / "params.yaml").read_text())
    return deep_merge(p, {"serving": {"moderation_report_threshold": 0, "budget_ms": 5000}})  # every reported content


@pytest.fixture(scope="module")
def retriever(project: Path, params: dict[str, Any]) -> Retriever:
    """The batch retriever at the export's cut (training code: what serving must agree with)."""
    return fit_retriever(params, DataPaths(project))[0]


@pytest.fixture(scope="module")
def engine(project: Path, params: dict[str, Any]) -> Iterator[Recommender]:
    rec = Recommender.load(params, DataPaths(project))
    yield rec
    rec.close()


@pytest.fixture(scope="module")
def production_version(project: Path) -> str:
    with ModelRegistry(DataPaths(project)) as reg:
        dep = reg.deployment()
    assert dep.production is not None
    return dep.production.version


def ctx(engine: Recommender) -> RequestContext:
    return RequestContext(int(engine.artifacts.now.timestamp()), 60, "ios", "wifi")


def batch_users(engine: Recommender) -> list[str]:
    """The users the batch had events of (snapshot rows flagged known)."""
    snap = engine.snapshot
    return [str(u) for u, k in zip(snap.user_ids, engine.artifacts.known, strict=True) if k]


def known_users(engine: Recommender) -> list[str]:
    return [u for u in batch_users(engine) if engine.seen(u)]


def read_log(engine: Recommender) -> pd.DataFrame:
    engine.flush()
    return pd.read_parquet(engine.impressions.directory)


def variant(project: Path, weights: dict[str, float], name: str) -> str:
    """Register a re-weighted copy of the trained ranker (another version, other scores)."""

    base: RankerModel = load(resolve_model_dir(project / "data" / "models" / "ranker"))
    model = base.with_weights(weights)
    out = save(model, project / "variants" / name)
    with ModelRegistry(DataPaths(project)) as reg:
        reg.register(out, metrics={}, data_version="test", now=T0 + timedelta(hours=1))
    return model.version


def test_load_is_ready_and_moderates(engine: Recommender) -> None:
    assert engine.readiness() == {"model": True, "index": True, "store": True}
    assert engine.load_seconds["total"] > 0
    assert engine.moderated, (
        "the tiny data has reports; threshold 0 moderates each reported content"
    )


def test_known_user_feed(engine: Recommender, production_version: str) -> None:
    users = known_users(engine)[:25]
    explored = 0
    for i, u in enumerate(users):
        feed = engine.recommend(u, K, ctx(engine), request_id=f"known-{i}")
        assert isinstance(feed, Feed) and not feed.degraded, feed.reason
        assert (feed.reason, feed.arm, feed.model_version) == (
            "ok",
            "production",
            production_version,
        )
        assert len(feed.items) == K
        ids = [it.content_id for it in feed.items]
        assert len(set(ids)) == K
        assert not set(ids) & engine.seen(u), "a seen content was recommended"
        assert not set(ids) & engine.moderated
        assert [it.position for it in feed.items] == list(range(K))
        exploit = [it.score for it in feed.items if not it.exploration]
        assert exploit == sorted(exploit, reverse=True), "exploit slots are not by score"
        assert all(0.0 < it.propensity <= 1.0 for it in feed.items)
        eps = engine.settings.exploration.epsilon
        for it in feed.items:
            if it.exploration:
                assert it.propensity < 1.0 - eps + 1e-9
            else:
                assert it.propensity >= 1.0 - eps - 1e-9
        explored += sum(it.exploration for it in feed.items)
        assert {"candidates", "features", "scoring", "rerank", "total"} <= set(feed.timings_ms)
    # epsilon = 0.1 over 250 slots: some exploration, far from all
    assert 0 < explored < 0.3 * K * len(users)


def test_same_request_id_gives_the_same_feed(engine: Recommender) -> None:
    u = known_users(engine)[0]
    a = engine.recommend(u, K, ctx(engine), request_id="same")
    b = engine.recommend(u, K, ctx(engine), request_id="same")
    assert a.items == b.items


def test_unknown_user_gets_a_cold_start_feed(engine: Recommender, production_version: str) -> None:
    feed = engine.recommend("u_never_seen_before", K, ctx(engine), request_id="cold")
    assert not feed.degraded and feed.reason == "cold_start"
    assert feed.model_version == production_version and len(feed.items) == K


def test_serving_features_match_the_training_join(
    engine: Recommender, retriever: Retriever, params: dict[str, Any], project: Path
) -> None:
    """Serving (online store + item cache + pair features) gives the model the values the
    offline point-in-time join (:meth:`components.pipeline.Pipeline.row_features`) gives training,
    for a request after the last materialised feature row."""
    from components.features.feast_repo import StoreSettings, open_store
    from components.pipeline import Fitted, Pipeline

    model = engine.models.production()
    fetcher = engine.fetcher
    assert fetcher is not None
    end = fetcher.items.asof
    assert end is not None
    at = max(pd.Timestamp(end), engine.artifacts.now) + pd.Timedelta(seconds=1)
    context = RequestContext(int(at.timestamp()), 0, None, None)
    u = known_users(engine)[1]
    cids = retriever.retrieve(u)["content_id"].astype(str).tolist()[:60]
    served = engine.features(u, cids, context)
    assert not (set(model.feature_cols) - set(served)), "serving lacks model columns"
    rows = pd.DataFrame(
        {
            "user_id": u,
            "content_id": cids,
            "event_timestamp": pd.Series([at] * len(cids)).astype("datetime64[ns, UTC]"),
        }
    )
    store = open_store(DataPaths(project), StoreSettings.from_params(params))
    offline = Pipeline.of(params).row_features(Fitted(retriever, at, store), rows)
    online = pd.DataFrame(
        {
            c: np.broadcast_to(np.asarray(served[c], dtype=float), len(cids))
            for c in model.feature_cols
        }
    )
    off = offline[model.feature_cols].astype(float).reset_index(drop=True)
    filled = online.notna().any()
    assert filled.mean() > 0.9, f"mostly empty features: {list(filled.index[~filled])}"
    differ = [
        c
        for c in model.feature_cols
        if not np.allclose(online[c], off[c], rtol=1e-5, atol=1e-6, equal_nan=True)
    ]
    assert not differ, f"train/serve skew in {differ}"


def declared_only(retr: Retriever) -> list[str]:
    """Users with declared categories but no events (exported with their own snapshot row)."""
    return [u for u in retr.preferred if retr.user_rows([u])[0] < 0]


def test_pair_features_at_equal_the_batch_pair_features(engine: Recommender, retriever: Retriever) -> None:
    """Serving's per-request pair features (the exported, memory-mapped arrays; candidates only;
    exported normalisers) equal the batch's catalogue-wide ones and the batch retriever's own
    at-positions path, for a known user, the cold row and users with declared categories, at
    candidate and random positions."""
    retr = retriever
    rng = np.random.default_rng(0)
    n = len(retr.index.content_ids)
    declared = [*declared_only(retr)[:1], *[u for u in retr.preferred if retr.user_rows([u])[0] >= 0][:1]]
    users = [known_users(engine)[4], "u_unknown_pair", *declared]
    for u in users:
        pos, _, stats, _ = engine.candidates.snapshot_candidates(u)
        pos = np.concatenate([pos[:80], rng.integers(0, n, 40)])
        served = engine.pair_features(u, pos, stats)
        at = retr.pair_features_at(u, pos, stats)
        batch = retr.pair_features([u] * len(pos), [retr.index.content_ids[p] for p in pos])
        assert set(served) == set(batch.columns) == set(at)
        for c in batch.columns:
            assert np.allclose(served[c], batch[c].to_numpy(), rtol=1e-5, atol=1e-6, equal_nan=True), (u, c)
            assert np.array_equal(served[c], at[c], equal_nan=True), (u, c)
        assert np.isfinite(served["score_content"]).any() or u == "u_unknown_pair"


def test_snapshot_candidates_are_the_retrievers(engine: Recommender, retriever: Retriever, tmp_path: Path) -> None:
    """The exported snapshot holds what live retrieval returns (same contents, same sources) for
    the batch's users, users with declared categories only and unknown users, and survives a
    save / memory-mapped load unchanged."""
    from components.retrieval.snapshot import CandidateSnapshot

    snap = engine.snapshot
    declared = declared_only(retriever)
    assert snap.n_users == len(retriever.model.user_ids) + len(declared)
    for u in [*known_users(engine)[5:8], *declared[:2], "u_unknown_snap"]:
        live = retriever.retrieve(u)
        pos, sources, _, cold = engine.candidates.snapshot_candidates(u)
        assert cold == (u == "u_unknown_snap" or u in declared)
        got = dict(zip(engine.contents.ids[pos], sources, strict=True))
        assert got == dict(zip(live["content_id"], live["source"], strict=True))
    assert engine.seen(known_users(engine)[0]) <= set(engine.catalogue())
    back = CandidateSnapshot.load(snap.save(tmp_path / "snap"))
    assert not back.positions.flags.owndata and not back.positions.flags.writeable  # mapped, read-only
    for name in ("indptr", "positions", "sources", "scores", "stats"):
        assert np.array_equal(getattr(back, name), getattr(snap, name), equal_nan=True), name
    assert list(back.user_ids) == list(snap.user_ids) and back.source_names == snap.source_names


def test_seen_sets_are_the_events(engine: Recommender, project: Path) -> None:
    """The exported seen sets are every catalogue content each user interacted with."""
    events = pd.read_parquet(DataPaths(project).interim / "events.parquet")
    catalogue = set(engine.catalogue())
    for u, contents in list(seen_by_user(events).items())[:30]:
        assert engine.seen(u) == contents & catalogue, u


def test_exported_set_round_trip_serves_the_same_feeds(
    engine: Recommender, params: dict[str, Any], project: Path, tmp_path: Path
) -> None:
    """Export again into another folder, load a recommender from it: same manifest arrays, same
    feeds as the one loaded from the stage's output; nothing of it is a private copy."""
    out = export(params, DataPaths(project), tmp_path / "set")
    assert out.users == engine.snapshot.n_users and out.contents == len(engine.catalogue())
    other = Recommender.load(params, DataPaths(project), artifacts=out.directory)
    try:
        assert other.artifacts.manifest["arrays"] == engine.artifacts.manifest["arrays"]
        assert not other.artifacts.item_vectors.flags.owndata and not other.artifacts.item_vectors.flags.writeable
        assert not other.artifacts.pair.knn.item_sim.data.flags.writeable
        for i, u in enumerate([*known_users(engine)[:5], "u_cold_set"]):
            a = engine.recommend(u, K, ctx(engine), request_id=f"set-{i}")
            b = other.recommend(u, K, ctx(engine), request_id=f"set-{i}")
            assert not b.degraded, b.reason
            assert [(it.content_id, it.source, it.exploration) for it in a.items] == [
                (it.content_id, it.source, it.exploration) for it in b.items
            ]
            assert np.allclose([it.score for it in a.items], [it.score for it in b.items])
    finally:
        other.close()


def test_serving_refuses_a_stale_or_missing_set(
    engine: Recommender, params: dict[str, Any], project: Path, tmp_path: Path
) -> None:
    """No set, another schema version, an array of the wrong shape, another pair-feature version,
    a production model asking for pair features the set does not produce: the load refuses,
    saying what to run."""
    import json
    import shutil

    from components.serving.artifacts import ArtifactError, artifacts_dir, check_model

    src = artifacts_dir(DataPaths(project))
    with pytest.raises(ArtifactError, match=r"no serving artefact set .*dvc repro export"):
        Recommender.load(params, DataPaths(project), artifacts=tmp_path / "nothing")

    def broken(name: str, edit: Any) -> Path:
        d = tmp_path / name
        shutil.copytree(src, d)
        edit(d)
        return d

    def manifest_edit(**changes: Any) -> Any:
        def edit(d: Path) -> None:
            m = json.loads((d / "manifest.json").read_text())
            m.update(changes)
            (d / "manifest.json").write_text(json.dumps(m))

        return edit

    def rehash(d: Path) -> None:  # a consistent manifest over edited files: the later checks run
        from components.core.integrity import file_sums

        manifest_edit(files=file_sums(d, skip=("manifest.json",)))(d)

    def flip(f: Path) -> None:
        data = bytearray(f.read_bytes())
        data[len(data) // 2] ^= 0xFF
        f.write_bytes(bytes(data))

    def truncate(folder: Path) -> None:
        f = max((p for p in folder.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])

    cases = {
        "schema": (manifest_edit(schema_version=0), r"schema version 0, this serving code reads 1"),
        "features": (manifest_edit(feature_version="0" * 16), r"pair-feature version 0000000000000000"),
        "shape": (
            lambda d: (np.save(d / "catalogue" / "item_vectors.npy", np.zeros((3, 2), np.float32)), rehash(d)),
            r"catalogue/item_vectors.npy is float32\[3, 2\], the manifest says",
        ),
        # integrity (issue 16): every file against the manifest's SHA-256, before any is opened
        "tampered": (lambda d: flip(d / "index.faiss"), r"index.faiss has SHA-256 [0-9a-f]{64}, not the [0-9a-f]{64}"),
        "truncated": (lambda d: truncate(d / "snapshot"), r"snapshot/.* has SHA-256 [0-9a-f]{64}, not the"),
        "unlisted": (lambda d: (d / "extra.pkl").write_bytes(b"x"), r"extra.pkl is not listed"),
        "no hashes": (manifest_edit(files={}), r"no file hashes recorded"),
        "missing": (lambda d: (d / "pair" / "knn.item_sim.data.npy").unlink(), r"knn.item_sim.data.npy is missing"),
        "index": (lambda d: (d / "index.faiss").unlink(), r"index.faiss is missing"),
    }
    for name, (edit, message) in cases.items():
        with pytest.raises(ArtifactError, match=message + r".*dvc repro export"):
            Recommender.load(params, DataPaths(project), artifacts=broken(name, edit))
    with pytest.raises(ArtifactError, match=r"needs pair features \['score_tfidf'\].*dvc repro ranking export"):
        check_model(engine.artifacts, ["score_content", "score_tfidf"], "v-test")
    check_model(engine.artifacts, engine.models.production().feature_cols, "production")


def test_serving_imports_no_training_code(project: Path, params: dict[str, Any]) -> None:
    """Loading a recommender from the set and serving a request imports neither the batch
    retriever, the embeddings, the export, the ranking stage nor evaluation."""
    import subprocess
    import sys

    code = (
        "import sys, yaml\n"
        "from pathlib import Path\n"
        "from components.core.catalog import DataPaths\n"
        "from components.features.context import RequestContext\n"
        "from components.serving.engine import Recommender\n"
        f"p = yaml.safe_load(Path({str(project / 'params.yaml')!r}).read_text())\n"
        "p['serving']['compile_ranker'] = False\n"
        f"rec = Recommender.load(p, DataPaths(Path({str(project)!r})))\n"
        "feed = rec.recommend('u_nobody', 5, RequestContext(rec.data_now_s, 0, None, None), request_id='x')\n"
        "assert not feed.degraded, feed.reason\n"
        "rec.close()\n"
        "bad = ('components.retrieval.candidates', 'components.retrieval.embeddings', 'components.retrieval.export',\n"
        "       'components.retrieval.retriever', 'components.retrieval.holdout', 'components.retrieval.embedding_model',\n"
        "       'components.retrieval.factorization', 'components.retrieval.content_encoder',\n"
        "       'components.ranking.stage', 'components.evaluation.stage')\n"
        "print(sorted(m for m in bad if m in sys.modules))\n"
    )
    from tests.fixtures.tiny_project import tool_env

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=tool_env(), timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout


def test_logged_feature_snapshot_reproduces_the_score(engine: Recommender) -> None:
    """Each impression carries the model's input row: scoring it again gives the logged score."""
    u = known_users(engine)[6]
    feed = engine.recommend(u, K, ctx(engine), request_id="snapshot-row")
    logged = read_log(engine)
    mine = logged[logged["request_id"] == "snapshot-row"]
    assert len(mine) == K
    model = engine.models.production()
    x = np.stack([np.asarray(f, dtype=np.float32) for f in mine["features"]])
    assert x.shape == (K, len(model.feature_cols))
    assert np.allclose(model.predict(x), mine["model_score"].to_numpy(), rtol=1e-5, atol=1e-6)
    assert feed.model_version == model.version


def test_streamed_reports_moderate_a_content(engine: Recommender) -> None:
    """Reports arriving through the event stream moderate a content once more distinct
    established users than the threshold reported it (0 here: the first report), from the next
    request on; a report from an invented user id counts for nothing."""
    u = known_users(engine)[7]
    first = engine.recommend(u, K, ctx(engine), request_id="mod-1")
    target = first.items[0].content_id
    assert target not in engine.moderated
    engine.observe(
        pd.DataFrame({"user_id": ["reporter-a"], "content_id": [target], "event_type": ["report"]})
    )
    assert target not in engine.moderated, "an invented user's report must not count"
    engine.observe(
        pd.DataFrame({"user_id": [known_users(engine)[9]], "content_id": [target], "event_type": ["report"]})
    )
    assert target in engine.moderated
    again = engine.recommend(u, K, ctx(engine), request_id="mod-2")
    assert target not in {it.content_id for it in again.items}
    other = known_users(engine)[8]
    assert target not in {
        it.content_id for it in engine.recommend(other, K, ctx(engine), request_id="mod-3").items
    }
    fb = engine.fallback(other, 50, request_id="mod-4", reason="test")
    assert target not in {it.content_id for it in fb.items}


def upload_events(content_id: str, creator: str, category: str, at: pd.Timestamp) -> pd.DataFrame:
    """One ``content_upload`` as the event stream stores it."""
    meta = {"category": category, "tags": [f"#{category}", "#new"], "description": f"{category} new upload", "duration_s": 21.0}
    return pd.DataFrame(
        {
            "event_id": [f"up-{content_id}"], "event_type": ["content_upload"], "user_id": [f"user_{creator}"],
            "content_id": [content_id], "creator_id": [creator], "timestamp": [at], "metadata": [json.dumps(meta)],
        }
    )  # fmt: skip


def test_an_upload_is_served_from_its_metadata_before_any_retrain(
    project: Path, params: dict[str, Any], retriever: Retriever
) -> None:
    """A ``content_upload`` reaching the engine (POST /v1/events, a worker's stream, a restart's
    replay) is embedded from its metadata with the export's encoder (the vector the batch
    retriever gives it), indexed for the real-time ANN, and offered to a user whose interests
    match as a ``fresh`` candidate that the ranker scores (its ``content`` score) and serves."""
    import pyarrow as pa

    from components.data.ingestion.stream import upload_content

    with Recommender.load(params, DataPaths(project)) as rec:  # a private engine: the catalogue grows
        content = pd.read_parquet(project / "data/interim/content.parquet", columns=["content_id", "category"])
        category = content.set_index("content_id")["category"].astype(str)
        user = known_users(rec)[5]
        liked = category.reindex(sorted(rec.seen(user))).value_counts()
        n_before = rec.artifacts.index.ntotal
        ev = upload_events("upload-test-1", "creator-new", str(liked.index[0]), rec.artifacts.now)
        rec.observe(ev)
        pos = int(rec.contents.lookup(["upload-test-1"])[0])
        assert pos == n_before and rec.artifacts.index.ntotal == n_before + 1
        assert rec.uploads.added == 1
        rows = upload_content([pa.Table.from_pandas(ev, preserve_index=False)])
        expected = np.asarray(retriever.model.encoder.embed(rows), dtype=np.float32)[0]
        np.testing.assert_allclose(rec.artifacts.item_vectors[pos], expected, rtol=1e-5, atol=1e-6)
        _, ids = rec.artifacts.index.search(expected.reshape(1, -1), 3)
        assert pos in ids[0].tolist()  # the ANN (real-time source) reaches it
        cands = rec.candidates.assemble(user, None)
        # the batch's own "fresh" source (recent uploads before the export) shares the name
        assert "upload-test-1" in cands.content_ids[cands.sources == "fresh"].tolist()
        cols = rec.features(user, ["upload-test-1"], ctx(rec))
        assert np.isfinite(cols["score_content"][0]) and np.isnan(cols["score_mf"][0])
        feed = rec.recommend(user, len(cands.positions), ctx(rec), request_id="upload-1")
        assert not feed.degraded, feed.reason
        assert [it.source for it in feed.items if it.content_id == "upload-test-1"] == ["fresh"]
        rec.observe(ev)  # the same upload again (another worker, a replay): nothing added
        assert rec.artifacts.index.ntotal == n_before + 1 and rec.uploads.added == 1
        # once seen, it leaves that user's candidates like any other content
        rec.observe(pd.DataFrame({"user_id": [user], "content_id": ["upload-test-1"], "event_type": ["view"]}))
        again = rec.candidates.assemble(user, None)
        assert "upload-test-1" not in again.content_ids.tolist()


def test_note_seen_removes_contents(engine: Recommender) -> None:
    u = known_users(engine)[2]
    first = engine.recommend(u, K, ctx(engine), request_id="ns-1")
    shown = [it.content_id for it in first.items]
    engine.note_seen(u, shown)
    engine.observe(pd.DataFrame({"user_id": [u], "content_id": [None], "event_type": ["view"]}))
    second = engine.recommend(u, K, ctx(engine), request_id="ns-2")
    assert not {it.content_id for it in second.items} & set(shown)


def test_canary_routing_and_shadow_scores(
    engine: Recommender, project: Path, production_version: str
) -> None:
    canary_v = variant(project, {"like": 0.0, "share": 0.0}, "canary")
    shadow_v = variant(project, {"engaged": 0.2, "negative": -3.0}, "shadow")
    with ModelRegistry(DataPaths(project)) as reg:
        reg.promote(canary_v, "shadow", now=T0 + timedelta(hours=2), reason="test")
        reg.promote(canary_v, "canary", now=T0 + timedelta(hours=3), reason="test")
        reg.promote(shadow_v, "shadow", now=T0 + timedelta(hours=4), reason="test")
    assert engine.refresh()
    assert engine.versions() == {
        "production": production_version,
        "canary": canary_v,
        "shadow": shadow_v,
    }
    users = batch_users(engine)
    expected = in_canary(users, engine.settings.canary_share, engine.settings.canary_salt)
    feeds = [
        engine.recommend(u, K, ctx(engine), request_id=f"arm-{i}") for i, u in enumerate(users)
    ]
    for feed, is_canary in zip(feeds, expected, strict=True):
        assert not feed.degraded, feed.reason
        assert feed.arm == ("canary" if is_canary else "production")
        assert feed.model_version == (canary_v if is_canary else production_version)
        assert feed.shadow_version == shadow_v
    share = float(np.mean([f.arm == "canary" for f in feeds]))
    assert abs(share - engine.settings.canary_share) < 0.1, share

    # shadow scores: in the log, never in the feed
    assert "shadow" not in {f.name for f in dataclasses.fields(FeedItem)}
    logged = read_log(engine)
    mine = logged[logged["request_id"].str.startswith("arm-")]
    assert len(mine) == K * len(users)
    assert mine["shadow_version"].eq(shadow_v).all() and mine["shadow_score"].notna().all()
    assert (mine["shadow_score"] != mine["model_score"]).mean() > 0.5
    by_key = mine.set_index(["request_id", "content_id"])
    for feed in feeds[:20]:
        for it in feed.items:
            row: Any = by_key.loc[(feed.request_id, it.content_id)]
            assert row["score"] == pytest.approx(it.score)
            assert row["propensity"] == pytest.approx(it.propensity)
            assert row["arm"] == feed.arm and row["model_version"] == feed.model_version
            assert row["position"] == it.position
            assert it.score != pytest.approx(row["shadow_score"])


def test_broken_store_falls_back_to_popularity(
    engine: Recommender, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert engine.fetcher is not None

    def unreachable(*_: Any, **__: Any) -> Any:
        raise ConnectionError("online store unreachable")

    monkeypatch.setattr(engine.fetcher, "user_features", unreachable)
    u = known_users(engine)[3]
    feed = engine.recommend(u, K, ctx(engine), request_id="broken")
    assert feed.degraded and feed.arm == "fallback" and feed.model_version is None
    assert "ConnectionError" in feed.reason and feed.reason.startswith("features")
    assert len(feed.items) == K
    ids = [it.content_id for it in feed.items]
    assert not set(ids) & engine.seen(u)
    assert {it.source for it in feed.items} <= {"recent", "popular"}
    popular = [c for c, _, _ in engine._popular if c not in engine.seen(u) | engine.moderated]
    assert ids == popular[:K]
    assert engine.readiness()["store"] is False
    logged = read_log(engine)
    assert logged.loc[logged["request_id"] == "broken", "arm"].eq("fallback").all()
    monkeypatch.undo()
    # the circuit stays open for serving.store_retry_s: no thread waits on a store known down
    still = engine.recommend(u, K, ctx(engine), request_id="circuit")
    assert still.degraded and "next try in" in still.reason
    engine.assembler.store_down_until = 0.0  # the retry interval has passed
    assert not engine.recommend(u, K, ctx(engine), request_id="healed").degraded
    assert engine.readiness()["store"] is True


def test_spent_budget_falls_back(engine: Recommender, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "settings", dataclasses.replace(engine.settings, budget_ms=1e-6))
    feed = engine.recommend(known_users(engine)[0], K, ctx(engine), request_id="slow")
    assert feed.degraded and feed.reason.startswith("timeout") and len(feed.items) == K


def test_refresh_follows_promotion_and_rollback(
    engine: Recommender, project: Path, production_version: str
) -> None:
    canary_v = engine.versions()["canary"]
    assert canary_v is not None
    with ModelRegistry(DataPaths(project)) as reg:
        reg.promote(canary_v, "production", now=T0 + timedelta(hours=5), reason="test")
    assert engine.refresh()
    u = known_users(engine)[0]
    feed = engine.recommend(u, K, ctx(engine), request_id="after-promotion")
    assert (feed.arm, feed.model_version) == ("production", canary_v)
    with ModelRegistry(DataPaths(project)) as reg:
        reg.rollback("test", now=T0 + timedelta(hours=6))
    assert engine.refresh()
    assert not engine.refresh()  # nothing changed since
    feed = engine.recommend(u, K, ctx(engine), request_id="after-rollback")
    assert (feed.arm, feed.model_version) == ("production", production_version)


def test_no_production_model_falls_back(
    engine: Recommender, project: Path, production_version: str
) -> None:
    with ModelRegistry(DataPaths(project)) as reg:
        reg.archive(production_version, reason="test", now=T0 + timedelta(hours=7))
    assert engine.refresh()
    assert engine.readiness()["model"] is False
    feed = engine.recommend(known_users(engine)[0], K, ctx(engine), request_id="no-model")
    assert feed.degraded and "RegistryError" in feed.reason and len(feed.items) == K
    assert engine.fallback("x", 0, request_id="zero", reason="test").items == []
