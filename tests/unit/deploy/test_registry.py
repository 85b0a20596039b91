"""Model registry: registration, the stage rules, slots, rollback, the serving cache, crash safety
and the CLI.

Artefacts are real but tiny rankers (400 rows, 10 rounds, one thread): one trained model and two
re-weightings of its heads (``with_weights``), i.e. three versions with different scores.
Crashes are real too: a child process patches a step that runs inside the transaction to call
``os._exit`` and the parent then inspects the registry it left behind.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from components.core.catalog import PROJECT_ROOT, DataPaths
from components.deploy import registry_cli
from components.deploy.lineage import data_version, data_version_from_lock
from components.deploy.model_cache import ModelCache
from components.deploy.records import HistoryEntry, ModelRecord
from components.deploy.registry import ModelRegistry, run
from components.deploy.transitions import (
    ARCHIVED,
    CANARY,
    CANDIDATE,
    PRODUCTION,
    SHADOW,
    STAGES,
    ArtefactError,
    NotFoundError,
    RegistryError,
    TransitionError,
    check_transition,
    find_problems,
)
from components.ranking.artefact import save
from components.ranking.model import RankerModel
from components.ranking.params import RankerParams
from components.ranking.train import train_ranker
from tests.fixtures.params import project_settings
from tests.fixtures.ranking_frames import FEATURES, make_frame

T0 = datetime(2026, 2, 1, 12, 0, tzinfo=UTC)
CRASH_EXIT = 17


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return make_frame()


@pytest.fixture(scope="module")
def models(frame: pd.DataFrame) -> list[RankerModel]:
    """Three versions (A, B, C) whose scores differ."""
    params = project_settings(
        RankerParams,
        heads={"engaged": 1.0, "like": 0.5},
        n_estimators=10,
        early_stopping_rounds=0,
        num_leaves=4,
        max_depth=2,
        min_child_samples=5,
        n_threads=1,
        seed=1,
        base_feature="",
    )
    a = train_ranker(frame, FEATURES, params, feature_service="ranker_v2", created_from="t")
    out = [a, a.with_weights({"like": 0.0}), a.with_weights({"like": 2.0})]
    assert len({m.version for m in out}) == 3
    return out


@pytest.fixture(scope="module")
def artefacts(models: list[RankerModel], tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The three artefacts as the train stage writes them (``<dir>/<version>/``)."""
    directory = tmp_path_factory.mktemp("ranker")
    return [save(m, directory) for m in models]


@pytest.fixture
def reg(tmp_path: Path) -> Iterator[ModelRegistry]:
    registry = ModelRegistry(DataPaths(tmp_path))
    yield registry
    registry.close()


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def register_all(reg: ModelRegistry, artefacts: list[Path]) -> list[str]:
    return [
        reg.register(p, metrics={"ndcg@10": 0.1 * i}, data_version="d1", now=at(i)).version
        for i, p in enumerate(artefacts)
    ]


def stages(reg: ModelRegistry) -> dict[str, str]:
    return {r.version: r.stage for r in reg.list()}


def snapshot(reg: ModelRegistry) -> tuple[list[ModelRecord], list[HistoryEntry], int]:
    return reg.list(), reg.history(), reg.revision()


def to_production(reg: ModelRegistry, version: str, start: int) -> None:
    for i, stage in enumerate((SHADOW, CANARY, PRODUCTION)):
        reg.promote(version, stage, now=at(start + i), reason=f"to {stage}")


# ---------------------------------------------------------------- pure core


def test_transition_rules_exactly() -> None:
    allowed = {
        (CANDIDATE, SHADOW),
        (SHADOW, CANARY),
        (CANARY, PRODUCTION),
        (CANDIDATE, ARCHIVED),
        (SHADOW, ARCHIVED),
        (CANARY, ARCHIVED),
        (PRODUCTION, ARCHIVED),
    }
    for src in STAGES:
        for dst in STAGES:
            if (src, dst) in allowed:
                check_transition("v", src, dst)
            else:
                with pytest.raises(TransitionError):
                    check_transition("v", src, dst)
    with pytest.raises(TransitionError, match="unknown stage"):
        check_transition("v", CANDIDATE, "staging")


def test_data_version_from_lock_prefers_outs_and_is_stable(tmp_path: Path) -> None:
    lock = {
        "stages": {
            "ingest": {"outs": [{"path": "data/raw", "md5": "r1.dir"}]},
            "preprocess": {
                "deps": [{"path": "data/raw", "md5": "stale.dir"}],
                "outs": [{"path": "data/interim", "md5": "i1.dir"}],
            },
            "features": {
                "deps": [{"path": "data/interim", "md5": "i1.dir"}],
                "outs": [{"path": "data/features", "md5": "f1.dir"}],
            },
            "other": {"outs": [{"path": "data/models/ranker", "md5": "m.dir"}]},
        }
    }
    v = data_version_from_lock(lock)
    assert len(v) == 12 and v == data_version_from_lock(json.loads(json.dumps(lock)))
    # a deps md5 does not count when a stage outputs the path; the producer's outs do
    no_stale = json.loads(json.dumps(lock))
    no_stale["stages"]["preprocess"]["deps"] = []
    assert data_version_from_lock(no_stale) == v
    changed = json.loads(json.dumps(lock))
    changed["stages"]["features"]["outs"][0]["md5"] = "f2.dir"
    assert data_version_from_lock(changed) != v
    unrelated = json.loads(json.dumps(lock))
    unrelated["stages"]["other"]["outs"][0]["md5"] = "m2.dir"
    assert data_version_from_lock(unrelated) == v
    assert data_version_from_lock({"stages": {}}) == "unknown"

    assert data_version(tmp_path) == "unknown"
    import yaml

    (tmp_path / "dvc.lock").write_text(yaml.safe_dump(lock))
    assert data_version(tmp_path) == v


def _rec(version: str, stage: str) -> ModelRecord:
    return ModelRecord(
        version=version,
        stage=stage,
        stage_changed_at=T0,
        registered_at=T0,
        artefact=f"models/{version}",
        backend="lightgbm",
        objective="lambdarank",
        feature_service="s",
        data_version="d",
    )


def _h(i: int, version: str, src: str | None, dst: str) -> HistoryEntry:
    return HistoryEntry(i, version, src, dst, T0, "", "t")


def test_find_problems_detects_broken_invariants() -> None:
    good_recs = [_rec("a", PRODUCTION), _rec("b", CANDIDATE)]
    good_hist = [
        _h(1, "a", None, CANDIDATE),
        _h(2, "b", None, CANDIDATE),
        _h(3, "a", CANDIDATE, SHADOW),
        _h(4, "a", SHADOW, CANARY),
        _h(5, "a", CANARY, PRODUCTION),
    ]
    assert find_problems(good_recs, good_hist) == []
    two_prod = find_problems([_rec("a", PRODUCTION), _rec("b", PRODUCTION)], good_hist)
    assert any("2 versions in production" in p for p in two_prod)
    mismatch = find_problems([_rec("a", CANARY), _rec("b", CANDIDATE)], good_hist)
    assert mismatch == ["a: stage is canary but its last history row says production"]
    broken_chain = [*good_hist[:3], _h(4, "a", CANARY, PRODUCTION)]
    assert any(
        "leaves canary but the version was shadow" in p
        for p in find_problems(good_recs, broken_chain)
    )
    assert find_problems([_rec("a", CANDIDATE), _rec("b", CANDIDATE)], good_hist[:1]) == [
        "b: no history"
    ]
    assert find_problems(good_recs[:1], good_hist) == ["history rows of an unregistered version b"]


# ---------------------------------------------------------------- register


def test_register_copies_verifies_and_is_idempotent(
    reg: ModelRegistry, artefacts: list[Path], models: list[RankerModel]
) -> None:
    rec = reg.register(
        artefacts[0], metrics={"ndcg@10": 0.31, "auc": float("nan")}, data_version="d1", now=T0
    )
    assert rec.version == models[0].version
    assert (rec.stage, rec.backend, rec.objective, rec.feature_service) == (
        CANDIDATE,
        "lightgbm",
        "lambdarank",
        "ranker_v2",
    )
    assert rec.metrics == {"ndcg@10": 0.31, "auc": None}
    assert rec.params["heads"] == {"engaged": 1.0, "like": 0.5}
    assert rec.registered_at == T0 and rec.data_version == "d1"
    copy = reg.directory / rec.artefact
    assert copy == reg.models_dir / rec.version == reg.artefact_dir(rec.version)
    assert (copy / "manifest.json").exists()
    assert reg.find(rec.version) == rec and reg.find("0" * 16) is None
    assert reg.load(rec.version).version == rec.version
    assert reg.revision() == 1

    again = reg.register(artefacts[0], metrics={"other": 1}, data_version="d2", now=at(5))
    assert again == rec
    assert len(reg.history()) == 1 and reg.revision() == 1
    assert [h.to_stage for h in reg.history(rec.version)] == [CANDIDATE]
    assert reg.history(rec.version)[0].from_stage is None
    assert reg.check() == []


def test_register_resolves_latest_and_refuses_bad_artefacts(
    reg: ModelRegistry, artefacts: list[Path], tmp_path: Path
) -> None:
    parent = artefacts[1].parent
    (parent / "LATEST").write_text(artefacts[1].name + "\n")
    rec = reg.register(parent, metrics={}, data_version="d", now=T0)
    assert rec.version == artefacts[1].name

    with pytest.raises(ArtefactError):
        reg.register(tmp_path / "nowhere", metrics={}, data_version="d", now=T0)
    tampered = tmp_path / "tampered"
    tampered.mkdir()
    for f in artefacts[0].iterdir():
        (tampered / f.name).write_bytes(f.read_bytes())
    manifest = json.loads((tampered / "manifest.json").read_text())
    manifest["feature_service"] = "something_else"
    (tampered / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtefactError, match="does not load"):
        reg.register(tampered, metrics={}, data_version="d", now=T0)
    with pytest.raises(ValueError, match="timezone"):
        reg.register(artefacts[0], metrics={}, data_version="d", now=datetime(2026, 2, 1))
    assert [r.version for r in reg.list()] == [rec.version]
    assert sorted(p.name for p in reg.models_dir.iterdir()) == [rec.version]
    assert reg.revision() == 1 and reg.check() == []


def test_run_registers_the_train_stage_output(tmp_path: Path, models: list[RankerModel]) -> None:
    import yaml

    paths = DataPaths(tmp_path)
    out = paths.data / "models" / "ranker"
    save(models[2], out)
    (out / "LATEST").write_text(models[2].version + "\n")
    lock = {"stages": {"features": {"outs": [{"path": "data/features", "md5": "x.dir"}]}}}
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump(lock))

    rec = run(paths, now=T0, reason="nightly")
    assert (rec.version, rec.stage, rec.notes) == (models[2].version, CANDIDATE, "nightly")
    assert rec.data_version == data_version_from_lock(lock) != "unknown"
    assert rec.metrics == {"training": models[2].training_metrics["combined"]}
    assert (paths.data / "registry" / "registry.db").exists()
    with ModelRegistry(paths) as reg:
        assert reg.get(rec.version) == rec and reg.check() == []


# ---------------------------------------------------------------- stages


def test_full_path_to_production_with_history(reg: ModelRegistry, artefacts: list[Path]) -> None:
    a, b, c = register_all(reg, artefacts)
    to_production(reg, a, 10)
    assert reg.get(a).stage == PRODUCTION and reg.get(a).stage_changed_at == at(12)
    hist = reg.history(a)
    assert [(h.from_stage, h.to_stage) for h in hist] == [
        (None, CANDIDATE),
        (CANDIDATE, SHADOW),
        (SHADOW, CANARY),
        (CANARY, PRODUCTION),
    ]
    assert [h.reason for h in hist[1:]] == ["to shadow", "to canary", "to production"]
    assert {h.actor for h in hist} == {"api"}
    assert reg.revision() == 3 + 3
    dep = reg.deployment()
    assert dep.production is not None and dep.production.version == a
    assert (dep.canary, dep.shadow, dep.revision) == (None, None, 6)
    assert reg.latest(PRODUCTION) == reg.get(a)
    assert reg.latest(CANARY) is None
    assert [r.version for r in reg.list(CANDIDATE)] == [b, c]
    assert reg.check() == []


def test_illegal_transitions_are_refused_and_change_nothing(
    reg: ModelRegistry, artefacts: list[Path]
) -> None:
    a, b, _ = register_all(reg, artefacts)
    reg.promote(b, SHADOW, now=at(10))
    before = snapshot(reg)
    refused = [
        (a, PRODUCTION, ""),  # skipping stages
        (a, CANARY, ""),
        (b, PRODUCTION, ""),
        (b, CANDIDATE, ""),  # backwards
        (b, SHADOW, ""),  # already there
        (a, ARCHIVED, ""),  # archiving needs a reason
        (a, "staging", ""),
    ]
    for version, stage, reason in refused:
        with pytest.raises(TransitionError):
            reg.promote(version, stage, now=at(20), reason=reason)
    with pytest.raises(NotFoundError):
        reg.promote("0" * 16, SHADOW, now=at(20))
    reg.archive(a, reason="rejected offline", now=at(21))
    after_archive = snapshot(reg)
    for stage in (CANDIDATE, SHADOW, PRODUCTION):
        with pytest.raises(TransitionError):
            reg.promote(a, stage, now=at(22))
    with pytest.raises(TransitionError, match="already archived"):
        reg.archive(a, reason="again", now=at(22))
    assert snapshot(reg) == after_archive
    assert after_archive[2] == before[2] + 1
    assert stages(reg)[a] == ARCHIVED and stages(reg)[b] == SHADOW
    assert reg.history(a)[-1].reason == "rejected offline"
    assert reg.check() == []


def test_slots_hold_one_version_and_supersede(reg: ModelRegistry, artefacts: list[Path]) -> None:
    a, b, c = register_all(reg, artefacts)
    reg.promote(a, SHADOW, now=at(10))
    reg.promote(b, SHADOW, now=at(11))
    assert stages(reg) == {a: ARCHIVED, b: SHADOW, c: CANDIDATE}
    last = reg.history(a)[-1]
    assert (last.from_stage, last.to_stage, last.reason) == (
        SHADOW,
        ARCHIVED,
        f"superseded by {b} in shadow",
    )
    reg.promote(b, CANARY, now=at(12))
    reg.promote(c, SHADOW, now=at(13))
    reg.promote(c, CANARY, now=at(14))
    assert stages(reg) == {a: ARCHIVED, b: ARCHIVED, c: CANARY}
    assert reg.history(b)[-1].reason == f"superseded by {c} in canary"
    assert len(reg.list(CANARY)) == 1 and reg.list(SHADOW) == []
    assert reg.check() == []

    # the database itself refuses a second holder of a slot
    import sqlite3

    conn = sqlite3.connect(reg.db_path)
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("UPDATE versions SET stage = 'canary' WHERE version = ?", (a,))
    conn.close()


def test_promotion_to_production_archives_the_old_one(
    reg: ModelRegistry, artefacts: list[Path]
) -> None:
    a, b, _ = register_all(reg, artefacts)
    to_production(reg, a, 10)
    reg.promote(b, SHADOW, now=at(20))
    reg.promote(b, CANARY, now=at(21))
    rev = reg.revision()
    reg.promote(b, PRODUCTION, now=at(22), reason="canary healthy")
    assert reg.revision() == rev + 1  # one transaction for both changes
    assert stages(reg)[a] == ARCHIVED and stages(reg)[b] == PRODUCTION
    last_a = reg.history(a)[-1]
    assert (last_a.from_stage, last_a.to_stage, last_a.at) == (PRODUCTION, ARCHIVED, at(22))
    assert last_a.reason == f"superseded by {b} in production"
    dep = reg.deployment()
    assert dep.production is not None and dep.production.version == b and dep.canary is None
    assert reg.check() == []


# ---------------------------------------------------------------- rollback and serving


def test_rollback_restores_previous_production_and_cache_follows(
    reg: ModelRegistry, artefacts: list[Path], models: list[RankerModel], frame: pd.DataFrame
) -> None:
    a, b, c = register_all(reg, artefacts)
    to_production(reg, a, 10)
    cache = ModelCache(reg)
    assert cache.refresh() is True and cache.refresh() is False
    np.testing.assert_array_equal(cache.production().predict(frame), models[0].predict(frame))
    to_production(reg, b, 20)
    reg.promote(c, SHADOW, now=at(30))
    assert cache.production().version == a  # not refreshed yet
    assert cache.refresh() is True
    shadow_model = cache.shadow()
    assert shadow_model is not None
    assert (cache.production().version, cache.canary(), shadow_model.version) == (b, None, c)
    np.testing.assert_array_equal(cache.production().predict(frame), models[1].predict(frame))

    rev = reg.revision()
    result = reg.rollback("error rate up", now=at(40))
    assert (result.archived.version, result.archived.stage) == (b, ARCHIVED)
    assert (result.restored.version, result.restored.stage) == (a, PRODUCTION)
    assert result.revision == rev + 1 == reg.revision()
    assert stages(reg) == {a: PRODUCTION, b: ARCHIVED, c: SHADOW}
    hist = reg.history()[-2:]
    assert [(h.version, h.from_stage, h.to_stage) for h in hist] == [
        (b, PRODUCTION, ARCHIVED),
        (a, ARCHIVED, PRODUCTION),
    ]
    assert "error rate up" in hist[0].reason and "error rate up" in hist[1].reason
    assert reg.check() == []

    assert cache.refresh() is True
    assert cache.production().version == a and cache.revision == reg.revision()
    assert cache.shadow() is shadow_model  # still deployed: not reloaded
    scores = cache.production().predict(frame)
    np.testing.assert_array_equal(scores, models[0].predict(frame))
    assert not np.allclose(scores, models[1].predict(frame))


@pytest.mark.parametrize("damage", ["flip", "truncate", "swap_folder"])
def test_a_tampered_model_is_refused_and_the_previous_one_keeps_serving(
    reg: ModelRegistry, artefacts: list[Path], models: list[RankerModel], frame: pd.DataFrame, damage: str
) -> None:
    """Issue 16: a registered model whose bytes changed after registration is refused before
    any of it is parsed, with an error naming the file and the expected and actual SHA-256;
    serving's cache keeps the models it had."""
    from components.core.integrity import sha256_hex
    from components.deploy.transitions import ArtefactError

    a, b, _ = register_all(reg, artefacts)
    to_production(reg, a, 10)
    cache = ModelCache(reg)
    assert cache.refresh() is True
    folder = reg.artefact_dir(b)
    sums = json.loads((folder / "sha256sums.json").read_text())
    head_file = sorted(n for n in sums if n != "manifest.json")[0]
    good = (folder / head_file).read_bytes()
    if damage == "flip":
        bad = good[:50] + bytes([good[50] ^ 0x01]) + good[51:]
        (folder / head_file).write_bytes(bad)
    elif damage == "truncate":
        bad = good[: len(good) // 2]
        (folder / head_file).write_bytes(bad)
    else:  # the whole folder replaced by another complete, self-consistent artefact
        import shutil

        shutil.rmtree(folder)
        shutil.copytree(reg.artefact_dir(a), folder)
    to_production(reg, b, 20)
    with pytest.raises(ArtefactError) as refused:
        cache.refresh()
    if damage == "swap_folder":
        assert f"holds version {a}, the registry record says {b}" in str(refused.value)
    else:
        msg = str(refused.value)
        assert str(folder / head_file) in msg and sums[head_file] in msg and sha256_hex(bad) in msg, msg
    assert cache.production().version == a  # the previous good model keeps serving
    np.testing.assert_array_equal(cache.production().predict(frame), models[0].predict(frame))


def test_rollback_goes_to_the_version_immediately_before(
    reg: ModelRegistry, artefacts: list[Path]
) -> None:
    a, b, c = register_all(reg, artefacts)
    to_production(reg, a, 10)
    to_production(reg, b, 20)
    to_production(reg, c, 30)
    res = reg.rollback("c is bad", now=at(40))
    assert (res.archived.version, res.restored.version) == (c, b)
    assert stages(reg) == {a: ARCHIVED, b: PRODUCTION, c: ARCHIVED}
    # like `kubectl rollout undo`: the version before b's current tenure is c
    res = reg.rollback("undo the rollback", now=at(41))
    assert (res.archived.version, res.restored.version) == (b, c)
    assert stages(reg) == {a: ARCHIVED, b: ARCHIVED, c: PRODUCTION}
    assert reg.check() == []


def test_rollback_without_previous_production_is_refused(
    reg: ModelRegistry, artefacts: list[Path]
) -> None:
    a, _, _ = register_all(reg, artefacts)
    with pytest.raises(TransitionError, match="no version is in production"):
        reg.rollback("nothing there", now=at(5))
    with pytest.raises(RegistryError, match="no version is in production"):
        ModelCache(reg).production()
    to_production(reg, a, 10)
    before = snapshot(reg)
    with pytest.raises(TransitionError, match=f"no production version before {a}"):
        reg.rollback("first one", now=at(20))
    assert snapshot(reg) == before
    assert stages(reg)[a] == PRODUCTION


def test_check_reports_missing_or_foreign_artefacts(
    reg: ModelRegistry, artefacts: list[Path]
) -> None:
    a, b, _ = register_all(reg, artefacts)
    (reg.models_dir / ".tmp-leftover").mkdir()
    assert reg.check() == []
    assert not (reg.models_dir / ".tmp-leftover").exists()
    manifest = reg.models_dir / b / "manifest.json"
    body = json.loads(manifest.read_text())
    body["version"] = a
    manifest.write_text(json.dumps(body))
    import shutil

    shutil.rmtree(reg.models_dir / a)
    problems = reg.check()
    assert len(problems) == 2
    assert f"{a}: artefact folder {reg.models_dir / a} is missing" in problems
    assert f"{b}: artefact manifest says version {a}" in problems
    with pytest.raises(ArtefactError, match="missing"):
        reg.promote(a, SHADOW, now=at(10))


# ---------------------------------------------------------------- crashes


def _run_child(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *args, str(CRASH_EXIT)],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


CRASH_PROMOTE = """
    import os, sys
    from datetime import UTC, datetime
    from pathlib import Path
    from components.deploy import registry as r, store

    CODE = int(sys.argv[-1])

    reg = r.ModelRegistry(directory=Path(sys.argv[1]))
    step, version = sys.argv[2], sys.argv[3]
    original = getattr(store, step)

    def crash(*args, **kwargs):
        original(*args, **kwargs)  # the step's writes are in the open transaction
        os._exit(CODE)

    setattr(store, step, crash)
    reg.promote(version, "production", now=datetime(2026, 3, 1, tzinfo=UTC), reason="crash")
    sys.exit(0)
"""


@pytest.mark.parametrize("step", ["archive_occupant", "insert_history", "bump_revision"])
def test_crash_during_promotion_leaves_the_previous_state(
    reg: ModelRegistry, artefacts: list[Path], step: str
) -> None:
    a, b, _ = register_all(reg, artefacts)
    to_production(reg, a, 10)
    reg.promote(b, SHADOW, now=at(20))
    reg.promote(b, CANARY, now=at(21))
    before = snapshot(reg)

    proc = _run_child(CRASH_PROMOTE, str(reg.directory), step, b)
    assert proc.returncode == CRASH_EXIT, proc.stderr

    assert reg.check() == []
    assert snapshot(reg) == before
    dep = reg.deployment()
    assert dep.production is not None and dep.production.version == a
    assert dep.canary is not None and dep.canary.version == b
    # and the registry still works: the same promotion goes through
    reg.promote(b, PRODUCTION, now=at(30))
    assert stages(reg)[a] == ARCHIVED and stages(reg)[b] == PRODUCTION
    assert reg.revision() == before[2] + 1


CRASH_REGISTER = """
    import os, sys
    from datetime import UTC, datetime
    from pathlib import Path
    from components.deploy import artefacts, registry as r, store

    CODE = int(sys.argv[-1])

    reg = r.ModelRegistry(directory=Path(sys.argv[1]))
    step, model_dir = sys.argv[2], Path(sys.argv[3])
    calls = []

    if step == "copy_file":  # die after the first file of the copy
        original = artefacts.copy_file

        def crash(*args, **kwargs):
            if calls:
                os._exit(CODE)
            calls.append(1)
            original(*args, **kwargs)

        artefacts.copy_file = crash
    else:  # die after the artefact is in place, before the commit
        original_h = store.insert_history

        def crash_h(*args, **kwargs):
            original_h(*args, **kwargs)
            os._exit(CODE)

        store.insert_history = crash_h
    reg.register(model_dir, metrics={}, data_version="d", now=datetime(2026, 3, 1, tzinfo=UTC))
    sys.exit(0)
"""


@pytest.mark.parametrize("step", ["copy_file", "insert_history"])
def test_crash_during_register_leaves_no_half_registered_version(
    reg: ModelRegistry, artefacts: list[Path], step: str
) -> None:
    a = reg.register(artefacts[0], metrics={}, data_version="d", now=T0).version
    before = snapshot(reg)
    b_dir = artefacts[1]
    b = b_dir.name

    proc = _run_child(CRASH_REGISTER, str(reg.directory), step, str(b_dir))
    assert proc.returncode == CRASH_EXIT, proc.stderr

    left = sorted(p.name for p in reg.models_dir.iterdir())
    if step == "copy_file":
        assert len(left) == 2 and left[0].startswith(f".tmp-{b}-") and left[1] == a
    else:
        assert left == sorted([a, b])  # a complete copy, never committed
    with pytest.raises(NotFoundError):
        reg.get(b)
    assert snapshot(reg) == before
    assert reg.check() == []
    assert not any(p.name.startswith(".tmp-") for p in reg.models_dir.iterdir())

    rec = reg.register(b_dir, metrics={}, data_version="d", now=at(50))
    assert (rec.version, rec.stage) == (b, CANDIDATE)
    assert len(reg.history(b)) == 1 and reg.revision() == before[2] + 1
    assert reg.load(b).version == b
    assert sorted(p.name for p in reg.models_dir.iterdir()) == sorted([a, b])
    assert reg.check(verify_models=True) == []


# ---------------------------------------------------------------- CLI


def _cli(root: Path, *args: str, subprocess_run: bool = False) -> subprocess.CompletedProcess[str]:
    """The registry CLI on ``root``: in this process (``registry_cli.main``, its stdout, stderr
    and exit code) or, with ``subprocess_run``, as ``python -m components.deploy.registry``."""
    argv = ["--root", str(root), *args]
    if subprocess_run:
        return subprocess.run(
            [sys.executable, "-m", "components.deploy.registry", *argv],
            cwd=PROJECT_ROOT,
            env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
            capture_output=True,
            text=True,
            timeout=120,
        )
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = registry_cli.main(argv)
    return subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())


def test_cli_register_list_show_promote_refuse_rollback(
    tmp_path: Path, artefacts: list[Path]
) -> None:
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"ndcg@10": 0.42}))
    a, b = artefacts[0].name, artefacts[1].name

    r = _cli(tmp_path, "register", "--model-dir", str(artefacts[0]), "--metrics", str(metrics), subprocess_run=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"{a}: candidate (data unknown)"
    with ModelRegistry(DataPaths(tmp_path)) as reg:
        assert reg.get(a).metrics == {"ndcg@10": 0.42}
        assert reg.history(a)[0].actor.startswith("cli:")
        reg.register(artefacts[1], metrics={}, data_version="d", now=at(1))

    for stage in (SHADOW, CANARY, PRODUCTION):
        r = _cli(tmp_path, "promote", a, "--to", stage, "--reason", f"go {stage}")
        assert r.returncode == 0, r.stderr
    assert r.stdout.strip().startswith(f"{a}: canary -> production (revision ")

    r = _cli(tmp_path, "promote", b, "--to", PRODUCTION)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"refused: {b}: candidate -> production is not allowed; from candidate: shadow or archived"
    ]

    r = _cli(tmp_path, "list")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert lines[0].split()[:3] == ["VERSION", "STAGE", "SINCE"]
    assert {tuple(line.split()[:2]) for line in lines[1:]} == {(a, PRODUCTION), (b, CANDIDATE)}
    r = _cli(tmp_path, "list", "--stage", CANDIDATE, "--json")
    assert [x["version"] for x in json.loads(r.stdout)] == [b]

    r = _cli(tmp_path, "show", a)
    shown = json.loads(r.stdout)
    assert shown["record"]["stage"] == PRODUCTION
    assert [h["to_stage"] for h in shown["history"]] == [CANDIDATE, SHADOW, CANARY, PRODUCTION]
    assert shown["history"][-1]["reason"] == "go production"

    r = _cli(tmp_path, "rollback", "--reason", "bad")
    assert r.returncode == 2 and r.stderr.strip().startswith("refused: rollback refused")

    for stage in (SHADOW, CANARY, PRODUCTION):
        assert _cli(tmp_path, "promote", b, "--to", stage).returncode == 0
    r = _cli(tmp_path, "rollback", "--reason", "latency")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().startswith(f"rollback: {b} archived, {a} in production")
    r = _cli(tmp_path, "deployment")
    assert json.loads(r.stdout) == {"production": a, "canary": None, "shadow": None, "revision": 9}
    r = _cli(tmp_path, "archive", b, "--reason", "again")
    assert r.returncode == 2
    r = _cli(tmp_path, "show", "f" * 16)
    assert r.returncode == 1 and r.stderr.strip() == f"error: version {'f' * 16} is not registered"
    r = _cli(tmp_path, "check", subprocess_run=True)
    assert (r.returncode, r.stdout.strip()) == (0, "ok")
