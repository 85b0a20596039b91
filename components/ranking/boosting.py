"""Fitting one head of the ranker with LightGBM or XGBoost: the booster parameters each library
gets from :class:`~components.ranking.params.RankerParams`, early stopping on the validation split,
and the artefact bytes of the best iteration only.

The learning rate decays multiplicatively per round (``lr · lr_decay^round``). Training is
deterministic given ``base.seed``: fixed threads, LightGBM ``deterministic`` + ``force_row_wise``,
XGBoost ``hist`` with a fixed ``seed``. Early stopping watches NDCG@k for LambdaRank, log-loss for
binary heads and squared error for the regression head. The trainers extend the scoring backends of
:mod:`components.ranking.backends`, so a fitted head is rebuilt and scored the way serving does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numpy as np
import xgboost as xgb

from components.ranking.backends import Backend, LightGBMBackend, XGBoostBackend
from components.ranking.params import HeadKind, RankerParams


@dataclass(frozen=True)
class HeadData:
    """The rows one head is fitted (or validated) on."""

    X: np.ndarray
    y: np.ndarray
    group_sizes: np.ndarray | None  # lambdarank only
    qid: np.ndarray | None  # lambdarank only (XGBoost)
    init: np.ndarray | None = None  # base margin the boosting starts from (main head)


@dataclass(frozen=True)
class Fitted:
    """A fitted head: its artefact files and how many rounds were run and kept."""

    files: dict[str, bytes]  # file name -> bytes of the artefact (best iteration only)
    best_iteration: int  # number of boosting rounds kept (1-based)
    rounds_run: int


class Trainer(Backend):
    """A scoring backend that can also fit a head."""

    @staticmethod
    def booster_params(kind: HeadKind, p: RankerParams) -> dict[str, Any]:
        """The library's training parameters for a head of ``kind``."""
        raise NotImplementedError

    def fit(
        self,
        head: str,
        kind: HeadKind,
        train: HeadData,
        valid: HeadData | None,
        p: RankerParams,
        feature_cols: Sequence[str],
    ) -> Fitted:
        """Fit ``head`` on ``train`` (early stopping on ``valid``), keeping the best iteration."""
        raise NotImplementedError


class LightGBMTrainer(LightGBMBackend, Trainer):
    """LightGBM ``lgb.train`` with a learning-rate schedule and early stopping."""

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
        train: HeadData,
        valid: HeadData | None,
        p: RankerParams,
        feature_cols: Sequence[str],
    ) -> Fitted:
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
        return Fitted(
            files={f"{head}.txt": text.encode("utf-8")}, best_iteration=best, rounds_run=rounds_run
        )


class XGBoostTrainer(XGBoostBackend, Trainer):
    """XGBoost ``xgb.train`` on ``QuantileDMatrix`` with a learning-rate schedule and early stopping."""

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
        train: HeadData,
        valid: HeadData | None,
        p: RankerParams,
        feature_cols: Sequence[str],
    ) -> Fitted:
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
        return Fitted(
            files={
                f"{head}.ubj": bytes(kept.save_raw("ubj")),
                f"{head}.config.json": kept.save_config().encode(),
            },
            best_iteration=best,
            rounds_run=rounds_run,
        )


def trainer(name: str) -> Trainer:
    """The trainer of backend ``name``."""
    if name == "lightgbm":
        return LightGBMTrainer()
    if name == "xgboost":
        return XGBoostTrainer()
    raise ValueError(f"unknown backend {name!r}")
