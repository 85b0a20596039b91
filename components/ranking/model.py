"""The trained multi-head ranker as serving uses it: load-free scoring, head weights, the
native-code (lleaves) fast path and the manifest that makes its content-hash version.

Heads
    One booster per head, each trained on the same features:

    * ``engaged`` — the main head: LambdaRank on the graded ``relevance`` (0–3) with one query
      group per request (``objective: lambdarank``), or binary log-loss on ``label_engaged``
      (``objective: binary``);
    * ``like``, ``share``, ``complete_view`` — binary log-loss on ``label_<head>``;
    * ``negative`` (skip / hide / report) — binary log-loss on ``label_negative`` over the rows the
      user reacted to at all: the probability of a rejection once seen
      (:func:`components.ranking.labels.head_labels`);
    * ``watch_ratio`` — squared-error regression on the rows where the watch ratio is known.

Final score
    ``score = Σ_h weight_h · (margin_h − mean_h) / std_h``: each head's raw margin (log-odds for
    binary heads, the LambdaRank score, the predicted watch ratio) is z-scored with the mean and
    standard deviation of that head's margin over the *training-split* rows, so a weight means
    "this many standard deviations of the head" whatever the head's scale. Margins rather than
    probabilities, because rare-event heads (share, negative) have probabilities squeezed near 0
    where a z-score of probabilities would be dominated by a few outliers. The negative head
    carries a negative weight, so a higher probability of skip / hide / report lowers the score.

Version
    A short SHA-256 over the manifest (without the version) and the model bytes, so identical
    training gives an identical version. Training is :mod:`components.ranking.train`'s, the
    artefact folder :mod:`components.ranking.artefact`'s; this module imports neither.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from components.ranking.backends import scoring_backend
from components.ranking.blend import BlendSpec
from components.ranking.compiled import compile_head
from components.ranking.params import HEADS, HeadKind, HeadOutput, RankerParams

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1


def sigmoid(x: np.ndarray) -> np.ndarray:
    """The logistic function of margins (a probability), stable for large ``|x|``."""
    return np.asarray(0.5 * (1.0 + np.tanh(0.5 * x)))


@dataclass(frozen=True)
class HeadSpec:
    """One trained head: how it was trained, its weight and its standardisation statistics."""

    name: str
    kind: HeadKind
    weight: float
    mean: float  # of the raw margin over the training-split rows
    std: float
    best_iteration: int
    files: tuple[str, ...]
    base_feature: str = ""  # the margin is the trees' output + base_weight * this feature
    base_weight: float = 0.0
    base_fill: float = 0.0  # the feature's value where it is missing

    def offset(self, M: np.ndarray, feature_cols: Sequence[str]) -> np.ndarray | None:
        """The base margin of the rows of ``M`` (None without a base feature)."""
        if not self.base_feature:
            return None
        col = M[:, list(feature_cols).index(self.base_feature)].astype("float64")
        return self.base_weight * np.where(np.isnan(col), self.base_fill, col)


def weighted_sum(heads: Mapping[str, HeadSpec], margins: Mapping[str, np.ndarray]) -> np.ndarray:
    """``Σ weight_h · (margin_h − mean_h) / std_h`` over the heads."""
    n = len(next(iter(margins.values())))
    score = np.zeros(n, dtype="float64")
    for h, m in margins.items():
        spec = heads[h]
        score += spec.weight * (m - spec.mean) / spec.std
    return score


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False).encode("utf-8")


def _content_version(
    manifest_without_version: Mapping[str, Any], files: Mapping[str, bytes]
) -> str:
    h = hashlib.sha256(_canonical(manifest_without_version))
    for name in sorted(files):
        h.update(b"\0" + name.encode("utf-8") + b"\0" + str(len(files[name])).encode() + b"\0")
        h.update(files[name])
    return h.hexdigest()[:16]


class RankerModel:
    """A trained multi-head ranker: scores candidate rows with the weighted, standardised heads.

    ``predict`` is the serving path: one float32 conversion, then each head's native fast
    predictor (LightGBM ``Booster.predict`` with ``num_threads``, XGBoost ``inplace_predict``)
    with ``predict_threads`` threads (1 by default: the serving process runs many requests).
    """

    def __init__(
        self,
        *,
        backend: str,
        objective: str,
        heads: Mapping[str, HeadSpec],
        files: Mapping[str, bytes],
        feature_cols: Sequence[str],
        feature_service: str,
        created_from: str,
        training_metrics: Mapping[str, Any],
        params: RankerParams,
        library_version: str,
        predict_threads: int = 1,
        blend: BlendSpec | None = None,
    ) -> None:
        if not heads:
            raise ValueError("a ranker needs at least one head")
        self.backend = backend
        self.objective = objective
        # canonical head order: the weighted sum is then summed in the same order after a reload
        self.heads: dict[str, HeadSpec] = {h: heads[h] for h in sorted(heads, key=HEADS.index)}
        self.feature_cols: list[str] = list(feature_cols)
        self.feature_service = feature_service
        self.created_from = created_from
        self.training_metrics: dict[str, Any] = dict(training_metrics)
        self.params = params
        self.library_version = library_version
        #: the validation-tuned blend with the best single source (None: the ranker alone serves)
        self.blend = blend
        self._files: dict[str, bytes] = {n: files[n] for h in self.heads.values() for n in h.files}
        self._impl = scoring_backend(backend)
        if self._impl.library_version != library_version:
            logger.warning(
                "artefact made with %s %s, running %s",
                backend,
                library_version,
                self._impl.library_version,
            )
        self._predict_threads = predict_threads
        self.timings: dict[str, float] = {}  # wall times of training (not part of the artefact)
        self.boosters: dict[str, Any] = {
            name: self._impl.build(name, self._files, predict_threads) for name in self.heads
        }
        self._compiled: dict[str, Any] = {}  # head -> native predictor (see compile)
        self.version = _content_version(self._manifest_body(), self._files)

    # ---- scoring

    @property
    def predict_threads(self) -> int:
        return self._predict_threads

    @predict_threads.setter
    def predict_threads(self, threads: int) -> None:
        if threads < 1:
            raise ValueError("predict_threads must be >= 1")
        self._predict_threads = threads
        for booster in self.boosters.values():
            self._impl.set_threads(booster, threads)

    def _matrix(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        if isinstance(X, pd.DataFrame):
            missing = [c for c in self.feature_cols if c not in X.columns]
            if missing:
                raise KeyError(
                    f"missing feature columns: {missing[:10]}{' …' if len(missing) > 10 else ''}"
                )
            return np.ascontiguousarray(
                X[self.feature_cols].to_numpy(dtype=np.float32, na_value=np.nan)
            )
        arr = np.asarray(X)
        if arr.ndim != 2 or arr.shape[1] != len(self.feature_cols):
            raise ValueError(
                f"expected a 2-D array with {len(self.feature_cols)} columns, got shape {arr.shape}"
            )
        return np.ascontiguousarray(arr, dtype=np.float32)

    def compile(self, cache_dir: Path, probe_rows: int = 512, tolerance: float = 1e-9) -> dict[str, str]:
        """Serve the LightGBM heads from native code (lleaves: each tree compiled with LLVM).

        ``Booster.predict`` spends most of its ~3 ms for 500 rows in per-call overhead; the
        compiled forest scores them in ~0.2-0.5 ms. Compiled heads are cached as shared objects
        under ``cache_dir/<version>/<head>.so``, published atomically with a SHA-256 sidecar and
        checked against it before use (:mod:`components.ranking.compiled`: a truncated or
        tampered object is refused and compiled again), and each one serves only after its raw margins equal the
        booster's within ``tolerance`` on probe rows (values across magnitudes, negatives and
        NaN); a head that differs or fails to compile keeps the booster. Returns, per head,
        ``"compiled"`` or why not. XGBoost models already score through ``inplace_predict``."""
        if self.backend != "lightgbm":
            return dict.fromkeys(self.heads, f"not needed for {self.backend}")
        folder = Path(cache_dir) / self.version
        folder.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(0)
        n = len(self.feature_cols)
        probe = rng.standard_normal((probe_rows, n)) * np.exp(rng.uniform(-3.0, 9.0, (probe_rows, n)))
        probe[rng.random((probe_rows, n)) < 0.1] = np.nan
        probe[: min(probe_rows, 8)] = 0.0
        probe = probe.astype(np.float32)
        status: dict[str, str] = {}
        compiled: dict[str, Any] = {}
        for name, booster in self.boosters.items():
            try:
                fast = compile_head(folder, name, self._files[f"{name}.txt"])
                want = self._impl.margin(booster, probe, 1)
                got = np.asarray(fast.predict(probe.astype(np.float64), n_jobs=1), dtype=np.float64)
                worst = float(np.max(np.abs(got - want))) if len(want) else 0.0
                if not worst <= tolerance:
                    status[name] = f"booster: compiled margins differ by {worst:.3g}"
                    continue
                compiled[name] = fast
                status[name] = "compiled"
            except Exception as exc:  # no compiler support here: the booster serves
                status[name] = f"booster: {type(exc).__name__}: {exc}"
        self._compiled = compiled
        if any(v != "compiled" for v in status.values()):
            logger.warning("model %s: heads kept on the booster: %s", self.version, status)
        return status

    def _margins(self, M: np.ndarray) -> dict[str, np.ndarray]:
        out = {}
        compiled = getattr(self, "_compiled", {})
        m64 = np.ascontiguousarray(M, dtype=np.float64) if compiled else M
        for name, b in self.boosters.items():
            fast = compiled.get(name)
            if fast is not None:
                m = np.asarray(fast.predict(m64, n_jobs=1), dtype=np.float64)
            else:
                m = self._impl.margin(b, M, self._predict_threads)
            base = self.heads[name].offset(M, self.feature_cols)
            out[name] = m if base is None else m + base
        return out

    def predict_heads(
        self, X: pd.DataFrame | np.ndarray, output: HeadOutput = "natural"
    ) -> dict[str, np.ndarray]:
        """Each head's score: ``natural`` (probability / watch ratio / LambdaRank score), the raw
        ``margin``, or the ``standardised`` margin that :meth:`predict` weights."""
        margins = self._margins(self._matrix(X))
        if output == "margin":
            return margins
        if output == "standardised":
            return {h: (m - self.heads[h].mean) / self.heads[h].std for h, m in margins.items()}
        if output == "natural":
            return {
                h: sigmoid(m) if self.heads[h].kind == "binary" else m for h, m in margins.items()
            }
        raise ValueError(f"unknown output {output!r}")

    def predict(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Final score per row (higher = rank first): ``Σ weight_h · (margin_h − mean_h) / std_h``,
        blended with the best single source when validation chose a blend
        (:mod:`components.ranking.blend`)."""
        M = self._matrix(X)
        score = self._combine(self._margins(M))
        return score if self.blend is None else self.blend.apply(score, M, self.feature_cols)

    def predict_ranker_alone(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """The heads' weighted sum without the blend (what the report calls ``ranker_alone``)."""
        return self._combine(self._margins(self._matrix(X)))

    def _combine(self, margins: Mapping[str, np.ndarray]) -> np.ndarray:
        return weighted_sum(self.heads, margins)

    def with_weights(self, weights: Mapping[str, float]) -> RankerModel:
        """The same boosters with other head weights (a new version); for tuning without retraining."""
        unknown = sorted(set(weights) - set(self.heads))
        if unknown:
            raise ValueError(f"no trained head(s) {unknown}; trained: {sorted(self.heads)}")
        heads = {
            h: replace(s, weight=float(weights.get(h, s.weight))) for h, s in self.heads.items()
        }
        params = self.params.replace(
            heads={**self.params.heads, **{h: float(w) for h, w in weights.items()}}
        )
        return RankerModel(
            backend=self.backend,
            objective=self.objective,
            heads=heads,
            files=self._files,
            feature_cols=self.feature_cols,
            feature_service=self.feature_service,
            created_from=self.created_from,
            training_metrics=self.training_metrics,
            params=params,
            library_version=self.library_version,
            predict_threads=self._predict_threads,
            blend=self.blend,
        )

    # ---- artefact

    def _manifest_body(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "kind": "ranker",
            "backend": self.backend,
            "library_version": self.library_version,
            "objective": self.objective,
            "heads": {
                h: {
                    "kind": s.kind,
                    "weight": s.weight,
                    "mean": s.mean,
                    "std": s.std,
                    "best_iteration": s.best_iteration,
                    "files": list(s.files),
                    **(
                        {"base_feature": s.base_feature, "base_weight": s.base_weight, "base_fill": s.base_fill}
                        if s.base_feature
                        else {}
                    ),
                }
                for h, s in self.heads.items()
            },
            "score": "sum_h weight_h * (margin_h - mean_h) / std_h; mean/std over training-split rows",
            "feature_cols": self.feature_cols,
            "feature_service": self.feature_service,
            "created_from": self.created_from,
            "training_metrics": self.training_metrics,
            "params": self.params.model_dump(),
            **({"blend": self.blend.to_dict()} if self.blend is not None else {}),
        }

    def manifest(self) -> dict[str, Any]:
        """The artefact's manifest, as :func:`save` writes it."""
        return {"version": self.version, **self._manifest_body()}

    def __repr__(self) -> str:
        return (
            f"RankerModel(version={self.version!r}, backend={self.backend!r}, objective={self.objective!r}, "
            f"heads={ {h: s.weight for h, s in self.heads.items()} }, n_features={len(self.feature_cols)})"
        )

