"""The user simulator against a real server over the session's tiny trained project: a short
simulated day on the simulated clock, then every event the server acknowledged is in the stream
exactly once (reconciled with the simulator's sent log), feeds were logged at simulated times,
uploads were accepted, and the stream flows into the ingest stage; the KPIs come out per day and arm."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest

from components.core.catalog import DataPaths
from components.core.config import deep_merge, load_params
from components.data.synthetic.constants import MS_PER_DAY
from components.experiments.outcomes import read_impression_log
from components.serving.events import read_stream_events
from components.simulate.client import ApiClient
from components.simulate.events import _context, upload_event
from components.simulate.loop import upload_exposure
from components.simulate.run import Simulator
from components.simulate.server import start_server
from tests.fixtures.tiny_project import HMAC_KEY, trained_project

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, tiny_pipeline: Path) -> Path:
    return trained_project(tmp_path_factory.mktemp("simulate"), tiny_pipeline)


def test_simulated_day_reconciles_with_the_stream(project: Path, tmp_path: Path) -> None:
    paths = DataPaths(project)
    params = deep_merge(
        load_params(project / "params.yaml"),
        {"simulate": {"users": 40, "days": 1, "max_pages": 3, "uploads_per_day": 4, "batch_events": 150, "max_wall_s": 240}},
    )
    server = start_server(project, tmp_path, max_life_s=600, RECO_HMAC_KEY=HMAC_KEY)
    try:
        client = ApiClient(server.base, server.api_key)
        sim = Simulator(params, client, threads=2)
        tot = sim.run_until(sim.start_ms + MS_PER_DAY)
        client.close()
    finally:
        server.stop()  # SIGTERM: the impression log is flushed
    sim.write_logs(paths)
    assert not tot.stopped and tot.sessions > 0 and tot.uploads == 4
    sent = pd.read_parquet(paths.of("simulate_sent"))
    stream = read_stream_events(paths)
    accepted = set(sent.loc[sent["status"] == "accepted", "event_id"])
    assert len(accepted) == tot.accepted > 0 and tot.unanswered == 0
    # every acknowledged event is in the stream, once; nothing else is
    assert stream["event_id"].is_unique
    assert set(stream["event_id"]) == accepted
    assert (stream["event_type"] == "content_upload").sum() == 4
    # served feeds were logged at their simulated times, inside the simulated day
    imp = read_impression_log(paths.of("impressions"))
    start = pd.Timestamp(sim.start_ms, unit="ms", tz="UTC")
    assert len(imp) > 0 and imp["timestamp"].min() >= start and imp["timestamp"].max() < start + pd.Timedelta(days=1, hours=2)
    # every logged feed is one the simulator asked for (rows still buffered at the stop may be
    # missing: the impression log's flush bound, measured by the fault-injection suite)
    assert 0 < imp["request_id"].nunique() <= tot.requests
    assert set(imp["request_id"]) <= set(pd.read_parquet(paths.of("simulate_sent").with_name("requests.parquet"))["request_id"])
    # the day's uploads were served before any retrain (indexed from their metadata on arrival),
    # never before their upload time
    exposure = upload_exposure(stream, imp)
    assert exposure["uploads"] == 4 and exposure["shown"] >= 2, exposure  # 4 of 4 here (exploration slots)
    assert exposure["first_shown_after_s"].min() >= 0

    # the stream is an ingest input, and the KPIs read both logs
    from components.data.ingest import run as ingest
    from components.monitoring.kpis_stage import run as kpis

    params = load_params(project / "params.yaml")
    result = ingest(params, paths.of("drop_synthetic"), paths, key=HMAC_KEY.encode(), stream_dir=paths.of("stream_events"))
    assert result.stream["stored"] + result.stream["duplicates"] + result.stream["quarantined"] == len(stream)
    assert result.stream["stored"] == len(stream) and result.stream["uploads"] == 4
    frame = kpis(params, paths)
    day = frame[frame["arm"] == "all"].iloc[0]
    assert day["dau"] >= 20 and day["impressions"] == len(imp.drop_duplicates(["request_id", "content_id"]))
    assert 0 < day["ctr"] < 1 and day["time_spent_s"] > 0


def test_kill_9_mid_simulated_traffic_keeps_every_accepted_event_once(tmp_path: Path, tiny_pipeline: Path) -> None:
    """``kill -9`` of the server while the simulator plays, restart: every event the server
    accepted (per the simulator's sent log) is in the stream exactly once, none is stored twice
    (the unanswered ones at most once), and the streamed state (heavy viewers' seen contents, a
    moderated content) is back."""
    project = trained_project(tmp_path / "project", tiny_pipeline)
    paths = DataPaths(project)
    params = deep_merge(
        load_params(project / "params.yaml"),
        {"simulate": {"users": 60, "days": 1, "max_pages": 3, "uploads_per_day": 2, "batch_events": 100, "max_wall_s": 240}},
    )
    server = start_server(project, tmp_path, max_life_s=600, RECO_HMAC_KEY=HMAC_KEY)
    client = ApiClient(server.base, server.api_key, tries=3)  # give up soon after the kill
    sim = Simulator(params, client, threads=2)
    at_s, ctx = sim.start_ms // 1000, _context(sim.truth.world, 0)
    target = client.feed(sim.user_ids[0], 10, at_s, ctx)["items"][0]["content_id"]
    reports = [
        {"event_id": f"report-{n}", "event_type": "report", "user_id": u, "content_id": target,
         "timestamp": sim.start_ms + n, "reason": "spam"}
        for n, u in enumerate(sim.user_ids[1:5])
    ]  # fmt: skip
    assert client.post_events(reports).body["accepted"] == 4
    upload = upload_event("upload-before-kill", "video_kill_upload", sim.creator_ids[0], "music", 20.0, ["music", "live"], sim.start_ms)
    assert client.post_events([upload]).body["accepted"] == 1
    time.sleep(0.5)
    assert target not in {i["content_id"] for i in client.feed(sim.user_ids[0], 10, at_s, ctx)["items"]}, "moderated"

    def kill_when_busy() -> None:
        deadline = time.monotonic() + 180
        while sim.totals.accepted < 1500 and time.monotonic() < deadline:
            time.sleep(0.05)
        server.kill9()

    killer = threading.Thread(target=kill_when_busy)
    killer.start()
    try:
        with pytest.raises(RuntimeError, match="feed for"):  # the first feed after the kill
            sim.run_until(sim.start_ms + MS_PER_DAY)
    finally:
        killer.join()
        client.close()
        server.stop()
    sim.write_logs(paths)
    sent = pd.read_parquet(paths.of("simulate_sent"))
    accepted = set(sent.loc[sent["status"] == "accepted", "event_id"])
    unanswered = sent[sent["status"] == "unanswered"]
    assert len(accepted) >= 1500 and set(sent["status"]) <= {"accepted", "unanswered"}

    restarted = start_server(project, tmp_path, max_life_s=600, RECO_HMAC_KEY=HMAC_KEY)
    try:
        again = ApiClient(restarted.base, restarted.api_key)
        counts = read_stream_events(paths)["event_id"].value_counts()
        assert counts.max() == 1, "an event stored twice"
        assert accepted | {e["event_id"] for e in reports} <= set(counts.index), "an accepted event lost"
        stored_unanswered = len(set(unanswered["event_id"]) & set(counts.index))
        print(f"kill -9 after {len(accepted)} accepted events: {len(unanswered)} unanswered, {stored_unanswered} of them stored")
        # the streamed state is back: the uploads in the index, the moderated content and each
        # user's seen contents
        uploads = int((read_stream_events(paths)["event_type"] == "content_upload").sum())
        health = httpx.get(f"{restarted.base}/healthz").json()
        assert uploads >= 1 and health["catalogue"]["uploads_since_export"] == uploads, (health, uploads)
        views = sent[(sent["status"] == "accepted") & (sent["event_type"] == "view")]
        heavy = views["user_id"].value_counts().index[:3]
        for uid in heavy:
            shown = {i["content_id"] for i in again.feed(str(uid), 10, sim.now_ms // 1000, ctx)["items"]}
            assert not shown & set(views.loc[views["user_id"] == uid, "content_id"]), uid
            assert target not in shown
        again.close()
    finally:
        restarted.stop()
