"""The global time cut: one point in time that splits a log into "before" (train) and the rest.

Offline evaluation (``evaluation.splits.global_time``) and the candidate recall hold-out
(``retrieval.holdout.hold_out``) both split at the ``cut_quantile`` of interaction times;
both call :func:`quantile_cut` and :func:`before`, so the rule (strictly before the cut is
train) is written once. It lives in ``core`` because retrieval sits below evaluation.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd

Interpolation = Literal["lower", "linear"]


def quantile_cut(times: pd.Series, quantile: float, *, interpolation: Interpolation = "lower") -> pd.Timestamp:
    """The ``quantile`` of ``times`` as the cut.

    ``"lower"`` takes an observed time (the evaluation protocol, over distinct interaction units);
    ``"linear"`` interpolates between the two neighbouring times (the candidate hold-out, over
    raw interactions). Raises on an empty series or a quantile outside (0, 1).
    """
    if not 0.0 < quantile < 1.0:
        raise ValueError(f"cut quantile must be in (0, 1), got {quantile}")
    if times.empty:
        raise ValueError("cannot cut an empty series of times")
    cut: Any = times.quantile(quantile, interpolation=interpolation)  # a Timestamp for datetimes
    return pd.Timestamp(cut)


def before(times: pd.Series, cut: pd.Timestamp) -> np.ndarray:
    """Boolean mask: rows strictly before ``cut`` (the train side of a global time split)."""
    return (times < cut).to_numpy(dtype=bool)
