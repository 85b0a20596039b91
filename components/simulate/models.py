"""The simulated users' three models: instant feedback, leave and return (see the package doc).

:class:`Truth` is the synthetic world's latent truth, grown by the contents uploaded during a
run; :func:`feedback` applies the generator's outcome model
(:func:`components.data.synthetic.simulate.outcomes_of`) to the contents a feed showed;
:func:`leave_probability` and :func:`return_gap_ms` turn satisfaction into the end of a
session and the time to the next one.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

from components.core.config import Simulate
from components.data.synthetic.constants import MS_PER_H, MS_PER_S
from components.data.synthetic.simulate import Outcome, outcomes_of
from components.data.synthetic.world import World


@dataclass(eq=False)
class Truth:
    """The world's latent arrays, by item index; uploads of the run are appended."""

    world: World
    ids: list[str]
    index: dict[str, int]
    quality: np.ndarray
    category: np.ndarray
    creator: np.ndarray
    duration_s: np.ndarray
    creator_category: np.ndarray  # each creator's most frequent category
    _view: World | None = field(default=None, repr=False)

    @classmethod
    def of(cls, world: World) -> Truth:
        ids = [str(x) for x in world.item_ids.to_pylist()]
        n_cat, n_creators = world.params.n_categories, world.params.n_creators
        counts = np.zeros((n_creators, n_cat), dtype=np.int64)
        np.add.at(counts, (world.item_creator, world.item_category), 1)
        return cls(
            world=world,
            ids=ids,
            index={c: i for i, c in enumerate(ids)},
            quality=world.item_quality.copy(),
            category=world.item_category.copy(),
            creator=world.item_creator.copy(),
            duration_s=world.item_duration_s.copy(),
            creator_category=counts.argmax(axis=1),
        )

    def add(self, content_id: str, creator: int, category: int, quality: float, duration_s: float) -> int:
        """Append an uploaded content's latent truth; returns its item index."""
        i = len(self.ids)
        self.ids.append(content_id)
        self.index[content_id] = i
        self.quality = np.append(self.quality, quality)
        self.category = np.append(self.category, category)
        self.creator = np.append(self.creator, creator)
        self.duration_s = np.append(self.duration_s, duration_s)
        self._view = None
        return i

    def view(self) -> World:
        """The world with the grown item arrays (what the outcome model reads)."""
        if self._view is None:
            self._view = dataclasses.replace(
                self.world,
                item_quality=self.quality,
                item_category=self.category,
                item_creator=self.creator,
                item_duration_s=self.duration_s,
            )
        return self._view

    def items_of(self, content_ids: list[str]) -> tuple[np.ndarray, list[str]]:
        """Item indices of the known contents among ``content_ids`` (and those ids, in order)."""
        known = [c for c in content_ids if c in self.index]
        return np.array([self.index[c] for c in known], dtype=np.int64), known


def feedback(
    truth: Truth, user: int, items: np.ndarray, t_ms: int, rng: np.random.Generator
) -> Outcome:
    """What ``user`` does with each of ``items`` shown at ``t_ms``: the generator's outcome model
    (engagement probability from interest, quality, favourite creator, hour and network)."""
    w = truth.world
    n = len(items)
    return outcomes_of(
        truth.view(),
        rng,
        user=np.full(n, user, dtype=np.int64),
        t0=np.full(n, t_ms, dtype=np.int64),
        dev=np.full(n, w.user_device[user]),
        net=np.full(n, w.user_network[user]),
        item=items,
    )


def satisfaction(out: Outcome) -> float:
    """A page's satisfaction: the mean latent engagement probability of what it showed."""
    return float(np.mean(out.prob)) if len(out.prob) else 0.0


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def leave_probability(cfg: Simulate, sat: float) -> float:
    """P(the session ends after a page): ``leave_base`` at ``satisfaction_ref``, lower above it."""
    base = math.log(cfg.leave_base / (1.0 - cfg.leave_base))
    return _sigmoid(base - cfg.leave_satisfaction * (sat - cfg.satisfaction_ref))


def mood_after(cfg: Simulate, mood: float, session_sat: float) -> float:
    """The user's mood after a session: exponential average of session satisfaction."""
    w = cfg.satisfaction_memory
    return (1.0 - w) * mood + w * session_sat


def mean_gap_ms(cfg: Simulate, mood: float, activity: float) -> float:
    """Mean time to the next session: ``return_gap_hours`` at the reference satisfaction,
    shorter for a happier (and a more active) user."""
    hours = cfg.return_gap_hours * math.exp(-cfg.return_satisfaction * (mood - cfg.satisfaction_ref))
    return hours * MS_PER_H / max(math.sqrt(activity), 0.2)


def return_gap_ms(cfg: Simulate, mood: float, activity: float, rng: np.random.Generator) -> int:
    """Drawn time to the next session (exponential around :func:`mean_gap_ms`, >= 31 min so
    that sessions by the 30-minute rule stay apart)."""
    return int(31 * 60 * MS_PER_S + rng.exponential(mean_gap_ms(cfg, mood, activity)))
