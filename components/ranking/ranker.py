"""Ranking-stage model layer: a multi-head gradient-boosted ranker (LightGBM or XGBoost).

Heads
    One booster per head, each trained on the same features:

    * ``engaged`` — the main head: LambdaRank on the graded ``relevance`` (0–3) with one query
      group per request (``objective: lambdarank``), or binary log-loss on ``label_engaged``
      (``objective: binary``);
    * ``like``, ``share``, ``complete_view``, ``negative`` (skip / hide / report) — binary
      log-loss on ``label_<head>``;
    * ``watch_ratio`` — squared-error regression on the rows where the watch ratio is known.

    A head whose label has no variation in the training split is skipped with a warning and its
    weight dropped; a head with weight 0 is not trained at all.

Final score
    ``score = Σ_h weight_h · (margin_h − mean_h) / std_h``: each head's raw margin (log-odds for
    binary heads, the LambdaRank score, the predicted watch ratio) is z-scored with the mean and
    standard deviation of that head's margin over the *training-split* rows, so a weight means
    "this many standard deviations of the head" whatever the head's scale. Margins rather than
    probabilities, because rare-event heads (share, negative) have probabilities squeezed near 0
    where a z-score of probabilities would be dominated by a few outliers. The negative head
    carries a negative weight, so a higher probability of skip / hide / report lowers the score.

Training
    The validation split is by time: groups are ordered by their timestamp (latest row of the
    group; ties by group id) and the latest ``validation_fraction`` of groups are held out. The
    boundary is moved to the nearest change of timestamp so that no timestamp is on both sides
    (only when every group shares one timestamp is it split by group id, with a warning).
    Early stopping watches the validation split (NDCG@k for LambdaRank, log-loss for binary
    heads, squared error for the regression head); the artefact keeps the best iteration only.
    The learning rate decays multiplicatively per round (``lr · lr_decay^round``). Training is
    deterministic given ``base.seed``: fixed threads, LightGBM ``deterministic`` +
    ``force_row_wise``, XGBoost ``hist`` with a fixed ``seed``. Features are cast to float32 for
    training and scoring alike (both libraries bin / split in float32 precision anyway).

Parameter mapping
    ``l2_lambda`` → LightGBM ``lambda_l2`` / XGBoost ``reg_lambda``; ``num_leaves`` and
    ``max_depth`` → LightGBM ``num_leaves`` + ``max_depth`` (a depth cap on leaf-wise growth),
    XGBoost ``max_depth`` (depth-wise growth); ``min_child_samples`` → LightGBM
    ``min_data_in_leaf`` only: XGBoost has no row-count minimum (``min_child_weight`` is a
    Hessian sum) and keeps its default.

Artefact
    :func:`save` writes ``<directory>/<version>/`` atomically (temporary folder + rename):
    ``manifest.json`` plus each head's model in the backend's native format (LightGBM ``.txt``;
    XGBoost ``.ubj`` with its ``.config.json`` so training parameters survive a reload). The
    version is a short SHA-256 over the manifest (without the version) and the model bytes, so
    identical training gives an identical version, and :func:`load` refuses an artefact whose
    bytes no longer match it.

Only the orchestration (splits, heads, standardisation, artefact) is written here; the boosting,
the metrics' arithmetic (scikit-learn, :mod:`components.evaluation.metrics`) and the model formats are the
libraries'.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from components.core.config import TRAINING_SET_KEYS, Params
from components.core.io import atomic_write_bytes, fsync_dir, fsync_file
from components.evaluation.metrics import rank_by_score, ranking_metrics

logger = logging.getLogger(__name__)

HEADS: tuple[str, ...] = ("engaged", "like", "share", "complete_view", "watch_ratio", "negative")
BACKENDS = ("lightgbm", "xgboost")
OBJECTIVES = ("lambdarank", "binary")
MANIFEST = "manifest.json"
FORMAT_VERSION = 1
MAX_RELEVANCE = 30  # LightGBM's default label_gain covers grades 0..30

HeadKind = Literal["lambdarank", "binary", "regression"]
HeadOutput = Literal["natural", "margin", "standardised"]


# --------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class RankerParams:
    """Tunables of the ranking model (``params.yaml``: ``ranking`` section, seed from ``base``)."""

    backend: str
    objective: str
    heads: dict[str, float]
    l2_lambda: float
    learning_rate: float
    lr_decay: float
    n_estimators: int
    early_stopping_rounds: int  # 0 disables early stopping (validation is still scored)
    num_leaves: int
    max_depth: int
    min_child_samples: int
    validation_fraction: float
    eval_at: int
    n_threads: int
    base_feature: str  # main head boosts from this feature ("auto": best z_* on training groups; "": off)
    base_weight: float
    seed: int

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"ranking.backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.objective not in OBJECTIVES:
            raise ValueError(
                f"ranking.objective must be one of {OBJECTIVES}, got {self.objective!r}"
            )
        unknown = sorted(set(self.heads) - set(HEADS))
        if unknown:
            raise ValueError(f"ranking.heads: unknown heads {unknown}; known: {list(HEADS)}")
        if "engaged" not in self.heads or self.heads["engaged"] == 0:
            raise ValueError("ranking.heads must give the main head 'engaged' a non-zero weight")
        checks: list[tuple[bool, str]] = [
            (self.l2_lambda >= 0, "l2_lambda must be >= 0"),
            (self.learning_rate > 0, "learning_rate must be > 0"),
            (0 < self.lr_decay <= 1, "lr_decay must be in (0, 1]"),
            (self.n_estimators >= 1, "n_estimators must be >= 1"),
            (self.early_stopping_rounds >= 0, "early_stopping_rounds must be >= 0"),
            (self.num_leaves >= 2, "num_leaves must be >= 2"),
            (self.max_depth >= 1, "max_depth must be >= 1"),
            (self.min_child_samples >= 1, "min_child_samples must be >= 1"),
            (0 < self.validation_fraction < 1, "validation_fraction must be in (0, 1)"),
            (self.eval_at >= 1, "eval_at must be >= 1"),
            (self.n_threads >= 1, "n_threads must be >= 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"ranking.{message}")

    @classmethod
    def from_params(cls, params: Params | Mapping[str, Any]) -> RankerParams:
        """The model keys of ``ranking`` (the training-set keys are ``TrainingSetParams``')."""
        cfg = Params.of(params)
        return cls(seed=cfg.base.seed, **cfg.ranking.model_dump(exclude=TRAINING_SET_KEYS))

    def learning_rate_at(self, round_: int) -> float:
        """The scheduled learning rate of boosting round ``round_`` (0-based)."""
        return float(self.learning_rate * self.lr_decay**round_)


def head_kind(head: str, objective: str) -> HeadKind:
    """How a head is trained."""
    if head == "engaged":
        return "lambdarank" if objective == "lambdarank" else "binary"
    return "regression" if head == "watch_ratio" else "binary"


def label_column(head: str, objective: str) -> str:
    """The frame column a head learns from."""
    return "relevance" if head_kind(head, objective) == "lambdarank" else f"label_{head}"


# --------------------------------------------------------------------------- time split


def _time_values(s: pd.Series) -> np.ndarray:
    """A timestamp column as sortable numbers (int64 ns for datetimes), refusing missing ones."""
    if pd.api.types.is_datetime64_any_dtype(s):
        if getattr(s.dt, "tz", None) is not None:
            s = s.dt.tz_convert("UTC").dt.tz_localize(None)
        if s.isna().any():
            raise ValueError(f"time column {s.name!r} has missing timestamps")
        return s.to_numpy(dtype="datetime64[ns]").astype("int64")
    if pd.api.types.is_numeric_dtype(s):
        v = s.to_numpy(dtype="float64", na_value=np.nan)
        if np.isnan(v).any():
            raise ValueError(f"time column {s.name!r} has missing timestamps")
        return v
    raise TypeError(f"time column {s.name!r} must be datetime or numeric, got {s.dtype}")


@dataclass(frozen=True)
class _GroupOrder:
    row_order: np.ndarray  # positions of the frame's rows, groups in time order, contiguous
    group_of_row: np.ndarray  # per sorted row: the group's rank in time order
    group_sizes: np.ndarray  # per group rank
    group_times: np.ndarray  # per group rank (sortable numbers)
    n_train_groups: int


def _order_groups(
    frame: pd.DataFrame, validation_fraction: float, group_col: str, time_col: str
) -> _GroupOrder:
    for col in (group_col, time_col):
        if col not in frame.columns:
            raise KeyError(f"frame has no column {col!r}")
    if frame[group_col].isna().any():
        raise ValueError(f"group column {group_col!r} has missing values")
    codes, uniques = pd.factorize(frame[group_col], sort=False)
    n_groups = len(uniques)
    if n_groups < 2:
        raise ValueError(
            f"need at least 2 groups for a time-based validation split, got {n_groups}"
        )
    times = pd.Series(_time_values(frame[time_col])).groupby(codes).max().to_numpy()
    tiebreak = np.empty(n_groups, dtype="int64")
    tiebreak[pd.Index(uniques).argsort()] = np.arange(n_groups)
    by_time = np.lexsort((tiebreak, times))  # group codes, earliest first
    rank = np.empty(n_groups, dtype="int64")
    rank[by_time] = np.arange(n_groups)
    row_rank = rank[codes]
    row_order = np.argsort(row_rank, kind="stable")
    sorted_times = times[by_time]

    target = n_groups - max(1, round(validation_fraction * n_groups))
    target = min(max(target, 1), n_groups - 1)
    cuts = np.flatnonzero(sorted_times[1:] > sorted_times[:-1]) + 1  # first group of a new time
    if len(cuts):
        dist = np.abs(cuts - target)
        n_train = int(cuts[np.lexsort((-cuts, dist))[0]])  # nearest; on a tie, the larger train
    else:
        logger.warning("all %d groups share one timestamp: validation split by group id", n_groups)
        n_train = target
    return _GroupOrder(
        row_order=row_order,
        group_of_row=row_rank[row_order],
        group_sizes=np.bincount(row_rank, minlength=n_groups),
        group_times=sorted_times,
        n_train_groups=n_train,
    )


def time_split(
    frame: pd.DataFrame,
    validation_fraction: float,
    *,
    group_col: str = "group_id",
    time_col: str = "event_timestamp",
) -> np.ndarray:
    """Boolean mask over ``frame``'s rows: True for the validation rows (the latest groups)."""
    if not 0 < validation_fraction < 1:
        raise ValueError("validation_fraction must be in (0, 1)")
    order = _order_groups(frame, validation_fraction, group_col, time_col)
    mask = np.zeros(len(frame), dtype=bool)
    mask[order.row_order[order.group_of_row >= order.n_train_groups]] = True
    return mask


# --------------------------------------------------------------------------- backends


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.asarray(0.5 * (1.0 + np.tanh(0.5 * x)))


@dataclass(frozen=True)
class _HeadData:
    X: np.ndarray
    y: np.ndarray
    group_sizes: np.ndarray | None  # lambdarank only
    qid: np.ndarray | None  # lambdarank only (XGBoost)
    init: np.ndarray | None = None  # base margin the boosting starts from (main head)


@dataclass(frozen=True)
class _Fitted:
    files: dict[str, bytes]  # file name -> bytes of the artefact (best iteration only)
    best_iteration: int  # number of boosting rounds kept (1-based)
    rounds_run: int


class _Backend:
    """What the two libraries must provide: fit one head, rebuild it from bytes, score a matrix."""

    name: str
    library_version: str

    def fit(
        self,
        head: str,
        kind: HeadKind,
        train: _HeadData,
        valid: _HeadData | None,
        p: RankerParams,
        feature_cols: Sequence[str],
    ) -> _Fitted:
        raise NotImplementedError

    def files_of(self, head: str) -> list[str]:
        raise NotImplementedError

    def build(self, head: str, files: Mapping[str, bytes], threads: int) -> Any:
        raise NotImplementedError

    def margin(self, booster: Any, X: np.ndarray, threads: int) -> np.ndarray:
        raise NotImplementedError

    def set_threads(self, booster: Any, threads: int) -> None:
        """Hook for libraries that keep the thread count on the booster."""


class _LightGBM(_Backend):
    name = "lightgbm"

    def __init__(self) -> None:
        import lightgbm as lgb

        self.lgb = lgb
        self.library_version = str(lgb.__version__)

    @staticmethod
    def booster_params(kind: HeadKind, p: RankerParams) -> dict[str, Any]:
        objective, metric = {
            "lambdarank": ("lambdarank", "ndcg"),
            "binary": ("binary", "binary_logloss"),
            "regression": ("regression", "l2"),
        }[kind]
        out: dict[str, Any] = {
            "objective": objective,
            "metric": metric,
            "learning_rate": p.learning_rate,
            "lambda_l2": p.l2_lambda,
            "num_leaves": p.num_leaves,
            "max_depth": p.max_depth,
            "min_data_in_leaf": p.min_child_samples,
            "num_threads": p.n_threads,
            "seed": p.seed,
            "deterministic": True,
            "force_row_wise": True,
            "verbosity": -1,
        }
        if kind == "lambdarank":
            out["eval_at"] = [p.eval_at]
        return out

    def fit(
        self,
        head: str,
        kind: HeadKind,
        train: _HeadData,
        valid: _HeadData | None,
        p: RankerParams,
        feature_cols: Sequence[str],
    ) -> _Fitted:
        lgb = self.lgb
        bp = self.booster_params(kind, p)
        dtrain = lgb.Dataset(
            train.X,
            label=train.y,
            group=train.group_sizes,
            init_score=train.init,
            feature_name=list(feature_cols),
            params=bp,
            free_raw_data=True,
        )
        rounds: list[int] = [0]

        def count_rounds(env: Any) -> None:  # lgb.train returns the truncated booster on early stop
            rounds[0] = env.iteration - env.begin_iteration + 1

        callbacks: list[Callable[..., Any]] = [
            lgb.reset_parameter(learning_rate=p.learning_rate_at),
            count_rounds,
        ]
        valid_sets = []
        if valid is not None:
            valid_sets.append(
                lgb.Dataset(
                    valid.X,
                    label=valid.y,
                    group=valid.group_sizes,
                    init_score=valid.init,
                    reference=dtrain,
                )
            )
            if p.early_stopping_rounds > 0:
                callbacks.append(
                    lgb.early_stopping(
                        p.early_stopping_rounds, first_metric_only=True, verbose=False
                    )
                )
        booster = lgb.train(
            bp,
            dtrain,
            num_boost_round=p.n_estimators,
            valid_sets=valid_sets,
            valid_names=["valid"] * len(valid_sets),
            callbacks=callbacks,
        )
        rounds_run = rounds[0]
        best = int(booster.best_iteration) or int(booster.current_iteration())
        text = booster.model_to_string(num_iteration=best)
        return _Fitted(
            files={f"{head}.txt": text.encode("utf-8")}, best_iteration=best, rounds_run=rounds_run
        )

    def files_of(self, head: str) -> list[str]:
        return [f"{head}.txt"]

    def build(self, head: str, files: Mapping[str, bytes], threads: int) -> Any:
        return self.lgb.Booster(model_str=files[f"{head}.txt"].decode("utf-8"))

    def margin(self, booster: Any, X: np.ndarray, threads: int) -> np.ndarray:
        return np.asarray(booster.predict(X, raw_score=True, num_threads=threads), dtype="float64")


class _XGBoost(_Backend):
    name = "xgboost"

    def __init__(self) -> None:
        import xgboost as xgb

        self.xgb = xgb
        self.library_version = str(xgb.__version__)

    @staticmethod
    def booster_params(kind: HeadKind, p: RankerParams) -> dict[str, Any]:
        objective, metric = {
            "lambdarank": ("rank:ndcg", f"ndcg@{p.eval_at}"),
            "binary": ("binary:logistic", "logloss"),
            "regression": ("reg:squarederror", "rmse"),
        }[kind]
        return {
            "objective": objective,
            "eval_metric": metric,
            "tree_method": "hist",
            "learning_rate": p.learning_rate,
            "reg_lambda": p.l2_lambda,
            "max_depth": p.max_depth,
            "nthread": p.n_threads,
            "seed": p.seed,
            "verbosity": 1,
        }

    def fit(
        self,
        head: str,
        kind: HeadKind,
        train: _HeadData,
        valid: _HeadData | None,
        p: RankerParams,
        feature_cols: Sequence[str],
    ) -> _Fitted:
        xgb = self.xgb
        bp = self.booster_params(kind, p)
        names = list(feature_cols)
        dtrain = xgb.QuantileDMatrix(
            train.X,
            label=train.y,
            qid=train.qid,
            base_margin=train.init,
            feature_names=names,
            nthread=p.n_threads,
        )
        callbacks: list[Any] = [xgb.callback.LearningRateScheduler(p.learning_rate_at)]
        evals = []
        if valid is not None:
            dvalid = xgb.QuantileDMatrix(
                valid.X,
                label=valid.y,
                qid=valid.qid,
                base_margin=valid.init,
                feature_names=names,
                ref=dtrain,
                nthread=p.n_threads,
            )
            evals.append((dvalid, "valid"))
            if p.early_stopping_rounds > 0:
                callbacks.append(
                    xgb.callback.EarlyStopping(
                        rounds=p.early_stopping_rounds,
                        metric_name=bp["eval_metric"],
                        data_name="valid",
                        maximize=kind == "lambdarank",
                        save_best=False,
                    )
                )
        booster = xgb.train(
            bp,
            dtrain,
            num_boost_round=p.n_estimators,
            evals=evals,
            callbacks=callbacks,
            verbose_eval=False,
        )
        rounds_run = int(booster.num_boosted_rounds())
        best_attr = booster.attr("best_iteration")
        best = int(best_attr) + 1 if best_attr is not None else rounds_run
        kept = booster[:best]
        return _Fitted(
            files={
                f"{head}.ubj": bytes(kept.save_raw("ubj")),
                f"{head}.config.json": kept.save_config().encode(),
            },
            best_iteration=best,
            rounds_run=rounds_run,
        )

    def files_of(self, head: str) -> list[str]:
        return [f"{head}.ubj", f"{head}.config.json"]

    def build(self, head: str, files: Mapping[str, bytes], threads: int) -> Any:
        booster = self.xgb.Booster()
        booster.load_model(bytearray(files[f"{head}.ubj"]))
        booster.load_config(files[f"{head}.config.json"].decode("utf-8"))
        booster.set_param({"nthread": threads})
        return booster

    def margin(self, booster: Any, X: np.ndarray, threads: int) -> np.ndarray:
        # The thread count lives on the booster (set by build / set_threads), not on the call.
        out = booster.inplace_predict(X, predict_type="margin", validate_features=False)
        return np.asarray(out, dtype="float64")

    def set_threads(self, booster: Any, threads: int) -> None:
        booster.set_param({"nthread": threads})


def _backend(name: str) -> _Backend:
    if name == "lightgbm":
        return _LightGBM()
    if name == "xgboost":
        return _XGBoost()
    raise ValueError(f"unknown backend {name!r}")


# --------------------------------------------------------------------------- model


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


def _weighted_sum(heads: Mapping[str, HeadSpec], margins: Mapping[str, np.ndarray]) -> np.ndarray:
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
        self._files: dict[str, bytes] = {n: files[n] for h in self.heads.values() for n in h.files}
        self._impl = _backend(backend)
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
        under ``cache_dir/<version>/<head>.so`` (a file lock keeps concurrent processes from
        compiling the same head twice), and each one serves only after its raw margins equal the
        booster's within ``tolerance`` on probe rows (values across magnitudes, negatives and
        NaN); a head that differs or fails to compile keeps the booster. Returns, per head,
        ``"compiled"`` or why not. XGBoost models already score through ``inplace_predict``."""
        if self.backend != "lightgbm":
            return dict.fromkeys(self.heads, f"not needed for {self.backend}")
        import fcntl

        import lleaves

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
                model_file = folder / f"{name}.txt"
                with open(folder / ".lock", "w") as lock:
                    fcntl.flock(lock, fcntl.LOCK_EX)
                    if not model_file.exists():
                        atomic_write_bytes(model_file, self._files[f"{name}.txt"])
                    fast = lleaves.Model(model_file=str(model_file))
                    fast.compile(cache=str(folder / f"{name}.so"), raw_score=True)
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
                h: _sigmoid(m) if self.heads[h].kind == "binary" else m for h, m in margins.items()
            }
        raise ValueError(f"unknown output {output!r}")

    def predict(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Final score ``Σ weight_h · (margin_h − mean_h) / std_h`` per row (higher = rank first)."""
        return self._combine(self._margins(self._matrix(X)))

    def _combine(self, margins: Mapping[str, np.ndarray]) -> np.ndarray:
        return _weighted_sum(self.heads, margins)

    def with_weights(self, weights: Mapping[str, float]) -> RankerModel:
        """The same boosters with other head weights (a new version); for tuning without retraining."""
        unknown = sorted(set(weights) - set(self.heads))
        if unknown:
            raise ValueError(f"no trained head(s) {unknown}; trained: {sorted(self.heads)}")
        heads = {
            h: replace(s, weight=float(weights.get(h, s.weight))) for h, s in self.heads.items()
        }
        params = replace(
            self.params, heads={**self.params.heads, **{h: float(w) for h, w in weights.items()}}
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
            "params": asdict(self.params),
        }

    def manifest(self) -> dict[str, Any]:
        """The artefact's manifest, as :func:`save` writes it."""
        return {"version": self.version, **self._manifest_body()}

    def __repr__(self) -> str:
        return (
            f"RankerModel(version={self.version!r}, backend={self.backend!r}, objective={self.objective!r}, "
            f"heads={ {h: s.weight for h, s in self.heads.items()} }, n_features={len(self.feature_cols)})"
        )


# --------------------------------------------------------------------------- training


def _check_frame(
    frame: pd.DataFrame, feature_cols: Sequence[str], label_cols: Sequence[str]
) -> None:
    if len(frame) == 0:
        raise ValueError("empty training frame")
    if not feature_cols:
        raise ValueError("no feature columns")
    dupes = sorted({c for c in feature_cols if list(feature_cols).count(c) > 1})
    if dupes:
        raise ValueError(f"duplicate feature columns: {dupes}")
    missing = [c for c in [*feature_cols, *label_cols] if c not in frame.columns]
    if missing:
        raise KeyError(f"frame is missing columns: {missing}")
    bad = [
        c
        for c in feature_cols
        if not (pd.api.types.is_numeric_dtype(frame[c]) or pd.api.types.is_bool_dtype(frame[c]))
    ]
    if bad:
        raise TypeError(f"feature columns must be numeric: {bad}")


def _check_labels(head: str, kind: HeadKind, col: str, y: np.ndarray) -> None:
    known = y[~np.isnan(y)]
    if kind == "lambdarank":
        if len(known) != len(y):
            raise ValueError(f"{col}: relevance must not be missing")
        if np.any(known != np.round(known)) or known.min() < 0 or known.max() > MAX_RELEVANCE:
            raise ValueError(f"{col}: relevance must be integer grades in 0..{MAX_RELEVANCE}")
    elif kind == "binary":
        if not np.isin(known, (0.0, 1.0)).all():
            raise ValueError(f"{col}: head {head!r} needs 0/1 labels")
    elif not np.isfinite(known).all():
        raise ValueError(f"{col}: head {head!r} has infinite labels")


def _sorted_float(frame: pd.DataFrame, col: str, order: np.ndarray) -> np.ndarray:
    return frame[col].to_numpy(dtype="float64", na_value=np.nan)[order]


def _feature_matrix(
    frame: pd.DataFrame, feature_cols: Sequence[str], order: np.ndarray
) -> np.ndarray:
    """Sorted float32 matrix built column by column (one column of temporaries at a time)."""
    X = np.empty((len(order), len(feature_cols)), dtype=np.float32)
    for j, c in enumerate(feature_cols):
        X[:, j] = frame[c].to_numpy(dtype=np.float32, na_value=np.nan)[order]
    return X


def _ndcg(
    scores: np.ndarray, relevant: np.ndarray, group_sizes: np.ndarray, k: int
) -> float | None:
    """Mean binary NDCG@k over groups with a relevant item (:mod:`components.evaluation.metrics`)."""
    recs: dict[Hashable, Sequence[Hashable]] = {}
    rel: dict[Hashable, Iterable[Hashable]] = {}
    start = 0
    for g, size in enumerate(group_sizes):
        s, r = scores[start : start + size], relevant[start : start + size]
        start += size
        if r.any():
            recs[g] = rank_by_score(list(range(size)), s, k)
            rel[g] = set(np.flatnonzero(r).tolist())
    if not rel:
        return None
    return float(ranking_metrics(recs, rel, ks=(k,))[f"ndcg@{k}"])


def _binary_metrics(y: np.ndarray, margin: np.ndarray) -> dict[str, Any]:
    from sklearn.metrics import log_loss, roc_auc_score

    both = len(np.unique(y)) == 2
    return {
        "auc": float(roc_auc_score(y, margin)) if both else None,
        "logloss": float(log_loss(y, np.clip(_sigmoid(margin), 1e-15, 1 - 1e-15), labels=[0, 1])),
        "positive_rate": float(y.mean()),
    }


#: features ``base_feature: auto`` chooses from: per-user standardised retrieval scores and the
#: content's recent engagement counts
BASE_PREFIXES = ("z_", "item_eng_")


def _choose_base(
    p: RankerParams,
    feature_cols: Sequence[str],
    Xtr: np.ndarray,
    Xva: np.ndarray,
    engaged_va: np.ndarray,
    sizes_va: np.ndarray,
) -> HeadSpec | None:
    """The LambdaRank main head's base margin: ``base_feature`` itself or, with ``auto``, the
    feature among :data:`BASE_PREFIXES` with the best NDCG@eval_at on the validation groups
    (the time-based split carved from the training frame), standardised over the training rows
    and scaled by ``base_weight``.

    Trees see a feature through a few hundred bins, so they cannot reproduce the fine ordering a
    strong retrieval score gives at the top of a list; boosting from the score keeps that ordering
    and lets the trees learn corrections (early stopping on validation decides how many).
    """
    if not p.base_feature:
        return None
    if p.objective != "lambdarank":
        logger.warning("ranking.base_feature applies to the lambdarank objective only: ignored")
        return None
    cols = list(feature_cols)
    if p.base_feature == "auto":
        options = [c for c in cols if c.startswith(BASE_PREFIXES)]
        if not options:
            return None
        ndcg = {}
        for c in options:
            col = Xva[:, cols.index(c)].astype("float64")
            ndcg[c] = _ndcg(np.where(np.isnan(col), -np.inf, col), engaged_va == 1, sizes_va, p.eval_at) or 0.0
        name = max(options, key=lambda c: (ndcg[c], c))
        logger.info("base feature %s (validation NDCG@%d %.4f)", name, p.eval_at, ndcg[name])
    elif p.base_feature in cols:
        name = p.base_feature
    else:
        raise ValueError(f"ranking.base_feature {p.base_feature!r} is not a feature column")
    col = Xtr[:, cols.index(name)].astype("float64")
    finite = col[np.isfinite(col)]
    fill = float(finite.min()) if len(finite) else 0.0
    std = float(finite.std()) if len(finite) else 0.0
    return HeadSpec(
        name="engaged", kind="lambdarank", weight=0.0, mean=0.0, std=1.0, best_iteration=0, files=(),
        base_feature=name, base_weight=p.base_weight / (std if std > 0 else 1.0), base_fill=fill,
    )


def train_ranker(
    frame: pd.DataFrame,
    feature_cols: list[str],
    params: RankerParams,
    *,
    group_col: str = "group_id",
    time_col: str = "event_timestamp",
    feature_service: str = "",
    created_from: str = "",
) -> RankerModel:
    """Train every weighted head on a time-ordered split and return the combined model.

    ``frame`` has one row per (group, candidate): numeric features (NaN allowed), the label
    columns of the weighted heads (``relevance`` for LambdaRank, ``label_<head>`` otherwise;
    ``label_engaged`` is always needed, for the validation metrics) and the group / time columns.
    A missing label (NaN) leaves the row out of that head only (e.g. ``label_watch_ratio`` of
    unviewed candidates); ``relevance`` and ``label_engaged`` must be complete.
    ``feature_service`` (the Feast FeatureService the features came from) and ``created_from``
    (the training data's version) are recorded in the artefact.
    """
    p = params
    active = {h: float(w) for h, w in p.heads.items() if w != 0}
    for h in sorted(set(p.heads) - set(active)):
        logger.info("head %s has weight 0: not trained", h)
    label_cols = sorted({label_column(h, p.objective) for h in active} | {"label_engaged"})
    _check_frame(frame, feature_cols, label_cols)
    impl = _backend(p.backend)

    t0 = time.perf_counter()
    order = _order_groups(frame, p.validation_fraction, group_col, time_col)
    n_tr_groups = order.n_train_groups
    n_tr = int(order.group_sizes[:n_tr_groups].sum())
    X = _feature_matrix(frame, feature_cols, order.row_order)
    Xtr, Xva = X[:n_tr], X[n_tr:]  # views: training groups come first
    sizes_tr, sizes_va = order.group_sizes[:n_tr_groups], order.group_sizes[n_tr_groups:]
    qid_tr, qid_va = order.group_of_row[:n_tr], order.group_of_row[n_tr:]
    engaged = _sorted_float(frame, "label_engaged", order.row_order)
    _check_labels("engaged", "binary", "label_engaged", engaged)
    if np.isnan(engaged).any():
        raise ValueError("label_engaged must not be missing (it defines the validation metrics)")
    split = {
        "train_rows": n_tr,
        "validation_rows": len(X) - n_tr,
        "train_groups": n_tr_groups,
        "validation_groups": len(order.group_sizes) - n_tr_groups,
        "validation_group_share": (len(order.group_sizes) - n_tr_groups) / len(order.group_sizes),
        "validation_starts_at": _time_repr(frame[time_col], order.group_times[n_tr_groups]),
    }
    logger.info(
        "time split: %d train groups (%d rows), %d validation groups (%d rows) from %s",
        n_tr_groups,
        n_tr,
        split["validation_groups"],
        split["validation_rows"],
        split["validation_starts_at"],
    )
    prepare_s = time.perf_counter() - t0

    base_spec = _choose_base(p, feature_cols, Xtr, Xva, engaged[n_tr:], sizes_va)
    heads: dict[str, HeadSpec] = {}
    files: dict[str, bytes] = {}
    head_metrics: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    valid_margins: dict[str, np.ndarray] = {}
    timings: dict[str, float] = {"prepare_s": prepare_s}
    for head in HEADS:
        if head not in active:
            continue
        kind = head_kind(head, p.objective)
        col = label_column(head, p.objective)
        y = _sorted_float(frame, col, order.row_order)
        _check_labels(head, kind, col, y)
        ytr, yva = y[:n_tr], y[n_tr:]
        known_tr, known_va = ~np.isnan(ytr), ~np.isnan(yva)
        reason = ""
        if len(np.unique(ytr[known_tr])) < 2:
            reason = f"label {col} has no variation in the training split"
        elif kind != "lambdarank" and int(known_tr.sum()) < 2 * p.min_child_samples:
            # LightGBM drops every feature it cannot split under min_data_in_leaf, then fails
            reason = f"only {int(known_tr.sum())} labelled training rows (< 2 x min_child_samples)"
        if reason:
            logger.warning("skipping head %s (weight %s dropped): %s", head, active[head], reason)
            skipped[head] = reason
            continue
        base = base_spec if head == "engaged" else None
        init_tr = base.offset(Xtr, feature_cols) if base is not None else None
        init_va = base.offset(Xva, feature_cols) if base is not None else None
        if kind == "lambdarank":
            train = _HeadData(Xtr, ytr, sizes_tr, qid_tr, init_tr)
            valid: _HeadData | None = _HeadData(Xva, yva, sizes_va, qid_va, init_va)
        else:
            all_tr, all_va = known_tr.all(), known_va.all()
            train = _HeadData(
                Xtr if all_tr else Xtr[known_tr],
                ytr if all_tr else ytr[known_tr],
                None,
                None,
                None if init_tr is None else (init_tr if all_tr else init_tr[known_tr]),
            )
            valid = _HeadData(
                Xva if all_va else Xva[known_va],
                yva if all_va else yva[known_va],
                None,
                None,
                None if init_va is None else (init_va if all_va else init_va[known_va]),
            )
        if valid is not None and len(valid.y) == 0:
            logger.warning(
                "head %s has no labelled validation rows: trained without early stopping", head
            )
            valid = None
        t1 = time.perf_counter()
        fitted = impl.fit(head, kind, train, valid, p, feature_cols)
        timings[f"{head}_fit_s"] = time.perf_counter() - t1
        del train, valid
        booster = impl.build(head, fitted.files, p.n_threads)
        m_tr = impl.margin(booster, Xtr, p.n_threads)
        m_va = impl.margin(booster, Xva, p.n_threads)
        if base is not None:
            m_tr = m_tr + init_tr
            m_va = m_va + init_va
        std = float(m_tr.std())
        heads[head] = HeadSpec(
            name=head,
            kind=kind,
            weight=active[head],
            mean=float(m_tr.mean()),
            std=std if std > 0 else 1.0,
            best_iteration=fitted.best_iteration,
            files=tuple(sorted(fitted.files)),
            base_feature=base.base_feature if base is not None else "",
            base_weight=base.base_weight if base is not None else 0.0,
            base_fill=base.base_fill if base is not None else 0.0,
        )
        files.update(fitted.files)
        valid_margins[head] = m_va
        metrics: dict[str, Any] = {
            "best_iteration": fitted.best_iteration,
            "rounds_run": fitted.rounds_run,
            "validation_rows": int(known_va.sum()),
        }
        if kind == "regression":
            err = m_va[known_va] - yva[known_va]
            metrics["rmse"] = float(np.sqrt(np.mean(err**2))) if len(err) else None
            metrics["mae"] = float(np.mean(np.abs(err))) if len(err) else None
        elif kind == "binary":
            metrics.update(_binary_metrics(yva[known_va], m_va[known_va]) if known_va.any() else {})
        if head == "engaged":
            auc = _binary_metrics(engaged[n_tr:], m_va)["auc"]
            metrics["auc"] = auc
            metrics[f"ndcg@{p.eval_at}"] = _ndcg(m_va, engaged[n_tr:] == 1, sizes_va, p.eval_at)
        head_metrics[head] = metrics
        logger.info(
            "head %s (%s): %d of %d rounds kept; validation %s",
            head,
            kind,
            fitted.best_iteration,
            fitted.rounds_run,
            {k: v for k, v in metrics.items() if k not in {"rounds_run"}},
        )
    if not heads:
        raise ValueError(f"no head could be trained: {skipped}")

    combined_va = _weighted_sum(heads, valid_margins)
    combined = {
        "auc": _binary_metrics(engaged[n_tr:], combined_va)["auc"],
        f"ndcg@{p.eval_at}": _ndcg(combined_va, engaged[n_tr:] == 1, sizes_va, p.eval_at),
    }
    training_metrics = {
        "split": split,
        "base_feature": base_spec.base_feature if base_spec is not None else None,
        "heads": head_metrics,
        "combined": combined,
        "skipped_heads": skipped,
    }
    model = RankerModel(
        backend=p.backend,
        objective=p.objective,
        heads=heads,
        files=files,
        feature_cols=feature_cols,
        feature_service=feature_service,
        created_from=created_from,
        training_metrics=training_metrics,
        params=p,
        library_version=impl.library_version,
    )
    model.timings = {k: round(v, 3) for k, v in timings.items()}
    logger.info(
        "trained ranker %s (%s/%s, heads %s): combined validation %s",
        model.version,
        p.backend,
        p.objective,
        {h: s.weight for h, s in heads.items()},
        combined,
    )
    return model


def _time_repr(col: pd.Series, value: float) -> str:
    if pd.api.types.is_datetime64_any_dtype(col):
        return pd.Timestamp(int(value), unit="ns", tz="UTC").isoformat()
    return repr(float(value))


# --------------------------------------------------------------------------- artefact I/O


def _write_file(path: Path, data: bytes) -> None:
    """Write one file of an artefact folder being built, durably (the folder is renamed later)."""
    path.write_bytes(data)
    fsync_file(path)


def save(model: RankerModel, directory: Path) -> Path:
    """Write the artefact to ``directory/<version>/`` atomically; returns that folder.

    Files go to a temporary folder next to it, which is renamed into place only when complete,
    so a crash leaves either the whole artefact or none (at worst a ``.tmp-*`` folder). Saving
    a version that already exists is a no-op (same version = same content).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / model.version
    if (final / MANIFEST).exists():
        logger.info("ranker artefact %s already exists: not rewritten", final)
        return final
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{model.version}-", dir=directory))
    try:
        for name, data in model._files.items():
            _write_file(tmp / name, data)
        _write_file(
            tmp / MANIFEST,
            json.dumps(model.manifest(), indent=2, sort_keys=True, allow_nan=False).encode(),
        )
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / MANIFEST).exists():  # not a concurrent save of the same version
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_dir(directory)
    logger.info("saved ranker artefact %s", final)
    return final


def load(directory: Path, *, predict_threads: int = 1) -> RankerModel:
    """Restore a saved ranker, refusing an artefact whose content no longer matches its version."""
    directory = Path(directory)
    manifest = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
    if manifest.get("kind") != "ranker" or manifest.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{directory}: not a ranker artefact of format {FORMAT_VERSION}")
    heads = {
        h: HeadSpec(
            name=h,
            kind=s["kind"],
            weight=float(s["weight"]),
            mean=float(s["mean"]),
            std=float(s["std"]),
            best_iteration=int(s["best_iteration"]),
            files=tuple(s["files"]),
            base_feature=str(s.get("base_feature", "")),
            base_weight=float(s.get("base_weight", 0.0)),
            base_fill=float(s.get("base_fill", 0.0)),
        )
        for h, s in manifest["heads"].items()
    }
    files = {n: (directory / n).read_bytes() for s in heads.values() for n in s.files}
    model = RankerModel(
        backend=manifest["backend"],
        objective=manifest["objective"],
        heads=heads,
        files=files,
        feature_cols=manifest["feature_cols"],
        feature_service=manifest["feature_service"],
        created_from=manifest["created_from"],
        training_metrics=manifest["training_metrics"],
        params=RankerParams(**manifest["params"]),
        library_version=manifest["library_version"],
        predict_threads=predict_threads,
    )
    if model.version != manifest["version"]:
        raise ValueError(
            f"{directory}: content hash {model.version} does not match version {manifest['version']}"
        )
    logger.info("loaded ranker %s from %s", model.version, directory)
    return model
