"""The event simulation: impressions of planned sessions, the items they show, and the outcome.

Inside a session impressions follow each other after the watch time plus a few seconds; a
session never lasts longer than 2 h. The item of an impression is interest-driven (category
from the user's interests, item by popularity x trend at that hour among items already
uploaded), from a favourite creator, or - with probability ``exploration_share`` - uniform over
uploaded items.

``p = sigmoid(0.8 log-interest + 0.5 quality + favourite creator + night - 3g - web)`` shapes a
Beta watch ratio (``view``; ``complete_view`` at >= 0.95; ``replay`` when it exceeds 1;
``skip`` under 0.1) and the odds of ``like``/``share``/``comment``/``save``/``follow``
(high p) and ``hide``/``report``/``unfollow`` (low p). In-period uploads emit
``content_upload`` events from a pseudo user ``user_<creator_id>``.

Every draw of a batch comes from the batch's own seeded stream, in a fixed order, so the steps
below must keep the order in which they draw.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from components.data.synthetic.arrays import choose_codes, row_categorical, segment_starts
from components.data.synthetic.constants import (
    COMMENTS,
    EVENT_FIELDS,
    FOLLOWING_SHARE,
    MS_PER_H,
    MS_PER_S,
    REPORT_REASONS,
    SESSION_WINDOW_MS,
    SHARE_P,
    SHARE_PLATFORMS,
    T_COMMENT,
    T_COMPLETE,
    T_FOLLOW,
    T_HIDE,
    T_LIKE,
    T_REPLAY,
    T_REPORT,
    T_SAVE,
    T_SHARE,
    T_SKIP,
    T_UNFOLLOW,
    T_UPLOAD,
    T_VIEW,
    Events,
)
from components.data.synthetic.plan import SessionPlan
from components.data.synthetic.world import World

#: One event type's rows: (type code, mask over impressions, timestamps per impression).
_Kind = tuple[int, np.ndarray, np.ndarray]


@dataclass(frozen=True, eq=False)
class _Impressions:
    """The planned impressions of a batch's sessions, one entry per impression."""

    lens: np.ndarray  # impressions per session of the batch
    si: np.ndarray  # session (index into the batch's sessions) of each impression
    unit: np.ndarray  # position of the impression's unit in the batch
    user: np.ndarray
    t0: np.ndarray  # session start
    dev: np.ndarray
    os: np.ndarray
    net: np.ndarray


@dataclass(frozen=True, eq=False)
class Outcome:
    """What the user did with each impression: engagement, watch time and action flags."""

    prob: np.ndarray  # engagement probability
    fav: np.ndarray  # the item is from one of the user's favourite creators
    watch_ms: np.ndarray
    dur_ms: np.ndarray
    ratio: np.ndarray
    complete: np.ndarray
    replay: np.ndarray
    skip: np.ndarray
    like: np.ndarray
    share: np.ndarray
    comment: np.ndarray
    save: np.ndarray
    follow: np.ndarray
    unfollow: np.ndarray
    hide: np.ndarray
    report: np.ndarray


def _choose_items(
    world: World,
    rng: np.random.Generator,
    user: np.ndarray,
    t0: np.ndarray,
) -> np.ndarray:
    """Pick an item per impression: favourite creator, interest x popularity, or exploration."""
    p = world.params
    n = len(user)
    n_cat = p.n_categories
    item = np.full(n, -1, dtype=np.int64)
    r_mode = rng.random(n)
    explore = r_mode < p.exploration_share
    following = ~explore & (
        r_mode < p.exploration_share + (1.0 - p.exploration_share) * FOLLOWING_SHARE
    )

    # from a favourite creator: newer uploads more likely, only those already uploaded
    idx = np.flatnonzero(following)
    fav = world.fav[user[idx], rng.integers(0, world.fav.shape[1], len(idx))]
    lo = world.creator_start[fav]
    offset = np.minimum(t0[idx] - world.key_origin_ms, world.key_span - 1)
    n_up = np.searchsorted(world.creator_key, fav * world.key_span + offset, side="right") - lo
    r = rng.random(len(idx))
    ok = n_up > 0
    pick = lo + n_up - 1 - np.floor(n_up * r**2).astype(np.int64)
    item[idx[ok]] = world.creator_order[pick[ok]]

    # interest-driven: category from the user's interests, item by popularity x trend
    idx = np.flatnonzero(~explore & (item < 0))
    cat = row_categorical(world.interest_flat, n_cat, user[idx], rng.random(len(idx)))
    base = (t0[idx] - p.start_ms) // world.bucket_ms * p.n_items
    lo_pos = base + world.cat_start[cat]
    hi_pos = base + world.cat_start[cat + 1]
    lo_w = world.pop_cum[lo_pos]
    hi_w = world.pop_cum[hi_pos]
    u = lo_w + rng.random(len(idx)) * (hi_w - lo_w)
    ok = hi_w > lo_w
    pos = np.searchsorted(world.pop_cum, u[ok], side="right") - 1
    pos = np.clip(pos, lo_pos[ok], hi_pos[ok] - 1) - base[ok]
    item[idx[ok]] = world.cat_order[pos]

    # exploration (and fallback): uniform over items uploaded by then
    idx = np.flatnonzero(item < 0)
    n_up = np.searchsorted(world.upload_sorted_ms, t0[idx], side="right")
    pick = np.floor(rng.random(len(idx)) * n_up).astype(np.int64)
    item[idx] = world.upload_order[pick]
    return item



def _impressions(plan: SessionPlan, units: np.ndarray) -> _Impressions:
    """Expand the batch's sessions into impressions (uploads are not impressions)."""
    unit_pos = np.arange(len(units))
    is_sess = units < len(plan.user)
    sess, sess_pos = units[is_sess], unit_pos[is_sess]
    lens = plan.length[sess].astype(np.int64)
    si = np.repeat(np.arange(len(sess)), lens)
    return _Impressions(
        lens=lens,
        si=si,
        unit=sess_pos[si],
        user=plan.user[sess][si].astype(np.int64),
        t0=plan.start_ms[sess][si],
        dev=plan.device[sess][si],
        os=plan.os[sess][si],
        net=plan.net[sess][si],
    )


def _engagement(world: World, imp: _Impressions, item: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Engagement probability of each impression, and whether its item is from a favourite."""
    cat = world.item_category[item]
    rel = world.interest[imp.user, cat] * world.params.n_categories
    aff = np.clip(np.log(rel + 0.05), -3.0, 2.5)
    fav = (world.fav[imp.user] == world.item_creator[item][:, None]).any(axis=1)
    hour = (imp.t0 // MS_PER_H) % 24
    night = (hour >= 22) | (hour < 4)
    is3g = imp.net == 3
    logit = (
        -0.6
        + 0.8 * aff
        + 0.5 * world.item_quality[item]
        + 1.0 * fav
        + 0.15 * night
        - 0.3 * is3g
        - 0.1 * (imp.dev == 2)
    )
    return 1.0 / (1.0 + np.exp(-logit)), fav


def _outcomes(
    world: World, rng: np.random.Generator, imp: _Impressions, item: np.ndarray
) -> Outcome:
    """Watch ratio (Beta around an engagement-driven mean; finished videos may loop) and actions."""
    prob, fav = _engagement(world, imp, item)
    n = len(item)
    is3g = imp.net == 3
    dur = world.item_duration_s[item]
    mu = np.clip(0.05 + 0.9 * prob - 0.12 * is3g - 0.07 * np.log(dur / 20.0), 0.03, 0.97)
    base = rng.beta(1.5 * mu, 1.5 * (1.0 - mu))
    complete = base >= 0.95
    replay = complete & (rng.random(n) < np.clip(0.6 * prob * np.sqrt(20.0 / dur), 0.0, 0.9))
    ratio = base + replay * np.minimum(0.2 + rng.exponential(0.6, n), 3.0)
    w = prob * np.minimum(1.0, ratio / 0.5)
    like = rng.random(n) < 0.22 * w
    return Outcome(
        prob=prob,
        fav=fav,
        watch_ms=np.round(ratio * dur * MS_PER_S).astype(np.int64),
        dur_ms=np.round(dur * MS_PER_S).astype(np.int64),
        ratio=ratio,
        complete=complete,
        replay=replay,
        skip=ratio < 0.1,
        like=like,
        share=rng.random(n) < 0.05 * w,
        comment=rng.random(n) < 0.035 * w,
        save=rng.random(n) < 0.06 * w,
        follow=like & ~fav & (rng.random(n) < 0.12 * prob),
        unfollow=rng.random(n) < (0.002 + 0.02 * fav) * (1.0 - prob),
        hide=rng.random(n) < 0.03 * (1.0 - prob) ** 2 * np.where(ratio < 0.3, 1.0, 0.2),
        report=rng.random(n) < 0.004 * (1.0 - prob) ** 2,
    )


def outcomes_of(
    world: World,
    rng: np.random.Generator,
    *,
    user: np.ndarray,
    t0: np.ndarray,
    dev: np.ndarray,
    net: np.ndarray,
    item: np.ndarray,
) -> Outcome:
    """The outcome model on given impressions (user, time, device, network, item): what the user
    simulator (:mod:`components.simulate`) applies to the contents a served feed showed."""
    n = len(item)
    imp = _Impressions(
        lens=np.array([n]), si=np.zeros(n, dtype=np.int64), unit=np.zeros(n, dtype=np.int64),
        user=user, t0=t0, dev=dev, os=dev, net=net,
    )  # fmt: skip
    return _outcomes(world, rng, imp, item)


def _timed_kinds(
    world: World, rng: np.random.Generator, imp: _Impressions, out: Outcome
) -> list[_Kind]:
    """Place each impression on the session timeline and time every event it yields.

    Each impression starts after the previous one's watch time plus a short gap; impressions
    past the session window or the period end are dropped.
    """
    n = len(imp.user)
    watch_ms, dur_ms = out.watch_ms, out.dur_ms
    gap_ms = (
        np.round(MS_PER_S * (0.8 + rng.exponential(2.5, n))).astype(np.int64)
        + 8_000 * out.comment
        + 2_500 * out.share
    )
    step = watch_ms + gap_ms
    excl = np.cumsum(step) - step
    offset = excl - excl[segment_starts(imp.lens)][imp.si]
    t = imp.t0 + offset
    keep = (offset <= SESSION_WINDOW_MS) & (t + step < world.params.end_ms)
    after = t + watch_ms  # end of watching

    def later() -> np.ndarray:  # an action taken after watching, before the next impression
        return after + np.floor(rng.random(n) * gap_ms).astype(np.int64)

    like_ts = t + np.floor((0.3 + 0.7 * rng.random(n)) * watch_ms).astype(np.int64)
    return [
        (T_VIEW, keep, after),
        (T_COMPLETE, keep & out.complete, t + np.minimum(watch_ms, dur_ms)),
        (T_REPLAY, keep & out.replay, t + dur_ms + 100),
        (T_SKIP, keep & out.skip, after),
        (T_LIKE, keep & out.like, like_ts),
        (T_SHARE, keep & out.share, later()),
        (T_COMMENT, keep & out.comment, later()),
        (T_SAVE, keep & out.save, later()),
        (T_FOLLOW, keep & out.follow, later()),
        (T_UNFOLLOW, keep & out.unfollow, later()),
        (T_HIDE, keep & out.hide, later()),
        (T_REPORT, keep & out.report, later()),
    ]


def _aux_codes(rng: np.random.Generator, code: int, k: int) -> np.ndarray:
    """The auxiliary vocabulary code of ``k`` events of one type (comment, platform, reason)."""
    if code == T_SHARE:
        return choose_codes(rng, len(SHARE_PLATFORMS), k, SHARE_P)
    if code == T_COMMENT:
        return rng.integers(0, len(COMMENTS), k)
    if code == T_REPORT:
        return rng.integers(0, len(REPORT_REASONS), k)
    return np.full(k, -1)


def _append(cols: dict[str, list[np.ndarray]], **values: np.ndarray) -> None:
    """Append one block of rows: an array per event field (all of :data:`EVENT_FIELDS`)."""
    if values.keys() != set(EVENT_FIELDS):
        raise ValueError(f"event fields {sorted(values)} != {sorted(EVENT_FIELDS)}")
    for name, value in values.items():
        cols[name].append(value)


def _append_session_events(
    cols: dict[str, list[np.ndarray]],
    imp_cols: list[np.ndarray],
    rng: np.random.Generator,
    world: World,
    imp: _Impressions,
    item: np.ndarray,
    out: Outcome,
    kinds: list[_Kind],
) -> None:
    """Append the events of every type, type by type, with the impression number of each."""
    creator = world.item_creator[item]
    for code, mask, ts in kinds:
        k = int(mask.sum())
        imp_cols.append(np.flatnonzero(mask))
        _append(
            cols,
            unit=imp.unit[mask],
            ts=ts[mask],
            user=imp.user[mask],
            item=item[mask],
            etype=np.full(k, code, dtype=np.int8),
            watch=out.watch_ms[mask] / MS_PER_S if code == T_VIEW else np.full(k, np.nan),
            aux=_aux_codes(rng, code, k),
            creator=creator[mask] if code in (T_FOLLOW, T_UNFOLLOW) else np.full(k, -1),
            device=imp.dev[mask],
            os=imp.os[mask],
            net=imp.net[mask],
        )


def _append_uploads(
    cols: dict[str, list[np.ndarray]],
    imp_cols: list[np.ndarray],
    rng: np.random.Generator,
    world: World,
    plan: SessionPlan,
    units: np.ndarray,
) -> None:
    """Append one ``content_upload`` event per in-period item, from the creator's pseudo user."""
    n_sessions = len(plan.user)
    is_upload = units >= n_sessions
    up = plan.upload_items[units[is_upload] - n_sessions]
    k = len(up)
    up_dev = rng.integers(0, 2, k).astype(np.int8)
    imp_cols.append(np.zeros(k, dtype=np.int64))
    _append(
        cols,
        unit=np.arange(len(units))[is_upload],
        ts=world.item_upload_ms[up],
        user=world.params.n_users + world.item_creator[up],
        item=up,
        etype=np.full(k, T_UPLOAD, dtype=np.int8),
        watch=np.full(k, np.nan),
        aux=np.full(k, -1),
        creator=world.item_creator[up],
        device=up_dev,
        os=up_dev,
        net=np.where(rng.random(k) < 0.85, 0, 2).astype(np.int8),
    )


def simulate_units(
    world: World, plan: SessionPlan, units: np.ndarray, rng: np.random.Generator
) -> Events:
    """Events of a batch of units (sessions and uploads), ordered by unit then impression."""
    imp = _impressions(plan, units)
    item = _choose_items(world, rng, imp.user, imp.t0)
    out = _outcomes(world, rng, imp, item)
    kinds = _timed_kinds(world, rng, imp, out)
    cols: dict[str, list[np.ndarray]] = {f: [] for f in EVENT_FIELDS}
    imp_cols: list[np.ndarray] = []  # impression number, only to order the batch
    _append_session_events(cols, imp_cols, rng, world, imp, item, out, kinds)
    _append_uploads(cols, imp_cols, rng, world, plan, units)

    # unit, then impression, then the type order above (view first): cutting the stream at
    # n_events can drop trailing actions of the last impression, never the view they follow
    ev = {f: np.concatenate(v) for f, v in cols.items()}
    order = np.lexsort((np.concatenate(imp_cols), ev["unit"]))  # lexsort is stable
    return {f: v[order] for f, v in ev.items()}
