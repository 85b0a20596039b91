"""A request's stage clock (:class:`StageClock`): the stage in progress, each stage's
milliseconds (the feed's ``timings_ms``), and the time budget ``serving.budget_ms`` after which
no stage starts (:class:`BudgetSpent`, answered by the fallback)."""

from __future__ import annotations

import time


class BudgetSpent(RuntimeError):
    """The budget was spent before a stage started (the message is the fallback's reason)."""


class StageClock:
    """A request's stage clock: the stage in progress (named in a fallback's reason), each
    stage's milliseconds, and the budget (``serving.budget_ms``) no stage starts after."""

    def __init__(self, budget_ms: float) -> None:
        self.t0 = time.perf_counter()
        self.budget_ms = budget_ms
        self.stage = "start"
        self.timings: dict[str, float] = {}
        self._since = self.t0

    def enter(self, name: str, *, check_budget: bool = True) -> None:
        """Start stage ``name`` (raises :class:`BudgetSpent` when the budget is already spent,
        unless ``check_budget`` is off)."""
        if check_budget:
            spent = (time.perf_counter() - self.t0) * 1000.0
            if spent > self.budget_ms:
                raise BudgetSpent(
                    f"timeout: {spent:.0f} ms > budget {self.budget_ms:.0f} ms before {name}"
                )
        self.stage = name
        self._since = time.perf_counter()

    def done(self, name: str) -> None:
        """Record ``name``'s milliseconds: since its stage started, or since the last record."""
        now = time.perf_counter()
        self.timings[name] = round((now - self._since) * 1000.0, 3)
        self._since = now

    def total(self) -> dict[str, float]:
        """The timings with the request's ``total`` so far."""
        self.timings["total"] = round((time.perf_counter() - self.t0) * 1000.0, 3)
        return self.timings
