"""A ranker that earns its place: on the ranker's validation groups (carved from the training
data by time, never from an evaluation's test part), the ranker's ordering is compared with the
best single retrieval source's, and the served score is the validation-tuned blend

    ``served = (1 - α) · ranker / σ_ranker + α · source / σ_source``

with ``α`` chosen on a grid (``α = 0``: the ranker alone, ``α = 1``: the best source alone). When
the ranker alone does not beat the best source, the training says so with a WARNING and in
``training_metrics["blend"]["ranker_beats_best_source"]``, and the blend (which can be the source
alone) serves instead. The scales ``σ`` are the standard deviations over the validation rows, so
``α`` weighs two comparable orderings; within a request group only the order matters.

Written here because it is a dozen lines of arithmetic on the trainer's own validation arrays;
the NDCG is :mod:`components.evaluation.metrics`' (through the trainer's ``ndcg`` callable).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

#: features the best single source is chosen from: per-user standardised retrieval scores and
#: the content's recent engagement counts (the same as ``base_feature: auto``)
SOURCE_PREFIXES = ("z_", "item_eng_")
#: the blend weights tried on validation
ALPHAS: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)

Ndcg = Callable[[np.ndarray, np.ndarray, np.ndarray, int], "float | None"]


@dataclass(frozen=True)
class BlendSpec:
    """The served score: ``ranker_scale · ranker score + feature_scale · feature`` (missing
    feature values take ``fill``)."""

    feature: str
    alpha: float
    ranker_scale: float
    feature_scale: float
    fill: float

    def apply(self, ranker_score: np.ndarray, M: np.ndarray, feature_cols: Sequence[str]) -> np.ndarray:
        col = M[:, list(feature_cols).index(self.feature)].astype("float64")
        return self.ranker_scale * ranker_score + self.feature_scale * np.where(np.isnan(col), self.fill, col)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _filled(col: np.ndarray) -> tuple[np.ndarray, float]:
    finite = col[np.isfinite(col)]
    fill = float(finite.min()) if len(finite) else 0.0
    return np.where(np.isfinite(col), col, fill), fill


def choose_blend(
    ranker_va: np.ndarray,
    Xva: np.ndarray,
    feature_cols: Sequence[str],
    relevant_va: np.ndarray,
    sizes_va: np.ndarray,
    k: int,
    ndcg: Ndcg,
) -> tuple[BlendSpec | None, dict[str, Any]]:
    """(the blend to serve, or ``None`` when the ranker alone is best; the comparison's figures)."""
    cols = list(feature_cols)
    options = [c for c in cols if c.startswith(SOURCE_PREFIXES)]
    ranker_ndcg = ndcg(ranker_va, relevant_va, sizes_va, k)
    if not options or ranker_ndcg is None:
        return None, {"ranker_ndcg": ranker_ndcg, "best_source": None}
    filled = {c: _filled(Xva[:, cols.index(c)].astype("float64")) for c in options}
    source_ndcg = {c: ndcg(filled[c][0], relevant_va, sizes_va, k) or 0.0 for c in options}
    best = max(options, key=lambda c: (source_ndcg[c], c))
    feat, fill = filled[best]
    s_r = float(np.std(ranker_va)) or 1.0
    s_f = float(np.std(feat)) or 1.0
    tried = {}
    for a in ALPHAS:
        tried[a] = ndcg((1 - a) * ranker_va / s_r + a * feat / s_f, relevant_va, sizes_va, k) or 0.0
    alpha = max(ALPHAS, key=lambda a: (tried[a], -a))  # ties: the smaller α (more ranker)
    beats = ranker_ndcg > source_ndcg[best]
    figures = {
        "ranker_ndcg": round(ranker_ndcg, 6),
        "best_source": best,
        "best_source_ndcg": round(source_ndcg[best], 6),
        "ranker_beats_best_source": bool(beats),
        "alpha": alpha,
        "served_ndcg": round(tried[alpha], 6),
        "alphas": {str(a): round(v, 6) for a, v in tried.items()},
    }
    if not beats:
        logger.warning(
            "the ranker does NOT beat the best single source on validation: NDCG@%d %.4f vs %s %.4f; "
            "serving the blend alpha=%.1f (validation NDCG@%d %.4f)",
            k, ranker_ndcg, best, source_ndcg[best], alpha, k, tried[alpha],
        )
    else:
        logger.info("ranker %.4f vs best source %s %.4f on validation: blend alpha=%.1f", ranker_ndcg, best, source_ndcg[best], alpha)
    if alpha == 0.0:
        return None, figures
    return BlendSpec(best, alpha, (1 - alpha) / s_r, alpha / s_f, fill), figures
