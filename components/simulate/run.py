"""Play the simulated population against the API, on the simulated clock (see the package doc).

:class:`Simulator` keeps every user's next session time and mood, so a run can advance in
phases (``run_until``) with the loop retraining or promoting in between. Sessions are played
in waves of one simulated hour: the wave's sessions run concurrently (``threads`` HTTP clients,
each session with its own random stream seeded by ``base.seed``, the user and the session
number), then the wave's events are posted in batches of ``simulate.batch_events``. The
uploads of the hours before a wave are posted first: the server indexes them on arrival, so
they can be served from that wave on, and never before their upload time.

Bounded: at most ``simulate.max_requests`` feed requests and ``simulate.max_wall_s`` wall
seconds; the run stops early (and says so) when either is reached.
"""

from __future__ import annotations

import argparse
import heapq
import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from components.core.catalog import DataPaths
from components.core.config import Params, stage_context
from components.core.io import atomic_write_parquet
from components.data.synthetic.arrays import seeded_rng
from components.data.synthetic.constants import MS_PER_DAY, MS_PER_H
from components.data.synthetic.params import GenParams
from components.data.synthetic.world import make_world
from components.simulate.client import ApiClient
from components.simulate.events import _context, page_events, upload_event
from components.simulate.models import (
    Truth,
    feedback,
    leave_probability,
    mood_after,
    return_gap_ms,
    satisfaction,
)

log = logging.getLogger(__name__)

#: the quiet end of a phase: longer than a session (max_pages feeds of ~10 short videos)
QUIET_MS = 2 * MS_PER_H
#: purpose keys of the seeded streams (after base.seed)
_SESSION, _START, _UPLOAD = 101, 102, 103


@dataclass
class Totals:
    """What a run did: requests, sessions, events sent / accepted, bounds hit."""

    requests: int = 0
    sessions: int = 0
    sent: int = 0
    accepted: int = 0
    rejected: int = 0
    duplicates: int = 0
    unanswered: int = 0
    uploads: int = 0
    stopped: str = ""
    wall_s: float = 0.0  # wall seconds spent playing traffic
    satisfaction: list[float] = field(default_factory=list)


class Simulator:
    """The population, its clock and its records."""

    def __init__(self, params: Any, client: ApiClient, *, threads: int = 4, start_ms: int | None = None) -> None:
        cfg = Params.of(params)
        self.cfg = cfg.simulate
        self.seed = cfg.base.seed
        gen = GenParams.from_params(cfg)
        self.truth = Truth.of(make_world(gen))
        world = self.truth.world
        n_world = gen.n_users
        self.n_users = n_world if self.cfg.users == 0 else min(self.cfg.users, n_world)
        self.user_ids = [str(u) for u in world.user_ids.to_pylist()[: self.n_users]]
        self.creator_ids = [str(c) for c in world.creator_ids.to_pylist()]
        self.start_ms = gen.end_ms if start_ms is None else int(start_ms)
        self.now_ms = self.start_ms
        self.client = client
        self.threads = threads
        self.mood = np.full(self.n_users, self.cfg.satisfaction_ref)
        self.session_no = np.zeros(self.n_users, dtype=np.int64)
        rng = seeded_rng(self.seed, _START)
        first = [
            self.start_ms + return_gap_ms(self.cfg, self.cfg.satisfaction_ref, float(world.activity[u]), rng) % MS_PER_DAY
            for u in range(self.n_users)
        ]
        self.queue: list[tuple[int, int]] = sorted((t, u) for u, t in enumerate(first))
        self.uploads = self._plan_uploads()
        self.sent: list[dict[str, Any]] = []
        self.requests: list[dict[str, Any]] = []
        self.totals = Totals()
        self._ids = 0
        self._id_lock = threading.Lock()
        self._phase_end_ms = self.start_ms

    # ---- uploads

    def _plan_uploads(self) -> list[tuple[int, int]]:
        """(time, creator) of every upload of the run (``uploads_per_day`` a day, uniform)."""
        rng = seeded_rng(self.seed, _UPLOAD)
        n = self.cfg.uploads_per_day * self.cfg.days
        times = np.sort(rng.integers(0, self.cfg.days * MS_PER_DAY, n)) + self.start_ms
        creators = rng.integers(0, len(self.creator_ids), n)
        return [(int(t), int(c)) for t, c in zip(times, creators, strict=True)]

    def _upload(self, t_ms: int, creator: int, no: int) -> dict[str, Any]:
        rng = seeded_rng(self.seed, _UPLOAD, no)
        truth = self.truth
        cat = int(truth.creator_category[creator])
        duration = float(np.round(np.clip(rng.lognormal(np.log(22.0), 0.75), 5.0, 180.0), 1))
        cid = f"video_sim_{self.seed}_{no:06d}"
        truth.add(cid, creator, cat, float(rng.normal(0.0, 1.0)), duration)
        name = truth.world.categories[cat]
        words = [name, "new", f"upload{no}"]
        return upload_event(self._next_id(), cid, self.creator_ids[creator], name, duration, words, t_ms)

    # ---- sessions

    def _next_id(self) -> str:
        with self._id_lock:
            self._ids += 1
            return f"sim-{self.seed}-{self._ids:09d}"

    def _session(self, user: int, t_ms: int) -> tuple[list[dict[str, Any]], int, float, list[dict[str, Any]]]:
        """One session: pages until the leave model ends it. Returns the events, the session's
        end, its satisfaction and the requests made."""
        cfg, truth = self.cfg, self.truth
        rng = seeded_rng(self.seed, _SESSION, user, int(self.session_no[user]))
        uid = self.user_ids[user]
        ctx = _context(truth.world, user)
        events: list[dict[str, Any]] = []
        requests: list[dict[str, Any]] = []
        sats: list[float] = []
        t = t_ms
        for page in range(cfg.max_pages):
            if t >= self._phase_end_ms - 15 * 60 * 1000:  # no page that could run past the phase
                break
            body = self.client.feed(uid, cfg.feed_k, t // 1000, ctx)
            shown = [it["content_id"] for it in body.get("items", [])]
            items, known = truth.items_of(shown)
            requests.append({
                "request_id": body.get("request_id"), "user_id": uid, "at_ms": t, "page": page,
                "arm": body.get("arm"), "model_version": body.get("model_version"),
                "degraded": bool(body.get("degraded")), "n_items": len(shown), "n_known": len(known),
            })  # fmt: skip
            if not len(items):
                break
            out = feedback(truth, user, items, t, rng)
            creators = [self.creator_ids[int(c)] for c in truth.creator[items]]
            evs, t = page_events(truth.world, user, uid, known, creators, out, t, rng, self._next_id)
            events += evs
            sats.append(satisfaction(out))
            if rng.random() < leave_probability(cfg, sats[-1]):
                break
        return events, t, float(np.mean(sats)) if sats else 0.0, requests

    # ---- the clock

    def run_until(self, end_ms: int) -> Totals:
        """Play every session starting before ``end_ms`` minus :data:`QUIET_MS` (and the uploads
        due), wave by wave. Sessions due in the last :data:`QUIET_MS` wait for the next phase, so
        no event of a phase passes its end: a retrain after the phase sees whole days (the
        offline gate refuses a model trained on data older than its drift window)."""
        tot = self.totals
        began = time.monotonic()
        end_ms, phase_end = end_ms - QUIET_MS, end_ms
        self._phase_end_ms = phase_end
        with ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="sim") as pool:
            while self.queue and self.queue[0][0] < end_ms and not tot.stopped:
                wave_start = self.queue[0][0] // MS_PER_H * MS_PER_H
                wave_end = min(wave_start + MS_PER_H, end_ms)
                # the uploads of earlier hours: none reaches the server before its upload time
                self._post_uploads(wave_start)
                wave: list[tuple[int, int]] = []
                while self.queue and self.queue[0][0] < wave_end:
                    wave.append(heapq.heappop(self.queue))
                results = list(pool.map(lambda tu: self._session(tu[1], tu[0]), wave))
                batch: list[dict[str, Any]] = []
                for (_t0, user), (events, t_end, sat, reqs) in zip(wave, results, strict=True):
                    batch += events
                    self.requests += reqs
                    tot.requests += len(reqs)
                    tot.sessions += 1
                    tot.satisfaction.append(sat)
                    self.mood[user] = mood_after(self.cfg, float(self.mood[user]), sat)
                    self.session_no[user] += 1
                    rng = seeded_rng(self.seed, _SESSION, user, int(self.session_no[user]), 1)
                    gap = return_gap_ms(self.cfg, float(self.mood[user]), float(self.truth.world.activity[user]), rng)
                    heapq.heappush(self.queue, (t_end + gap, user))
                self._post(sorted(batch, key=lambda e: e["timestamp"]))
                self.now_ms = wave_end
                self._check_bounds(began)
        self._post_uploads(phase_end)
        self.now_ms = max(self.now_ms, phase_end)
        tot.wall_s = round(tot.wall_s + time.monotonic() - began, 1)
        return tot

    def _check_bounds(self, began: float) -> None:
        """Stop at ``max_requests`` (over the simulator's life) or ``max_wall_s`` (this run)."""
        tot = self.totals
        if tot.requests >= self.cfg.max_requests:
            tot.stopped = f"max_requests ({self.cfg.max_requests}) reached"
        elif time.monotonic() - began >= self.cfg.max_wall_s:
            tot.stopped = f"max_wall_s ({self.cfg.max_wall_s:g} s) reached"
        if tot.stopped:
            log.warning("simulation stopped early: %s", tot.stopped)

    def _post_uploads(self, until_ms: int) -> None:
        due = []
        while self.uploads and self.uploads[0][0] < until_ms:
            t, creator = self.uploads.pop(0)
            due.append(self._upload(t, creator, self.totals.uploads))
            self.totals.uploads += 1
        if due:
            self._post(due)

    def _post(self, events: list[dict[str, Any]]) -> None:
        """Post in batches; record each event with the server's answer (the sent log)."""
        tot = self.totals
        size = self.cfg.batch_events
        for i in range(0, len(events), size):
            chunk = events[i : i + size]
            answer = self.client.post_events(chunk)
            errors = {int(e["index"]): str(e["reason"]) for e in answer.body.get("errors", [])} if answer.status == 200 else {}
            for j, e in enumerate(chunk):
                status = "unanswered" if answer.status == 0 else ("accepted" if answer.status == 200 else f"http_{answer.status}")
                reason = errors.get(j)
                if reason is not None:
                    status = "duplicate" if reason == "duplicate_event_id" else "rejected"
                self.sent.append({
                    "event_id": e["event_id"], "event_type": e["event_type"], "user_id": e["user_id"],
                    "content_id": e.get("content_id"), "timestamp": e["timestamp"], "watch_duration_s": e.get("watch_duration_s"),
                    "status": status, "reason": reason or "",
                })  # fmt: skip
            tot.sent += len(chunk)
            if answer.status == 200:
                tot.accepted += int(answer.body.get("accepted", 0))
                tot.rejected += int(answer.body.get("rejected", 0))
                tot.duplicates += int(answer.body.get("duplicates", 0))
            else:
                tot.unanswered += len(chunk)

    # ---- records

    def write_logs(self, paths: DataPaths) -> Path:
        """``data/simulate/sent.parquet`` (every event with the server's answer) and
        ``requests.parquet`` (every feed request with its arm)."""
        sent = pd.DataFrame(self.sent, columns=["event_id", "event_type", "user_id", "content_id", "timestamp", "watch_duration_s", "status", "reason"])
        sent["timestamp"] = pd.to_datetime(sent["timestamp"], unit="ms", utc=True)
        out = paths.of("simulate_sent")
        atomic_write_parquet(out, sent)
        atomic_write_parquet(out.with_name("requests.parquet"), pd.DataFrame(self.requests))
        return out


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: play ``simulate.days`` against a running server (``--base``, ``--api-key``)."""
    parser = argparse.ArgumentParser(description="Simulated users against a running API (127.0.0.1).")
    parser.add_argument("--params", default=None)
    parser.add_argument("--root", default=None)
    parser.add_argument("--base", required=True, help="e.g. http://127.0.0.1:8000")
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--days", type=float, default=None, help="override simulate.days")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    params, paths = stage_context(args)
    client = ApiClient(args.base, args.api_key)
    sim = Simulator(params, client)
    days = args.days if args.days is not None else sim.cfg.days
    tot = sim.run_until(sim.start_ms + int(days * MS_PER_DAY))
    sim.write_logs(paths)
    client.close()
    print(f"simulate: {tot.sessions} sessions, {tot.requests} feeds, {tot.sent} events sent, {tot.accepted} accepted "
          f"({tot.rejected} rejected, {tot.duplicates} duplicates, {tot.unanswered} unanswered), {tot.uploads} uploads, "
          f"{tot.wall_s:.0f} s{'; stopped: ' + tot.stopped if tot.stopped else ''}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
