"""The event sink's durability: all-or-nothing batches over several days, failures before and
after the commit point with the client's retry, crash leftovers at start-up, dedupe kept
across restarts and shared by processes, replay of the streamed state, and the follower's
bounded retries."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from components.core.catalog import DataPaths
from components.data.ingestion.rules import Limits
from components.serving import batches as batches_mod
from components.serving.events import EventSink, StreamFollower, read_stream_events
from tests.fixtures.params import project_params

NOW = pd.Timestamp("2026-06-03T12:00:00Z")
KEY = b"test-key"
LIMITS = Limits.from_params(project_params())


def ev(i: int, day: int = 0, **over: Any) -> dict[str, Any]:
    """An event ``day`` days before NOW (a batch of several days spans several partitions)."""
    base: dict[str, Any] = {
        "event_id": f"e{i}",
        "event_type": "like",
        "user_id": f"user{i % 3}",
        "content_id": "c1",
        "timestamp": (NOW - pd.Timedelta(days=day, minutes=5)).isoformat(),
    }
    base.update(over)
    return base


def three_days() -> list[dict[str, Any]]:
    return [ev(i, day=i % 3) for i in range(9)]


def sink_at(root: Path) -> EventSink:
    return EventSink(DataPaths(root), key=KEY, limits=LIMITS, known_content={"c1", "c2"})


def stream_ids(root: Path) -> list[str]:
    got = read_stream_events(DataPaths(root))
    return sorted(got["event_id"]) if len(got) else []


def staging(root: Path) -> list[Path]:
    folder = root / "data" / "stream" / ".staging"
    return sorted(folder.iterdir()) if folder.exists() else []


def test_a_batch_over_three_days_is_stored_whole_in_one_folder(tmp_path: Path) -> None:
    s = sink_at(tmp_path)
    r = s.accept(three_days(), NOW)
    assert (r.received, r.accepted) == (9, 9) and r.reconciles()
    batch_dirs = list((tmp_path / "data/stream/events").iterdir())
    assert len(batch_dirs) == 1, "one batch, one folder (renamed into place in one step)"
    assert len(list(batch_dirs[0].glob("event_date=*/*.parquet"))) == 3
    assert stream_ids(tmp_path) == [f"e{i}" for i in range(9)]
    assert s.store.log.count_ids() == 9 and not staging(tmp_path)


def test_a_failed_write_mid_batch_stores_nothing_and_the_retry_stores_each_once(tmp_path: Path, monkeypatch) -> None:
    """An OSError on the second of the batch's three files (before the commit point): nothing
    is stored or remembered; the client's retry then stores every event exactly once."""
    s = sink_at(tmp_path)
    real = batches_mod.fsync_file
    calls = {"n": 0}

    def failing(path: Path) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(28, "No space left on device (injected)")
        real(path)

    monkeypatch.setattr(batches_mod, "fsync_file", failing)
    with pytest.raises(OSError, match="injected"):
        s.accept(three_days(), NOW)
    assert stream_ids(tmp_path) == [] and s.store.log.count_ids() == 0 and not staging(tmp_path)
    retry = s.accept(three_days(), NOW)
    assert (retry.accepted, retry.duplicates) == (9, 0)
    assert stream_ids(tmp_path) == [f"e{i}" for i in range(9)]
    again = s.accept(three_days(), NOW)
    assert (again.accepted, again.duplicates) == (0, 9)
    assert stream_ids(tmp_path) == [f"e{i}" for i in range(9)]


def test_a_failure_after_the_commit_point_is_finished_by_the_retry(tmp_path: Path, monkeypatch) -> None:
    """The rename into place fails once after the commit: the request fails (not acknowledged),
    the batch is complete in staging; the retry places it and reports the events as
    duplicates: each stored once, none lost."""
    s = sink_at(tmp_path)
    real = os.replace
    calls = {"n": 0}

    def failing(src: Any, dst: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError(5, "I/O error (injected)")
        real(src, dst)

    monkeypatch.setattr(batches_mod.os, "replace", failing)
    with pytest.raises(OSError, match="injected"):
        s.accept(three_days(), NOW)
    assert len(staging(tmp_path)) == 1 and not list((tmp_path / "data/stream/events").iterdir())
    assert s.store.log.count_ids() == 9  # committed: complete and fsynced in staging
    retry = s.accept(three_days(), NOW)
    assert (retry.accepted, retry.duplicates) == (0, 9)
    assert stream_ids(tmp_path) == [f"e{i}" for i in range(9)] and not staging(tmp_path)


def test_start_up_places_committed_leftovers_and_drops_uncommitted_ones(tmp_path: Path, monkeypatch) -> None:
    """A process killed after the commit (files in staging, ids committed) and one killed
    before it (staging only): the next start finishes the first and deletes the second."""
    s = sink_at(tmp_path)
    monkeypatch.setattr(s.store, "_place", lambda name: (_ for _ in ()).throw(SystemExit("killed")))
    with pytest.raises(SystemExit):
        s.accept([ev(1), ev(2, day=1)], NOW)
    orphan = tmp_path / "data/stream/.staging/api-uncommitted"
    (orphan / "events").mkdir(parents=True)
    (orphan / "events" / "half.parquet").write_bytes(b"PAR1 torn")
    assert len(staging(tmp_path)) == 2
    restarted = sink_at(tmp_path)
    assert restarted.recover() == {"placed": 1, "dropped": 1, "indexed": 0}
    assert stream_ids(tmp_path) == ["e1", "e2"] and not staging(tmp_path)


def test_dedupe_survives_a_restart_and_a_lost_commit_log(tmp_path: Path) -> None:
    sink_at(tmp_path).accept([ev(1), ev(2)], NOW)
    again = sink_at(tmp_path).accept([ev(1), ev(3)], NOW)  # a new process
    assert (again.accepted, again.duplicates) == (1, 1)
    for f in (tmp_path / "data/stream").glob("commits.sqlite*"):
        f.unlink()
    rebuilt = sink_at(tmp_path)
    assert rebuilt.recover()["indexed"] == 2  # the commit log rebuilt from the stream's folders
    third = rebuilt.accept([ev(1), ev(2), ev(3), ev(4)], NOW)
    assert (third.accepted, third.duplicates) == (1, 3)
    assert stream_ids(tmp_path) == ["e1", "e2", "e3", "e4"]


def test_two_processes_racing_on_the_same_ids_store_each_once(tmp_path: Path) -> None:
    """Two sinks (two workers' connections to the commit log) post overlapping batches at the
    same time, many rounds: every id is stored exactly once and each batch reconciles."""
    a, b = sink_at(tmp_path), sink_at(tmp_path)
    results: list[Any] = []

    def post(sink: EventSink, offset: int) -> None:
        for r in range(10):
            results.append(sink.accept([ev(10 * r + i) for i in range(offset, offset + 8)], NOW))

    threads = [threading.Thread(target=post, args=(a, 0)), threading.Thread(target=post, args=(b, 4))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    posted = [f"e{10 * r + i}" for r in range(10) for off in (0, 4) for i in range(off, off + 8)]
    ids = stream_ids(tmp_path)
    assert len(ids) == len(set(ids)) == len(set(posted)) == 102
    assert sum(r.accepted for r in results) == 102 and sum(r.duplicates for r in results) == 160 - 102
    assert all(r.reconciles() for r in results)


def test_replay_rebuilds_the_streamed_state_and_the_follower_skips_a_bad_batch(tmp_path: Path) -> None:
    first = sink_at(tmp_path)
    first.accept([ev(1, event_type="view", watch_duration_s=3.0), ev(2, event_type="report", reason="spam")], NOW)
    got: list[pd.DataFrame] = []
    restarted = sink_at(tmp_path)
    assert restarted.replay([got.append]) == 2
    assert sorted(got[0]["event_id"]) == ["e1", "e2"] and got[0].attrs["received_s"] > 0
    assert restarted.accept([ev(1, event_type="view", watch_duration_s=3.0)], NOW).duplicates == 1  # the commit log
    from components.data.ingestion.pseudonyms import pseudonym

    window = restarted.realtime.row(pseudonym("user1", KEY), int(NOW.timestamp()))
    assert window["rt_views_1h"] == 1
    follower = StreamFollower(restarted, max_tries=3)
    other = sink_at(tmp_path)
    other.accept([ev(5)], NOW)
    bad = next(d for d in (tmp_path / "data/stream/events").iterdir() if "e5" in str(read_batch_ids(d)))
    for f in bad.rglob("*.parquet"):
        f.write_bytes(b"not parquet")
    other.accept([ev(6)], NOW)
    assert [follower.poll() for _ in range(3)] == [0, 0, 1]  # tried, tried, skipped; then the next
    assert follower.skipped == [bad.name] and follower.poll() == 0


def read_batch_ids(folder: Path) -> list[str]:
    return pd.read_parquet(next(folder.rglob("*.parquet")))["event_id"].tolist()


def _post_from_another_process(root: str, offset: int, out: Any) -> None:
    s = sink_at(Path(root))
    results = [s.accept([ev(10 * r + i) for i in range(offset, offset + 8)], NOW) for r in range(10)]
    out.put((sum(r.accepted for r in results), sum(r.duplicates for r in results)))


def test_two_real_processes_store_each_id_once(tmp_path: Path) -> None:
    """The same race as above from two spawned processes (two server workers)."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_post_from_another_process, args=(str(tmp_path), off, out)) for off in (0, 4)]
    for p in procs:
        p.start()
    got = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    ids = stream_ids(tmp_path)
    assert len(ids) == len(set(ids)) == 102
    assert sum(a for a, _ in got) == 102 and sum(d for _, d in got) == 160 - 102


def test_an_online_store_outage_keeps_the_batch_and_answers_it(tmp_path: Path) -> None:
    """The real-time push fails after the commit: the batch is still answered as accepted (a
    500 would make the client retry a batch that is already stored) and the events are there."""

    def broken_push(rows: pd.DataFrame) -> None:
        raise RuntimeError("push source not found")

    s = EventSink(DataPaths(tmp_path), key=KEY, limits=LIMITS, known_content={"c1", "c2"}, push=broken_push)
    r = s.accept(three_days(), NOW)
    assert (r.accepted, r.users_updated) == (9, 0) and r.reconciles()
    assert s.push_failures == 1
    assert stream_ids(tmp_path) == [f"e{i}" for i in range(9)]


def test_event_ids_older_than_the_retention_leave_the_commit_log(tmp_path: Path) -> None:
    """The commit log keeps ids for ``serving.dedupe_retention_h`` after their commit, then
    prunes them (every PRUNE_EVERY_S at most), so it grows with the retention, not the stream."""
    import time

    from components.serving.events import PRUNE_EVERY_S

    s = EventSink(DataPaths(tmp_path), key=KEY, limits=LIMITS, known_content={"c1"}, dedupe_retention_s=3600.0)
    old = [ev(i) for i in range(5)]
    s.accept(old, NOW)
    t_old = time.time()
    assert s.prune_ids(t_old) == 0  # nothing is an hour old yet
    s.accept([ev(i) for i in range(5, 8)], NOW)
    assert s.store.log.count_ids() == 8
    # an hour and a bit later (the next prune is due): the first batch's ids are forgotten, and
    # the second's, committed after it, too; the batches stay listed for recovery
    later = t_old + 3600.0 + PRUNE_EVERY_S + 1.0
    assert s.prune_ids(later) == 8
    assert s.store.log.count_ids() == 0 and len(s.store.log.names()) == 2
    assert s.prune_ids(later + 1.0) == 0  # not due again before PRUNE_EVERY_S
    # a fresh sink (a restart) no longer refuses a pruned id: ingest's dedupe by id has the last word
    r = sink_at(tmp_path).accept([old[0]], NOW)
    assert r.accepted == 1 and r.duplicates == 0


def test_ids_within_the_retention_are_still_refused_after_a_prune(tmp_path: Path) -> None:
    import time

    s = EventSink(DataPaths(tmp_path), key=KEY, limits=LIMITS, known_content={"c1"}, dedupe_retention_s=3600.0)
    s.accept([ev(i) for i in range(3)], NOW)
    assert s.prune_ids(time.time() + 1800.0) == 0  # half an hour later: all within the retention
    r = sink_at(tmp_path).accept([ev(0), ev(9)], NOW)
    assert (r.accepted, r.duplicates) == (1, 1)
