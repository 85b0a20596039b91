"""``make simulate``: the closed loop on embedded defaults, end to end.

1. **Production**: a trained project with a production model (else ``dvc repro`` of the
   training stages, ``tune`` included, and export, then the first model through the gates).
2. **Traffic**: a server in simulation mode; the simulated population
   (:class:`~components.simulate.run.Simulator`, ``simulate.users`` of the synthetic world) plays
   ``simulate.retrain_after_days`` days; every accepted event lands in the stream.
3. **Retrain**: the training DAG's stages (:data:`components.orchestration.TRAIN_STAGES`, ingest
   forced: it reads the stream) except ``evaluate`` (the offline report with its baselines,
   which neither the gates nor serving read: `dvc repro evaluate` when wanted) and ``tune``
   (the retrain keeps the hyper-parameters chosen by the last tuning: `dvc repro tune` to
   choose again on the new data), and ``export``;
   the new ranker is registered as a candidate.
4. **Offline gate**, then **live shadow**: the server (restarted on the new artefact set; it
   rebuilds its streamed state from the stream) serves ``simulate.shadow_days`` days with the
   candidate scoring as the shadow; the shadow gate reads the live shadow scores.
5. **Live canary**: ``simulate.canary_days`` days with ``promote.canary.share`` of the users on
   the candidate; the canary gate reads the live impressions and outcomes per arm and promotes
   or rolls back (or holds).
6. **KPIs** per day and arm (:mod:`components.monitoring.kpis_stage`), printed with the verdicts
   and the wall time of each phase.

The run starts from an empty stream, impression log and simulator record (``data/stream``,
``data/logs/impressions``, ``data/simulate`` are cleared first: they are run-time data, not
DVC outputs) unless ``--keep``. ``python -m components.simulate.loop [--root .] [--keep]``
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from components.core.catalog import DataPaths
from components.core.config import Params, load_params
from components.data.synthetic.constants import MS_PER_DAY
from components.simulate.client import ApiClient
from components.simulate.run import Simulator, Totals
from components.simulate.server import SimServer, start_server

log = logging.getLogger(__name__)


def retrain_stages(first: bool = False) -> tuple[str, ...]:
    """The stages the loop runs to retrain (module doc, step 3); for the ``first`` production
    model, ``tune`` too (the production stages read its chosen values)."""
    from components.orchestration import TRAIN_STAGES

    skip = ("evaluate",) if first else ("tune", "evaluate")
    return (*(s for s in TRAIN_STAGES if s not in skip), "export")


class Loop:
    """The loop's state: project, params, simulator, server, phase timings and verdicts."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.paths = DataPaths(root)
        self.params = load_params(root / "params.yaml")
        self.cfg = Params.of(self.params).simulate
        self.timings: dict[str, float] = {}
        self.verdicts: list[str] = []
        self.sim: Simulator | None = None
        self.server: SimServer | None = None
        self.client: ApiClient | None = None

    def timed(self, name: str, fn: Callable[[], Any]) -> Any:
        t0 = time.monotonic()
        try:
            return fn()
        finally:
            self.timings[name] = round(time.monotonic() - t0, 1)
            print(f"[loop] {name}: {self.timings[name]:.0f} s", flush=True)

    # ---- production

    def production(self) -> str | None:
        from components.deploy.registry import ModelRegistry

        with ModelRegistry(self.paths) as reg:
            dep = reg.deployment()
        return dep.production.version if dep.production is not None else None

    def ensure_production(self) -> None:
        """Train and promote a first model when the project has no production model."""
        from components.deploy.registry import ModelRegistry
        from components.orchestration import register_candidate, run_stage

        if self.production() is not None:
            return
        for stage in retrain_stages(first=True):
            run_stage(stage, self.root)
        reg = register_candidate(self.root)
        self.gates(("offline", "shadow", "canary"))
        if self.production() is None:  # the first model: no baseline to compare with
            with ModelRegistry(self.paths) as r:
                for stage in ("shadow", "canary", "production"):
                    if r.get(reg.version).stage != stage:
                        r.promote(reg.version, stage, reason="make simulate: first production model", now=datetime.now(UTC))

    def gates(self, names: Sequence[str]) -> None:
        from components.deploy.promote import run_gate

        for gate in names:
            v = run_gate(gate, self.params, self.paths, now=datetime.now(UTC))
            line = f"{gate:7s} {v.details.get('candidate') or '-':>18s}  {v.decision:9s} {v.reason}"
            self.verdicts.append(line)
            print(f"[loop] gate {line}", flush=True)

    # ---- traffic

    def serve(self) -> None:
        self.server = start_server(self.root, self.paths.of("logs"))
        self.client = ApiClient(self.server.base, self.server.api_key)
        if self.sim is None:
            self.sim = Simulator(self.params, self.client)
        else:
            self.sim.client = self.client

    def stop(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.server is not None:
            self.server.stop()
            self.server = None

    def traffic(self, days: int) -> Totals:
        """Serve and play ``days`` more simulated days, then stop the server (flushing its log)."""
        self.serve()
        try:
            assert self.sim is not None
            return self.sim.run_until(self.sim.now_ms + days * MS_PER_DAY)
        finally:
            self.stop()
            assert self.sim is not None
            self.sim.write_logs(self.paths)

    def retrain(self) -> str:
        from components.orchestration import register_candidate, run_stage

        for stage in retrain_stages():
            run_stage(stage, self.root)
        return register_candidate(self.root).version


def upload_exposure(stream: pd.DataFrame, impressions: pd.DataFrame) -> dict[str, Any]:
    """How the run's uploads reached feeds: ``uploads``, ``shown`` (with at least one
    impression), ``impressions`` of them, and per shown upload the simulated seconds from its
    upload to its first impression (``first_shown_after_s``)."""
    if stream.empty or impressions.empty:
        return {"uploads": 0 if stream.empty else int((stream["event_type"] == "content_upload").sum()), "shown": 0,
                "impressions": 0, "first_shown_after_s": pd.Series(dtype="float64")}  # fmt: skip
    ups = stream[stream["event_type"].astype(str) == "content_upload"]
    at = pd.to_datetime(ups.set_index(ups["content_id"].astype(str))["timestamp"], utc=True)
    imp = impressions[impressions["content_id"].astype(str).isin(at.index)]
    first = pd.to_datetime(imp.groupby(imp["content_id"].astype(str))["timestamp"].min(), utc=True)
    after = (first - at.reindex(first.index)).dt.total_seconds()
    return {"uploads": len(at), "shown": len(first), "impressions": len(imp), "first_shown_after_s": after}


def print_upload_exposure(paths: DataPaths) -> None:
    from components.experiments.outcomes import read_impression_log
    from components.serving.events import read_stream_events

    e = upload_exposure(read_stream_events(paths), read_impression_log(paths.of("impressions")))
    delay = e["first_shown_after_s"]
    median = f"{delay.median() / 60:.0f} simulated min" if len(delay) else "n/a"
    print(f"uploads during the run: {e['uploads']}, shown in feeds: {e['shown']} "
          f"({e['impressions']} impressions); median time from upload to first impression {median}")  # fmt: skip


def clear_runtime(paths: DataPaths) -> None:
    for name in ("stream", "impressions", "simulate"):
        shutil.rmtree(paths.of(name), ignore_errors=True)


def _phases(loop: Loop) -> str | None:
    """Traffic, retrain, gates and live traffic in order; the candidate's version."""
    cfg = loop.cfg
    loop.timed(f"traffic: {cfg.retrain_after_days} days, production only", lambda: loop.traffic(cfg.retrain_after_days))
    candidate: str = loop.timed("retrain on the stream, register", loop.retrain)
    loop.timed("offline gate", lambda: loop.gates(("offline",)))
    loop.timed(f"traffic: {cfg.shadow_days} day(s), live shadow", lambda: loop.traffic(cfg.shadow_days))
    loop.timed("shadow gate", lambda: loop.gates(("shadow",)))
    loop.timed(f"traffic: {cfg.canary_days} day(s), live canary", lambda: loop.traffic(cfg.canary_days))
    loop.timed("canary gate", lambda: loop.gates(("canary",)))
    return candidate


def run(root: Path, keep: bool = False) -> int:
    """The whole loop (module doc); a failed phase still ends with the KPIs of the traffic so far."""
    from components.monitoring.kpis_stage import format_table
    from components.monitoring.kpis_stage import run as kpis

    loop = Loop(root)
    began = time.monotonic()
    if not keep:
        clear_runtime(loop.paths)
    candidate, failed, before = None, None, None
    try:
        loop.timed("production model", loop.ensure_production)
        before = loop.production()
        candidate = _phases(loop)
    except Exception as exc:  # report what ran, then fail
        log.exception("the loop stopped")
        failed = f"{type(exc).__name__}: {exc}"
    finally:
        loop.stop()
    frame = loop.timed("kpis", lambda: kpis(loop.params, loop.paths))
    after = loop.production()
    print("\nKPIs per day and arm (served traffic):")
    print(format_table(frame))
    print("\nGates:")
    print("\n".join(loop.verdicts))
    outcome = "promoted" if after == candidate and after != before else ("not promoted (production kept)" if after == before else "changed")
    print(f"\nproduction before {before}, candidate {candidate}, production after {after}: {outcome}")
    if loop.sim is not None:
        t = loop.sim.totals
        print(f"simulated users {loop.sim.n_users}: {t.sessions} sessions, {t.requests} feeds, {t.sent} events sent, "
              f"{t.accepted} accepted, {t.rejected} rejected, {t.duplicates} duplicates, {t.unanswered} unanswered, "
              f"{t.uploads} uploads; traffic {t.wall_s:.0f} s{'; stopped: ' + t.stopped if t.stopped else ''}")  # fmt: skip
    print_upload_exposure(loop.paths)
    print(f"wall time {time.monotonic() - began:.0f} s; phases: {loop.timings}")
    if failed:
        print(f"the loop failed: {failed}")
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The closed loop: traffic, retrain, live shadow and canary, KPIs.")
    parser.add_argument("--root", default=None, help="the project (default: this checkout)")
    parser.add_argument("--keep", action="store_true", help="keep the stream, impression log and simulator records")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stdout)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    from components.orchestration import project_root

    root = Path(args.root).resolve() if args.root else project_root()
    return run(root, keep=args.keep)


if __name__ == "__main__":
    raise SystemExit(main())
