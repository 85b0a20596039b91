"""The real-time incremental update: count and interval triggers, the windowed log-and-join,
continued boosting of the production ranker (real LightGBM / XGBoost, tiny data), registration as
a candidate only, skips and failures reported without breaking event ingestion.

The production model is trained like the registry tests' models (engagement follows
``f0 - 0.5 f1``), with ``f0`` as the main head's base margin, so the update must start from the
trees *and* the base margin. The served traffic contradicts it: items with ``f1 > 0.8`` ("hot")
are always shared, so the continued model must move their scores up relative to the parent.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from components.core.catalog import DataPaths
from components.core.config import deep_merge
from components.deploy.registry import ModelRegistry
from components.deploy.transitions import TransitionError
from components.online_update.rows import training_rows
from components.online_update.settings import OnlineUpdateSettings
from components.online_update.update import OnlineUpdater
from components.ranking.artefact import save
from components.ranking.boosting import LightGBMTrainer
from components.ranking.params import RankerParams
from components.ranking.train import train_ranker
from components.serving.impressions import LOG_SCHEMA
from tests.fixtures.drift_verdicts import write_drift_record
from tests.fixtures.params import project_params, project_settings
from tests.fixtures.ranking_frames import FEATURES, make_frame

T0 = pd.Timestamp("2026-06-01T12:00:00Z")
REG_T0 = datetime(2026, 6, 1, 11, 0, tzinfo=UTC)
WINDOW_S = 60
N_ITEMS = 200
SCHEMA = (
    LOG_SCHEMA
    if "features" in LOG_SCHEMA.names
    else LOG_SCHEMA.append(pa.field("features", pa.list_(pa.float32())))
)
ITEM_F = np.random.default_rng(5).normal(size=(N_ITEMS, len(FEATURES))).astype(np.float32)
HOT = ITEM_F[:, 1] > 0.8


def ranker_params(backend: str = "lightgbm") -> RankerParams:
    return project_settings(
        RankerParams,
        backend=backend,
        heads={"engaged": 1.0, "like": 0.5},
        n_estimators=10,
        early_stopping_rounds=0,
        num_leaves=4,
        max_depth=2,
        min_child_samples=5,
        n_threads=1,
        seed=1,
        base_feature="f0",
    )


@pytest.fixture(scope="module")
def parents(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The production models' artefacts, one per backend."""
    directory = tmp_path_factory.mktemp("ranker")
    out = {}
    for backend in ("lightgbm", "xgboost"):
        model = train_ranker(
            make_frame(),
            FEATURES,
            ranker_params(backend),
            feature_service="ranker_v2",
            created_from="t",
        )
        out[backend] = save(model, directory)
    return out


def params(**online: Any) -> dict[str, Any]:
    section = {
        "buffer_size": 1000,
        "update_interval_s": 300,
        "rounds": 20,
        "label_window_s": WINDOW_S,
        "min_labelled_rows": 300,
        "max_impression_age_s": 3600,
        "n_threads": 1,
    }
    section.update(online)
    return project_params(base={"seed": 42}, online_update=section)


class Clock:
    def __init__(self) -> None:
        self.t = 1_000_000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def project(
    tmp_path: Path, parents: dict[str, Path]
) -> Iterator[tuple[DataPaths, ModelRegistry, str]]:
    """A registry whose production model is the LightGBM parent."""
    paths = DataPaths(tmp_path)
    reg = ModelRegistry(paths)
    version = promote_to_production(reg, parents["lightgbm"])
    yield paths, reg, version
    reg.close()


def promote_to_production(reg: ModelRegistry, artefact: Path) -> str:
    version = reg.register(artefact, metrics={}, data_version="d1", now=REG_T0).version
    for i, stage in enumerate(("shadow", "canary", "production")):
        reg.promote(version, stage, now=REG_T0 + timedelta(minutes=i + 1), reason="setup")
    return version


# ------------------------------------------------------------------------------- served traffic


def traffic(
    version: str, n_requests: int, start: pd.Timestamp, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Impressions (10 per request, one second apart, with the served model's feature snapshot)
    and their outcomes: hot items shared 5 s later; others liked with a small probability, else
    sometimes skipped."""
    rng = np.random.default_rng(seed)
    imp, ev = [], []
    for r in range(n_requests):
        ts = start + pd.Timedelta(seconds=r + 1)
        user = f"u{r % 40}"
        for pos, item in enumerate(rng.choice(N_ITEMS, size=10, replace=False)):
            cid = f"c{item:03d}"
            imp.append(
                {
                    "request_id": f"r{seed}-{r:04d}",
                    "user_id": user,
                    "content_id": cid,
                    "position": pos,
                    "model_version": version,
                    "arm": "production",
                    "propensity": 0.9,
                    "score": 0.0,
                    "model_score": 0.0,
                    "exploration": False,
                    "source": "hybrid",
                    "shadow_version": None,
                    "shadow_score": None,
                    "degraded": False,
                    "timestamp": ts,
                    "features": ITEM_F[item].tolist(),
                }
            )
            if HOT[item]:
                ev.append((user, cid, "share", ts + pd.Timedelta(seconds=5)))
            elif rng.random() < 0.15:
                ev.append((user, cid, "like", ts + pd.Timedelta(seconds=5)))
            elif rng.random() < 0.3:
                ev.append((user, cid, "skip", ts + pd.Timedelta(seconds=3)))
    events = pd.DataFrame(ev, columns=["user_id", "content_id", "event_type", "timestamp"])
    return pd.DataFrame(imp), events


def event_stream(
    outcomes: pd.DataFrame, total: int, start: pd.Timestamp, end: pd.Timestamp, tag: str
) -> pd.DataFrame:
    """``total`` events as the sink passes them on: the outcomes plus unrelated views spread from
    ``start`` to ``end`` (they move the event-time watermark), in time order."""
    n_fill = total - len(outcomes)
    assert n_fill > 1, "outcomes alone exceed the wanted total"
    fill = pd.DataFrame(
        {
            "user_id": "someone",
            "content_id": [f"other{i}" for i in range(n_fill)],
            "event_type": "view",
            "timestamp": start + (end - start) * np.linspace(0, 1, n_fill),
        }
    )
    out = pd.concat([outcomes, fill], ignore_index=True).sort_values("timestamp", kind="mergesort")
    out = out.reset_index(drop=True)
    out.insert(0, "event_id", [f"{tag}-e{i}" for i in range(len(out))])
    out["timestamp"] = pd.to_datetime(out["timestamp"], utc=True).astype("datetime64[ms, UTC]")
    out["watch_duration_s"] = np.where(out["event_type"] == "view", 10.0, np.nan)
    return out


def write_log(
    paths: DataPaths, impressions: pd.DataFrame, name: str, schema: pa.Schema = SCHEMA
) -> Path:
    folder = paths.of("impressions")
    folder.mkdir(parents=True, exist_ok=True)
    rows = impressions[[c for c in schema.names]].to_dict("records")
    path = folder / f"impressions-{name}.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return path


def served(
    paths: DataPaths,
    version: str,
    *,
    total: int = 1000,
    n_requests: int = 150,
    seed: int = 1,
    start: pd.Timestamp = T0,
) -> pd.DataFrame:
    """Log ``n_requests`` requests (two files) and return ``total`` events covering their outcomes."""
    imp, outcomes = traffic(version, n_requests, start, seed)
    half = len(imp) // 2
    write_log(paths, imp.iloc[:half], f"{seed}-a")
    write_log(paths, imp.iloc[half:], f"{seed}-b")
    end = start + pd.Timedelta(seconds=n_requests + 3 * WINDOW_S)
    return event_stream(outcomes, total, start, end, f"s{seed}")


def feed(updater: OnlineUpdater, events: pd.DataFrame, batch: int = 100) -> None:
    for i in range(0, len(events), batch):
        updater.observe(events.iloc[i : i + batch])


# ------------------------------------------------------------------------------- tests


def test_settings_come_from_params_and_are_checked() -> None:
    from components.core.config import load_params

    s = OnlineUpdateSettings.from_params(load_params())
    assert (s.buffer_size, s.update_interval_s, s.rounds, s.learning_rate) == (
        1000,
        300.0,
        20,
        None,
    )
    assert s.run_offline_gate is False
    with pytest.raises(ValueError, match="buffer_size"):
        OnlineUpdateSettings.from_params(params(buffer_size=0))
    with pytest.raises(ValueError, match="max_impression_age_s"):
        OnlineUpdateSettings.from_params(params(max_impression_age_s=30))


def test_count_trigger_registers_one_candidate_and_leaves_production(project) -> None:
    paths, reg, prod = project
    events = served(paths, prod, total=1000)
    up = OnlineUpdater(params(), paths, registry=reg, clock=Clock())
    feed(up, events.iloc[:999])
    assert up.maybe_update() is None  # 999 events: not due
    assert up.status()["pending_events"] == 999 and [r.version for r in reg.list()] == [prod]
    up.observe(events.iloc[999:])  # the 1,000th: due, but observe itself never trains
    assert [r.version for r in reg.list()] == [prod]
    result = up.maybe_update()
    assert result is not None and result.status == "updated", result
    assert result.trigger == "count" and result.events == 1000 and result.parent_version == prod
    assert (
        result.rows == 1500 and result.groups == 150 and result.positives >= HOT.mean() * 1500 * 0.8
    )
    assert reg.get(result.version).stage == "candidate"
    assert reg.deployment().production.version == prod
    assert [h.to_stage for h in reg.history(result.version)] == ["candidate"]
    assert (paths.of("online_models") / result.version / "manifest.json").exists()
    assert up.maybe_update() is None  # the count starts again
    st = up.status()
    assert (st["updates"], st["last_version"], st["last_rows"], st["pending_events"]) == (
        1,
        result.version,
        1500,
        0,
    )


def test_interval_trigger_needs_time_and_a_non_empty_buffer(project) -> None:
    paths, reg, prod = project
    events = served(paths, prod, total=600, n_requests=60)
    clock = Clock()
    up = OnlineUpdater(params(), paths, registry=reg, clock=clock)
    feed(up, events)
    clock.t += 299
    assert up.maybe_update() is None  # 600 < buffer_size and the interval has not passed
    clock.t += 2
    result = up.maybe_update()
    assert result is not None and result.status == "updated" and result.trigger == "interval"
    assert reg.get(result.version).stage == "candidate"
    clock.t += 10_000
    assert up.maybe_update() is None  # interval passed again, but no event since
    assert up.status()["attempts"] == 1


def test_continued_model_adds_trees_from_the_parent_and_learns_the_new_labels(project) -> None:
    paths, reg, prod = project
    events = served(paths, prod, total=1000)
    up = OnlineUpdater(params(), paths, registry=reg, clock=Clock())
    feed(up, events)
    result = up.maybe_update()
    assert result is not None and result.status == "updated", result
    parent, new = reg.load(prod), reg.load(result.version)
    assert new.feature_cols == parent.feature_cols and new.backend == parent.backend
    assert result.rounds_added["engaged"] == 20
    for head, added in result.rounds_added.items():
        assert new.heads[head].best_iteration == parent.heads[head].best_iteration + added
        assert new.boosters[head].num_trees() == parent.boosters[head].num_trees() + added
    manifest = json.loads((reg.artefact_dir(result.version) / "manifest.json").read_text())
    lineage = manifest["training_metrics"]["online_update"]
    assert lineage["parent_version"] == prod and manifest["created_from"] == f"online-update:{prod}"
    assert lineage["rows"] == 1500 and lineage["rounds_added"] == result.rounds_added
    assert lineage["impressions_window"]["after"] == str(T0.isoformat())
    assert pd.Timestamp(lineage["events_window"]["to"]) == events["timestamp"].max()
    assert (
        reg.get(result.version).metrics["trained_until"] == lineage["impressions_window"]["until"]
    )

    # scores on the training rows: changed, and the always-shared items moved up
    imp = pd.concat([pd.read_parquet(p) for p in sorted(paths.of("impressions").glob("*.parquet"))])
    rows, X, dropped = training_rows(
        imp,
        events,
        parent.feature_cols,
        {prod: parent.feature_cols},
        pd.Timedelta(seconds=WINDOW_S),
    )
    assert len(rows) == 1500 and dropped == {}
    before, after = parent.predict(X), new.predict(X)
    assert not np.allclose(before, after)
    hot = HOT[rows["content_id"].str[1:].astype(int).to_numpy()]
    assert rows.loc[hot, "relevance"].eq(3).all()
    lift = (after - before)[hot].mean() - (after - before)[~hot].mean()
    assert lift > 0.5, lift
    assert (
        np.corrcoef(after, rows["relevance"])[0, 1]
        > np.corrcoef(before, rows["relevance"])[0, 1] + 0.1
    )

    # the new trees start from the parent's whole margin, its base margin (f0) included: they are
    # what plain LightGBM fits from that init score with the same parameters
    spec = parent.heads["engaged"]
    assert spec.base_feature == "f0"
    bp = LightGBMTrainer.booster_params("lambdarank", parent.params)
    rates = [parent.params.learning_rate_at(spec.best_iteration + j) for j in range(20)]
    sizes = rows.groupby("request_id", sort=False).size().to_numpy()
    init = parent.predict_heads(X, output="margin")["engaged"]
    delta = lgb.train(
        bp,
        lgb.Dataset(
            X,
            label=rows["relevance"].to_numpy(float),
            group=sizes,
            init_score=init,
            feature_name=FEATURES,
        ),
        num_boost_round=20,
        callbacks=[lgb.reset_parameter(learning_rate=lambda i: rates[i])],
    )
    new_trees = new.boosters["engaged"].predict(
        X, raw_score=True, start_iteration=spec.best_iteration
    )
    np.testing.assert_allclose(new_trees, delta.predict(X, raw_score=True), atol=1e-9)


def test_xgboost_parent_is_continued_too(tmp_path: Path, parents: dict[str, Path]) -> None:
    paths = DataPaths(tmp_path)
    with ModelRegistry(paths) as reg:
        prod = promote_to_production(reg, parents["xgboost"])
        events = served(paths, prod, total=1000)
        up = OnlineUpdater(params(rounds=5), paths, registry=reg, clock=Clock())
        feed(up, events)
        result = up.maybe_update()
        assert result is not None and result.status == "updated", result
        parent, new = reg.load(prod), reg.load(result.version)
        assert result.rounds_added["engaged"] == 5
        assert (
            new.boosters["engaged"].num_boosted_rounds()
            == parent.boosters["engaged"].num_boosted_rounds() + 5
        )
        imp = pd.concat(
            [pd.read_parquet(p) for p in sorted(paths.of("impressions").glob("*.parquet"))]
        )
        rows, X, _ = training_rows(
            imp,
            events,
            parent.feature_cols,
            {prod: parent.feature_cols},
            pd.Timedelta(seconds=WINDOW_S),
        )
        hot = HOT[rows["content_id"].str[1:].astype(int).to_numpy()]
        # the main head learns the shared items (the like head, rightly, that they are not liked)
        d = (
            new.predict_heads(X, "standardised")["engaged"]
            - parent.predict_heads(X, "standardised")["engaged"]
        )
        assert d[hot].mean() - d[~hot].mean() > 0.3
        assert reg.deployment().production.version == prod


def test_too_few_labelled_rows_registers_nothing_and_keeps_them(project) -> None:
    paths, reg, prod = project
    events = served(paths, prod, total=1000, n_requests=20)  # 200 usable impressions
    old = traffic(prod, 30, T0, seed=9)[0].assign(timestamp=T0 + pd.Timedelta(seconds=50))
    write_log(
        paths, old, "old-format", schema=pa.schema([f for f in SCHEMA if f.name != "features"])
    )
    up = OnlineUpdater(params(), paths, registry=reg, clock=Clock())
    feed(up, events)
    result = up.maybe_update()
    assert result is not None and result.status == "skipped"
    assert (
        "only 200 labelled impressions" in result.reason
        and "min_labelled_rows 300" in result.reason
    )
    assert "'no_features': 300" in result.reason  # the log written before feature snapshots
    assert result.version is None and [r.version for r in reg.list()] == [prod]
    st = up.status()
    assert (st["last_status"], st["updates"], st["high_water_mark"], st["last_version"]) == (
        "skipped",
        0,
        None,
        None,
    )
    assert "min_labelled_rows" in st["last_reason"] and st["last_error"] is None
    # the skipped impressions are not consumed: more traffic later, and they count with it
    more = served(
        paths, prod, total=1000, n_requests=20, seed=2, start=T0 + pd.Timedelta(seconds=200)
    )
    feed(up, more)
    result = up.maybe_update()
    assert result is not None and result.status == "updated" and result.rows == 400, result


def test_never_straight_to_production_only_through_the_gates(project) -> None:
    paths, reg, prod = project
    clock = Clock()
    up = OnlineUpdater(params(), paths, registry=reg, clock=clock)
    feed(up, served(paths, prod, total=1000, seed=1))
    first = up.maybe_update()
    feed(up, served(paths, prod, total=1000, seed=2, start=T0 + pd.Timedelta(seconds=400)))
    second = up.maybe_update()
    assert first is not None and second is not None and first.status == second.status == "updated"
    assert second.rows == 1500  # only the new impressions: the first ones were used already
    assert second.parent_version == prod and second.archived == first.version
    assert reg.get(first.version).stage == "archived"
    assert "superseded by online update" in reg.history(first.version)[-1].reason
    assert reg.deployment().production.version == prod
    assert {r.stage for r in reg.list() if r.version != prod} == {"candidate", "archived"}
    with pytest.raises(TransitionError):  # one step at a time: a candidate cannot skip the gates
        reg.promote(second.version, "production", now=REG_T0 + timedelta(days=1))
    assert reg.deployment().production.version == prod


def test_offline_gate_option_moves_the_candidate_at_most_to_shadow(project) -> None:
    paths, reg, prod = project
    holdout = make_frame(seed=3).assign(content_id=lambda f: [f"h{i}" for i in range(len(f))])
    paths.of("ranking_holdout").parent.mkdir(parents=True, exist_ok=True)
    holdout.to_parquet(paths.of("ranking_holdout"), index=False)
    paths.metrics.mkdir(parents=True, exist_ok=True)
    (paths.metrics / "ingest.json").write_text(
        json.dumps({"reconciled": True, "n_in": 1000, "quarantined": 1})
    )
    write_drift_record(paths.metrics)  # the gate fails without a drift verdict
    up = OnlineUpdater(
        deep_merge(params(run_offline_gate=True), {"promote": {"offline": {"min_groups": 20}}}),
        paths,
        registry=reg,
        clock=Clock(),
    )
    feed(up, served(paths, prod, total=1000))
    result = up.maybe_update()
    assert result is not None and result.status == "updated" and result.gate is not None
    verdict = json.loads((paths.metrics / "gate_offline.json").read_text())
    assert verdict["candidate"] == result.version and verdict["production"] == prod
    # passed -> shadow; judged and failed -> archived; could not judge -> stays a candidate
    expected = {"pass": "shadow", "fail": "archived", "insufficient_evidence": "candidate"}
    assert result.stage == expected[verdict["decision"]] == reg.get(result.version).stage
    assert result.gate.startswith(verdict["decision"])
    assert reg.deployment().production.version == prod
    if verdict["passed"]:  # onwards only through the next gates, one step at a time
        with pytest.raises(TransitionError):
            reg.promote(result.version, "production", now=REG_T0 + timedelta(days=1))


class FailingLog:
    """``read_impressions`` that fails while ``broken`` (a disk error), else the real one."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import components.online_update.update as update

        self.real = update.read_impressions
        self.broken = True
        monkeypatch.setattr(update, "read_impressions", self)

    def __call__(self, *args: Any, **kwargs: Any) -> pd.DataFrame:
        if self.broken:
            raise OSError("impression log impressions-zz-corrupt.parquet: I/O error")
        return self.real(*args, **kwargs)


def test_an_unreadable_impression_file_is_quarantined_not_fatal(project) -> None:
    """An unreadable file is moved aside with its reason, and this and later updates go on."""
    import json

    paths, reg, prod = project
    events = served(paths, prod, total=1000)
    bad = paths.of("impressions") / "impressions-zz-corrupt.parquet"
    bad.write_bytes(b"PAR1 this is not parquet")
    up = OnlineUpdater(params(), paths, registry=reg, clock=Clock())
    feed(up, events)
    result = up.maybe_update()
    assert result is not None and result.status == "updated" and result.rows == 1500
    moved = paths.of("impressions") / "quarantine" / bad.name
    assert not bad.exists() and moved.read_bytes() == b"PAR1 this is not parquet"
    reason = json.loads((moved.parent / f"{bad.name}.reason.json").read_text())
    assert reason["file"] == bad.name and "Parquet" in reason["reason"]


def test_a_failing_update_is_reported_and_never_breaks_ingestion(project, monkeypatch) -> None:
    paths, reg, prod = project
    events = served(paths, prod, total=1000)
    failing = FailingLog(monkeypatch)
    clock = Clock()
    up = OnlineUpdater(params(), paths, registry=reg, clock=clock)
    feed(up, events)
    up.observe(pd.DataFrame({"user_id": ["x"]}))  # malformed batch: counted, not raised
    result = up.maybe_update()
    assert result is not None and result.status == "failed"
    assert "impressions-zz-corrupt.parquet" in result.reason
    st = up.status()
    assert st["last_status"] == "failed" and "impressions-zz-corrupt.parquet" in st["last_error"]
    assert st["observe_errors"] == 1
    assert [r.version for r in reg.list()] == [prod] and st["high_water_mark"] is None
    # the events stay in memory; once the disk is back the next interval update uses them
    failing.broken = False
    up.observe(events.iloc[:1].assign(event_id="late"))
    clock.t += 301
    again = up.maybe_update()
    assert again is not None and again.status == "updated" and again.rows == 1500


def test_background_thread_runs_updates_off_the_event_path(project, tmp_path: Path, monkeypatch) -> None:
    from components.data.ingestion.rules import Limits
    from components.serving.events import EventSink

    paths, reg, prod = project
    events = served(paths, prod, total=1000)
    failing = FailingLog(monkeypatch)
    up = OnlineUpdater(params(), paths, registry=reg, clock=Clock(), poll_s=0.05)
    sink = EventSink(
        DataPaths(tmp_path / "sink"), key=b"k", limits=Limits.from_params(project_params()), known_content={"c000"}
    )
    sink.listeners.append(up.observe)  # attached exactly like the engine's observe
    up.start()
    try:
        feed(up, events)
        assert up.wait_for_attempts(1, timeout_s=60)
        assert up.status()["last_status"] == "failed" and up.status()["running"]
        # the event path keeps working while updates fail
        ok = sink.accept(
            [
                {
                    "event_id": "x1",
                    "event_type": "like",
                    "user_id": "alice",
                    "content_id": "c000",
                    "timestamp": (T0 + pd.Timedelta(seconds=10)).isoformat(),
                }
            ],
            T0 + pd.Timedelta(minutes=1),
        )
        assert ok.accepted == 1 and up.status()["events_received"] == 1001
        failing.broken = False
        feed(up, replace_ids(events, "again"))
        assert up.wait_for_attempts(2, timeout_s=60)
        st = up.status()
        assert st["last_status"] == "updated" and st["last_rows"] == 1500
        assert reg.get(st["last_version"]).stage == "candidate"
    finally:
        up.stop()
    assert not up.status()["running"]
    assert reg.deployment().production.version == prod


def replace_ids(events: pd.DataFrame, tag: str) -> pd.DataFrame:
    return events.assign(event_id=[f"{tag}-{i}" for i in range(len(events))])


def test_snapshots_of_another_model_are_reordered_by_name() -> None:
    cols = ["f0", "f1", "f2"]
    imp = pd.DataFrame(
        {
            "request_id": ["r1", "r1", "r2", "r2", "r3"],
            "user_id": "u",
            "content_id": ["a", "b", "a", "b", "c"],
            "position": [1, 0, 0, 1, 0],
            "model_version": ["prod", "prod", "canary", "canary", "ghost"],
            "degraded": [False, False, False, False, False],
            "timestamp": T0,
            "features": [[1, 2, 3], [4, 5, 6], [30, 9, 10, 20], [60, 9, 40, 50], [1, 1, 1]],
        }
    )
    by_version = {"prod": cols, "canary": ["f2", "extra", "f0", "f1"], "ghost": None}
    events = pd.DataFrame(
        {"user_id": ["u"], "content_id": ["b"], "event_type": ["like"], "timestamp": [T0]}
    )
    rows, X, dropped = training_rows(imp, events, cols, by_version, pd.Timedelta(seconds=60))
    assert dropped == {"unknown_model_version": 1}
    assert rows[["request_id", "content_id"]].values.tolist() == [
        ["r1", "b"],
        ["r1", "a"],
        ["r2", "a"],
        ["r2", "b"],
    ]
    np.testing.assert_array_equal(X, [[4, 5, 6], [1, 2, 3], [10, 20, 30], [40, 50, 60]])
    assert rows["label_like"].tolist() == [1, 0, 0, 1]
    bad = imp.assign(
        features=[[1, 2], None, [30, 9, 10, 20], [60, 9, 40, 50], [1, 1, 1]],
        degraded=[False, False, True, False, False],
    )
    _, _, dropped = training_rows(bad, events, cols, by_version, pd.Timedelta(seconds=60))
    assert dropped == {
        "snapshot_length": 1,
        "no_features": 1,
        "degraded": 1,
        "unknown_model_version": 1,
    }
