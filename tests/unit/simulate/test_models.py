"""The user simulator's models without a server: a stub API answers feeds from the world's
latent truth (good, random or inverted), so each model's response to satisfaction shows."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pytest

from components.core.config import Simulate
from components.data.synthetic.constants import MS_PER_DAY
from components.simulate.client import ApiClient, Posted
from components.simulate.models import leave_probability, mean_gap_ms, mood_after
from components.simulate.run import Simulator
from tests.fixtures.params import project_params

SMALL = {"n_users": 120, "n_items": 400, "n_creators": 30}


class StubApi:
    """Feeds ranked by the latent truth: ``oracle`` (best expected engagement first),
    ``inverted`` (worst first) or ``random``; every event is accepted."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.sim: Simulator | None = None
        self.rng = np.random.default_rng(0)
        self.posted: list[dict[str, Any]] = []

    def feed(self, user_id: str, k: int, at_s: int, ctx: dict[str, str]) -> dict[str, Any]:
        assert self.sim is not None
        t = self.sim.truth
        w = t.world
        u = self.sim.user_ids.index(user_id)
        if self.mode == "random":
            pick = self.rng.choice(len(t.ids), k, replace=False)
        else:
            value = np.log(w.interest[u, t.category] + 1e-3) + 0.6 * t.quality
            order = np.argsort(-value if self.mode == "oracle" else value, kind="stable")
            pick = self.rng.choice(order[: 5 * k], k, replace=False)
        return {"request_id": str(self.rng.integers(1 << 30)), "arm": "production", "items": [{"content_id": t.ids[i]} for i in pick]}

    def post_events(self, events: list[dict[str, Any]]) -> Posted:
        self.posted += events
        return Posted(200, {"accepted": len(events), "rejected": 0, "duplicates": 0, "errors": []})


def _run(mode: str, days: int = 3, seed: int = 42) -> Simulator:
    params = project_params(base={"seed": seed}, datagen=SMALL, simulate={"users": 0, "uploads_per_day": 5, "days": days})
    api = StubApi(mode)
    sim = Simulator(params, api, threads=1)  # type: ignore[arg-type]
    api.sim = sim
    sim.run_until(sim.start_ms + days * MS_PER_DAY)
    return sim


def test_same_seed_same_run_and_another_seed_another() -> None:
    a, b = _run("oracle", days=1), _run("oracle", days=1)
    assert [e["event_id"] for e in a.sent] == [e["event_id"] for e in b.sent]
    assert [(e["event_type"], e["content_id"], e["timestamp"]) for e in a.sent] == [(e["event_type"], e["content_id"], e["timestamp"]) for e in b.sent]
    c = _run("oracle", days=1, seed=7)
    assert [(e["event_type"], e["timestamp"]) for e in c.sent] != [(e["event_type"], e["timestamp"]) for e in a.sent]


def test_events_follow_the_simulated_clock_and_the_spec_types() -> None:
    sim = _run("random", days=2)
    ts = np.array([e["timestamp"] for e in sim.sent])
    # no event passes the phase's end: a retrain after it sees whole days
    assert ts.min() >= sim.start_ms and ts.max() < sim.start_ms + 2 * MS_PER_DAY
    types = Counter(e["event_type"] for e in sim.sent)
    assert {"view", "skip", "like", "complete_view", "content_upload"} <= set(types)
    assert types["content_upload"] == 10  # 5 a day over simulate.days
    ups = {e["content_id"] for e in sim.sent if e["event_type"] == "content_upload"}
    assert ups <= set(sim.truth.ids)  # uploads join the latent truth (they can be watched)


def test_better_feeds_keep_users_longer_and_bring_them_back() -> None:
    good, bad = _run("oracle"), _run("inverted")
    g, b = good.totals, bad.totals
    assert np.mean(g.satisfaction) > np.mean(b.satisfaction) + 0.1
    assert g.requests / g.sessions > b.requests / b.sessions  # leave model: longer sessions
    assert g.sessions > 1.2 * b.sessions  # return model: more sessions in the same days
    watch = {m: sum(e["watch_duration_s"] or 0 for e in s.sent if e["event_type"] == "view") for m, s in (("good", good), ("bad", bad))}
    assert watch["good"] > 1.5 * watch["bad"]  # simulated time spent


def test_leave_and_return_respond_to_satisfaction() -> None:
    cfg = Simulate.model_validate(project_params()["simulate"])
    ref = cfg.satisfaction_ref
    assert leave_probability(cfg, ref) == pytest.approx(cfg.leave_base)
    assert leave_probability(cfg, ref + 0.3) < cfg.leave_base < leave_probability(cfg, ref - 0.2)
    assert mean_gap_ms(cfg, ref + 0.3, 1.0) < mean_gap_ms(cfg, ref, 1.0) < mean_gap_ms(cfg, ref - 0.2, 1.0)
    assert mood_after(cfg, 0.2, 0.6) == pytest.approx(0.2 + cfg.satisfaction_memory * 0.4)


def test_client_talks_to_localhost_only() -> None:
    with pytest.raises(ValueError, match=r"127\.0\.0\.1"):
        ApiClient("http://example.com:8000", "key")
