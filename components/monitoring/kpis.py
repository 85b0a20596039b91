"""The specification's objectives measured on served traffic, per UTC day and per arm.

Inputs: the impression log (what was shown, to whom, by which arm; ``data/logs/impressions``)
and the event stream (what users did; ``data/stream/events``). A user's arm on a day is the
arm that served most of their non-fallback impressions that day (else the arm of their latest
earlier served day, else ``fallback``); every KPI is also given over all arms (``all``).

Per day and arm:

* ``dau``: users with an impression or a user event that day;
* ``d1_retention`` / ``d7_retention``: share of the day's users active 1 / 7 days later (null
  when that day is past the data);
* ``sessions_per_user``: sessions (a new one after ``session_gap_minutes`` of inactivity, the
  specification's 30 min) started that day, per active user; ``session_length_s``: their mean
  length (first to last event);
* ``time_spent_s``: watch time (``view`` durations) per active user;
* ``ctr``: share of impressions followed by any positive engagement with the content within the
  label window; ``negative_rate``: share followed by a skip / hide / report;
* ``engagement_rate``: engagements (like, comment, share, save, follow) per view;
* ``coverage``: distinct contents shown / catalogue size; ``creator_gini``: Gini coefficient of
  impressions over every creator of the catalogue (0: equal exposure, 1: one creator has all);
* ``impressions``, ``requests``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from components.core.schema import ENGAGEMENT_TYPES, USER_EVENT_TYPES
from components.experiments.outcomes import labelled_impressions

ALL = "all"
KPI_NAMES: tuple[str, ...] = (
    "dau", "d1_retention", "d7_retention", "sessions_per_user", "session_length_s", "time_spent_s",
    "ctr", "engagement_rate", "negative_rate", "coverage", "creator_gini", "impressions", "requests",
)  # fmt: skip


def gini(values: np.ndarray) -> float:
    """Gini coefficient of non-negative values (0 when all are equal or there are none)."""
    x = np.sort(np.asarray(values, dtype=np.float64))
    n, total = len(x), float(x.sum())
    if n == 0 or total <= 0:
        return 0.0
    return float(2.0 * np.sum(np.arange(1, n + 1) * x) / (n * total) - (n + 1) / n)


def sessions(events: pd.DataFrame, gap_minutes: float) -> pd.DataFrame:
    """One row per session (user, start, end) from the users' event times."""
    if events.empty:
        return pd.DataFrame({"user_id": [], "start": pd.to_datetime([], utc=True), "end": pd.to_datetime([], utc=True)})
    ev = events[["user_id", "timestamp"]].sort_values(["user_id", "timestamp"], kind="stable")
    gap = ev["timestamp"].diff() > pd.Timedelta(minutes=gap_minutes)
    new = gap | (ev["user_id"] != ev["user_id"].shift())
    sid = new.cumsum()
    return ev.groupby(sid.to_numpy()).agg(user_id=("user_id", "first"), start=("timestamp", "min"), end=("timestamp", "max")).reset_index(drop=True)


def user_arms(impressions: pd.DataFrame) -> pd.DataFrame:
    """``user_id, day, arm``: the arm that served most of the user's non-fallback impressions
    that day."""
    imp = impressions.assign(day=impressions["timestamp"].dt.floor("D"))
    real = imp[imp["arm"] != "fallback"]
    daily = real.groupby(["user_id", "day"])["arm"].agg(lambda s: s.value_counts().index[0]).rename("arm")
    return daily.reset_index()


def _activity(impressions: pd.DataFrame, events: pd.DataFrame) -> pd.DataFrame:
    """Distinct (user, day) pairs with an impression or a user event, with the day's arm: the
    day's own (:func:`user_arms`), else the arm of the user's latest earlier served day (a
    session that ran past midnight, a day of events without a feed), else ``fallback``. Never a
    later day's: a user put in a canary on day 5 was not in it on day 2."""
    act = pd.concat([impressions[["user_id", "timestamp"]], events[["user_id", "timestamp"]]], ignore_index=True)
    act = act.assign(day=act["timestamp"].dt.floor("D"))[["user_id", "day"]].drop_duplicates()
    daily = user_arms(impressions)
    if daily.empty:
        return act.assign(arm="fallback").reset_index(drop=True)
    act = pd.merge_asof(
        act.sort_values("day", kind="stable"), daily.sort_values("day", kind="stable"),
        on="day", by="user_id", direction="backward",
    )  # fmt: skip
    act["arm"] = act["arm"].fillna("fallback")
    return act.reset_index(drop=True)


def _retention(act: pd.DataFrame, lag_days: int, last_day: pd.Timestamp) -> pd.Series:
    """Per (day, arm): share of the day's users active ``lag_days`` later (NaN past the data)."""
    later = set(zip(act["user_id"], act["day"], strict=True))
    target = act["day"] + pd.Timedelta(days=lag_days)
    back = np.array([(u, d) in later for u, d in zip(act["user_id"], target, strict=True)], dtype=float)
    out = act.assign(back=back).groupby(["day", "arm"])["back"].mean()
    days = pd.DatetimeIndex(out.index.get_level_values("day"))
    past = days + pd.Timedelta(days=lag_days) > last_day
    out[past] = np.nan
    return out


def compute_kpis(
    impressions: pd.DataFrame,
    events: pd.DataFrame,
    *,
    creators: Mapping[str, str] | pd.Series,
    catalogue_size: int,
    window_s: float,
    gap_minutes: float = 30.0,
) -> pd.DataFrame:
    """One row per (day, arm) with every KPI of the module doc (plus ``all`` over arms)."""
    imp = impressions.assign(
        user_id=impressions["user_id"].astype(str), timestamp=pd.to_datetime(impressions["timestamp"], utc=True)
    )
    ev = events[events["event_type"].isin(USER_EVENT_TYPES)].assign(
        user_id=lambda f: f["user_id"].astype(str), timestamp=lambda f: pd.to_datetime(f["timestamp"], utc=True)
    )
    if imp.empty and ev.empty:
        return pd.DataFrame(columns=["day", "arm", *KPI_NAMES])
    act = _activity(imp, ev)
    arm_of = act.set_index(["user_id", "day"])["arm"]
    both = pd.concat([act, act.assign(arm=ALL)], ignore_index=True)
    last_day = act["day"].max()
    out = both.groupby(["day", "arm"]).size().rename("dau").to_frame()
    out["d1_retention"] = _retention(both, 1, last_day)
    out["d7_retention"] = _retention(both, 7, last_day)

    def with_arm(frame: pd.DataFrame, when: str) -> pd.DataFrame:
        day = frame[when].dt.floor("D")
        arm = pd.Series(list(zip(frame["user_id"], day, strict=True)), index=frame.index).map(arm_of)
        f = frame.assign(day=day, arm=arm.fillna("fallback").to_numpy())
        return pd.concat([f, f.assign(arm=ALL)], ignore_index=True)

    s = with_arm(sessions(ev, gap_minutes), "start")
    s["length"] = (s["end"] - s["start"]).dt.total_seconds()
    g = s.groupby(["day", "arm"])
    out["sessions_per_user"] = g.size() / out["dau"]
    out["session_length_s"] = g["length"].mean()
    e = with_arm(ev, "timestamp")
    views = e[e["event_type"] == "view"].groupby(["day", "arm"])
    out["time_spent_s"] = views["watch_duration_s"].sum() / out["dau"]
    engaged = e[e["event_type"].isin(ENGAGEMENT_TYPES)].groupby(["day", "arm"]).size()
    out["engagement_rate"] = engaged.reindex(out.index, fill_value=0) / views.size().reindex(out.index)
    _exposure(out, imp, ev, creators, catalogue_size, window_s)
    out = out.reset_index()
    out["day"] = out["day"].dt.strftime("%Y-%m-%d")
    return out[["day", "arm", *KPI_NAMES]].sort_values(["day", "arm"], kind="stable").reset_index(drop=True)


def _exposure(
    out: pd.DataFrame,
    imp: pd.DataFrame,
    ev: pd.DataFrame,
    creators: Mapping[str, str] | pd.Series,
    catalogue_size: int,
    window_s: float,
) -> None:
    """CTR, negative rate, coverage and creator Gini per (day, arm), into ``out`` (in place)."""
    cols = ["ctr", "negative_rate", "coverage", "creator_gini", "impressions", "requests"]
    for c in cols:
        out[c] = np.nan
    if imp.empty:
        out["impressions"] = 0
        out["requests"] = 0
        return
    lab = labelled_impressions(imp, ev, window_s)
    lab = lab.assign(day=lab["timestamp"].dt.floor("D"))
    lab = pd.concat([lab, lab.assign(arm=ALL)], ignore_index=True)
    creator_map = pd.Series(creators, dtype=object) if not isinstance(creators, pd.Series) else creators
    all_creators = pd.Index(creator_map.dropna().unique())
    for (day, arm), g in lab.groupby(["day", "arm"]):
        if (day, arm) not in out.index:
            continue
        shown = g["content_id"].map(creator_map)
        counts = shown.value_counts().reindex(all_creators.union(pd.Index(shown.dropna().unique())), fill_value=0)
        out.loc[(day, arm), cols] = [
            float((g["label_engaged"] > 0).mean()),
            float((g["label_negative"] > 0).mean()),
            g["content_id"].nunique() / max(int(catalogue_size), 1),
            gini(counts.to_numpy()),
            len(g),
            g["request_id"].nunique(),
        ]
    out["impressions"] = out["impressions"].fillna(0)
    out["requests"] = out["requests"].fillna(0)
