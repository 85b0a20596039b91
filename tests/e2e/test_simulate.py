"""The user simulator against a real server over the session's tiny trained project: a short
simulated day on the simulated clock, then every event the server acknowledged is in the stream
exactly once (reconciled with the simulator's sent log), feeds were logged at simulated times,
uploads were accepted, and the stream flows into the ingest stage; the KPIs come out per day and arm."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from components.core.catalog import DataPaths
from components.core.config import deep_merge, load_params
from components.data.synthetic.constants import MS_PER_DAY
from components.experiments.outcomes import read_impression_log
from components.serving.events import read_stream_events
from components.simulate.client import ApiClient
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
