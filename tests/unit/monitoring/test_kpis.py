"""KPI maths on hand-built impression logs and event streams (components/monitoring/kpis.py)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from components.monitoring.kpis import compute_kpis, gini, sessions
from components.monitoring.kpis_stage import prom_text, summary

DAY = pd.Timestamp("2026-01-20", tz="UTC")


def _imp(rows: list[tuple[str, str, str, str, float]]) -> pd.DataFrame:
    """(request, user, content, arm, hours after DAY)"""
    return pd.DataFrame(
        [{"request_id": r, "user_id": u, "content_id": c, "arm": a, "timestamp": DAY + pd.Timedelta(hours=h)} for r, u, c, a, h in rows]
    )


def _ev(rows: list[tuple[str, str | None, str, float, float | None]]) -> pd.DataFrame:
    """(user, content, type, hours after DAY, watch seconds)"""
    return pd.DataFrame(
        [{"user_id": u, "content_id": c, "event_type": t, "timestamp": DAY + pd.Timedelta(hours=h), "watch_duration_s": w} for u, c, t, h, w in rows]
    )


def test_gini_known_values() -> None:
    assert gini(np.array([1.0, 1.0, 1.0, 1.0])) == pytest.approx(0.0)
    assert gini(np.array([0.0, 0.0, 0.0, 4.0])) == pytest.approx(0.75)  # (n-1)/n for one owner
    assert gini(np.array([])) == 0.0


def test_sessions_split_after_thirty_minutes() -> None:
    ev = _ev([("a", "c1", "view", 0.0, 5), ("a", "c2", "view", 0.4, 5), ("a", "c3", "view", 1.0, 5), ("b", "c1", "view", 0.1, 5)])
    s = sessions(ev, 30)
    assert sorted(s.groupby("user_id").size().tolist()) == [1, 2]  # a: 0:00-0:24, then 1:00


def test_kpis_per_day_and_arm() -> None:
    creators = {"c1": "k1", "c2": "k1", "c3": "k2", "c4": "k3"}
    imp = _imp([
        ("r1", "a", "c1", "production", 0.0), ("r1", "a", "c2", "production", 0.0),
        ("r2", "b", "c3", "canary", 1.0), ("r2", "b", "c4", "canary", 1.0),
        ("r3", "a", "c3", "production", 24.0),  # a returns the next day, b does not
    ])  # fmt: skip
    ev = _ev([
        ("a", "c1", "view", 0.01, 10.0), ("a", "c1", "like", 0.01, None), ("a", "c2", "view", 0.02, 20.0),
        ("b", "c3", "view", 1.01, 3.0), ("b", "c3", "skip", 1.01, None), ("b", "c4", "view", 1.02, 7.0),
        ("a", "c3", "view", 24.01, 4.0),
    ])  # fmt: skip
    k = compute_kpis(imp, ev, creators=creators, catalogue_size=4, window_s=600).set_index(["day", "arm"])
    d0, d1 = "2026-01-20", "2026-01-21"
    prod, canary, both = k.loc[(d0, "production")], k.loc[(d0, "canary")], k.loc[(d0, "all")]
    assert prod["dau"] == 1 and canary["dau"] == 1 and both["dau"] == 2
    assert prod["d1_retention"] == 1.0 and canary["d1_retention"] == 0.0 and both["d1_retention"] == 0.5
    assert math.isnan(k.loc[(d1, "production"), "d1_retention"])  # day 2 is the data's last
    assert prod["ctr"] == 0.5 and canary["ctr"] == 0.0  # one of a's two impressions liked
    assert canary["negative_rate"] == 0.5 and prod["negative_rate"] == 0.0
    assert prod["time_spent_s"] == 30.0 and canary["time_spent_s"] == 10.0
    assert prod["engagement_rate"] == 0.5  # 1 like / 2 views
    assert prod["sessions_per_user"] == 1.0
    assert prod["session_length_s"] == pytest.approx(36.0)  # 0.01 h -> 0.02 h
    assert prod["coverage"] == 0.5 and both["coverage"] == 1.0
    # production showed creator k1 twice, k2 and k3 never: Gini over the three creators
    assert prod["creator_gini"] == pytest.approx(gini(np.array([2.0, 0.0, 0.0])))
    assert both["creator_gini"] == pytest.approx(gini(np.array([2.0, 1.0, 1.0])))
    assert prod["impressions"] == 2 and prod["requests"] == 1


def test_summary_and_prometheus_text() -> None:
    imp = _imp([("r1", "a", "c1", "production", 0.0)])
    ev = _ev([("a", "c1", "view", 0.01, 10.0)])
    frame = compute_kpis(imp, ev, creators={"c1": "k1"}, catalogue_size=1, window_s=600)
    out = summary(frame)
    assert out["last_day"]["arms"]["production"]["dau"] == 1
    assert out["last_day"]["arms"]["production"]["d1_retention"] is None  # NaN -> null
    text = prom_text(out["last_day"])
    assert 'reco_kpi{kpi="dau",arm="production"} 1' in text and "d1_retention" not in text


def test_no_traffic_gives_an_empty_frame() -> None:
    empty_imp = pd.DataFrame(columns=["request_id", "user_id", "content_id", "arm", "timestamp"])
    empty_ev = pd.DataFrame(columns=["user_id", "content_id", "event_type", "timestamp", "watch_duration_s"])
    assert compute_kpis(empty_imp, empty_ev, creators={}, catalogue_size=0, window_s=600).empty


def test_a_day_without_feeds_takes_the_latest_earlier_arm_never_a_later_one() -> None:
    # u is served by production on day 0, has events only (no feed) on day 1, is in the canary
    # from day 2 (more canary impressions than production ones over the run); v has events on
    # day 0 before any feed and is served by the canary on day 1
    imp = _imp([
        ("r1", "u", "c1", "production", 1.0),
        ("r2", "u", "c1", "canary", 49.0), ("r2", "u", "c2", "canary", 49.0), ("r3", "u", "c3", "canary", 50.0),
        ("r4", "v", "c1", "canary", 25.0),
    ])  # fmt: skip
    ev = _ev([
        ("u", "c1", "view", 1.01, 5.0), ("u", "c1", "view", 24.5, 5.0), ("u", "c1", "view", 49.01, 5.0),
        ("v", "c2", "view", 2.0, 5.0), ("v", "c1", "view", 25.01, 5.0),
    ])  # fmt: skip
    k = compute_kpis(imp, ev, creators={}, catalogue_size=3, window_s=600).set_index(["day", "arm"])["dau"]
    # day 0: u in production, v (no feed yet, none earlier) in fallback; no canary user before the canary served
    assert k.get(("2026-01-20", "production")) == 1 and k.get(("2026-01-20", "fallback")) == 1
    assert ("2026-01-20", "canary") not in k.index
    # day 1: u had no feed: still production (its latest earlier arm), not its usual canary
    assert k.get(("2026-01-21", "production")) == 1 and k.get(("2026-01-21", "canary")) == 1
    assert k.get(("2026-01-22", "canary")) == 1
