"""The session plan: how many sessions each user has, how long, when they start and on what device.

Session starts follow an hourly intensity (evening peak, weekend lift) and are at least
3 h apart, so a 30-minute inactivity gap always separates them. Sessions and in-period uploads
are visited in one seeded order, with cumulative planned impressions, so the event stream can be
cut at exactly ``n_events`` while thinning sessions uniformly.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from dataclasses import dataclass

import numpy as np

from components.data.synthetic.arrays import choose_codes, seeded_rng, segment_starts
from components.data.synthetic.constants import (
    DEVICE_P,
    DEVICES,
    HOURLY,
    MS_PER_DAY,
    MS_PER_H,
    NETWORK_P,
    NETWORKS,
    PLAN_MARGIN,
    SESSION_MAX,
    SESSION_MEAN,
    SESSION_SPACING_MS,
    WEEKEND_LIFT,
)
from components.data.synthetic.params import GenParams
from components.data.synthetic.world import World

logger = logging.getLogger(__name__)


def _intensity_grid(p: GenParams) -> tuple[np.ndarray, np.ndarray, float]:
    """Hour boundaries (ms offsets), the cumulative "activity time" at them, and the peak rate.

    Activity time runs at the hourly intensity, normalised to average 1 over the period, so
    uniform points in activity time are session starts with the intended time-of-day profile.
    """
    hours = np.arange(p.days * 24)
    weekday0 = dt.date.fromisoformat(p.start).weekday()
    weekend = ((weekday0 + hours // 24) % 7) >= 5
    lam = HOURLY[hours % 24] * np.where(weekend, WEEKEND_LIFT, 1.0)
    lam = lam / lam.mean()
    t_grid = np.arange(len(hours) + 1, dtype=np.float64) * MS_PER_H
    tau_grid = np.concatenate([[0.0], np.cumsum(lam) * MS_PER_H])
    return t_grid, tau_grid, float(lam.max())


@dataclass(frozen=True, eq=False)
class SessionPlan:
    """Planned sessions plus in-period uploads, in the seeded order they are simulated."""

    user: np.ndarray
    start_ms: np.ndarray
    length: np.ndarray
    device: np.ndarray
    os: np.ndarray
    net: np.ndarray
    upload_items: np.ndarray
    order: np.ndarray  # permutation of units: sessions are 0..S-1, uploads S..S+U-1
    cum_weight: np.ndarray  # cumulative planned impressions along ``order`` (an upload counts 1)


def _water_fill(demand: np.ndarray, cap: float) -> np.ndarray:
    """Cap per-user demand and hand the excess to the others in proportion."""
    out = demand.astype(np.float64).copy()
    for _ in range(50):
        over = out > cap
        excess = float((out[over] - cap).sum())
        if excess <= 1e-9:
            break
        out[over] = cap
        free = ~over & (out < cap)
        if not free.any():
            break
        out[free] += excess * out[free] / out[free].sum()
    return np.minimum(out, cap)


def _session_counts(
    rng: np.random.Generator, activity: np.ndarray, need: int, cap: float, k_max: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sessions per user, each session's user and length, together at least ``need`` impressions.

    Demand follows activity (water-filled under the per-user ``cap``) and is scaled up until the
    drawn lengths cover ``need``.
    """
    share = activity / activity.sum()
    scale = 1.0
    for _ in range(20):
        demand = _water_fill(need * scale * share, cap)
        k = np.clip(np.ceil(demand / SESSION_MEAN), 1, k_max).astype(np.int64)
        mean_extra = np.maximum(demand / k - 1.0, 0.0)
        sess_user = np.repeat(np.arange(len(activity)), k)
        extra = mean_extra[sess_user]
        length = 1 + rng.negative_binomial(2, 2.0 / (2.0 + extra))
        length = np.minimum(length, SESSION_MAX)
        total = int(length.sum())
        if total >= need:
            return k, sess_user, length
        scale *= 1.05 * need / total
    raise RuntimeError("could not plan enough impressions")


def _session_starts(
    rng: np.random.Generator, p: GenParams, k: np.ndarray, sess_user: np.ndarray, spacing: float
) -> np.ndarray:
    """Start times: sorted uniforms in activity time with a minimum spacing, mapped to real time."""
    t_grid, tau_grid, _ = _intensity_grid(p)
    n_sess = len(sess_user)
    first = segment_starts(k)
    span = p.days * MS_PER_DAY - (k - 1) * spacing
    v = rng.random(n_sess) * span[sess_user]
    v = v[np.lexsort((v, sess_user))]
    rank = np.arange(n_sess) - first[sess_user]
    tau = v + rank * spacing
    return p.start_ms + np.interp(tau, tau_grid, t_grid).astype(np.int64)


def plan_sessions(world: World) -> SessionPlan:
    """Sessions per user (by activity), their lengths, start times and context."""
    p = world.params
    rng = seeded_rng(p.seed, 1)
    n_users = p.n_users
    period = p.days * MS_PER_DAY
    _, _, lam_max = _intensity_grid(p)
    spacing = SESSION_SPACING_MS * lam_max  # in activity time: >= SESSION_SPACING_MS real time
    k_max = max(1, int(period // spacing))
    cap = float(k_max * SESSION_MAX)
    need = math.ceil(p.n_events * PLAN_MARGIN) + 100
    if need > 0.9 * cap * n_users:
        raise ValueError(
            f"n_events={p.n_events} is more than {n_users} users can watch in {p.days} days "
            f"(at most ~{int(0.9 * cap * n_users / PLAN_MARGIN)}); raise n_users or days"
        )
    k, sess_user, length = _session_counts(rng, world.activity, need, cap, k_max)
    start = _session_starts(rng, p, k, sess_user, spacing)
    n_sess = len(sess_user)

    # per-session context: usually the user's own device / network
    dev = np.where(
        rng.random(n_sess) < 0.9,
        world.user_device[sess_user],
        choose_codes(rng, len(DEVICES), n_sess, DEVICE_P),
    ).astype(np.int8)
    os_code = np.where(dev == 2, 2 + world.user_desktop_os[sess_user], dev).astype(np.int8)
    net = np.where(
        rng.random(n_sess) < 0.75,
        world.user_network[sess_user],
        choose_codes(rng, len(NETWORKS), n_sess, NETWORK_P),
    ).astype(np.int8)

    uploads = np.flatnonzero(world.item_upload_ms >= p.start_ms)
    order = rng.permutation(n_sess + len(uploads))
    weight = np.concatenate([length, np.ones(len(uploads), dtype=np.int64)])
    logger.debug(
        "plan: %d sessions, %d impressions, %d uploads", n_sess, int(length.sum()), len(uploads)
    )
    return SessionPlan(
        user=sess_user.astype(np.int32),
        start_ms=start,
        length=length.astype(np.int32),
        device=dev,
        os=os_code,
        net=net,
        upload_items=uploads,
        order=order,
        cum_weight=np.cumsum(weight[order]),
    )
