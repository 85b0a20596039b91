"""The two boosting libraries as the ranker sees them at scoring time: rebuild a head's booster
from the artefact's bytes and compute its raw margins.

This is the half of each backend that serving needs; fitting a head (booster parameters,
training, early stopping) is :mod:`components.ranking.boosting`'s, which extends these classes.
Formats are the libraries' own: LightGBM model text (``<head>.txt``); XGBoost UBJSON
(``<head>.ubj``) with its ``<head>.config.json`` so training parameters survive a reload.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightgbm as lgb
import numpy as np
import xgboost as xgb


class Backend:
    """What a library must provide to score: rebuild a head from bytes and score a matrix."""

    name: str
    library_version: str

    def files_of(self, head: str) -> list[str]:
        """The artefact files that hold ``head``'s booster."""
        raise NotImplementedError

    def build(self, head: str, files: Mapping[str, bytes], threads: int) -> Any:
        """``head``'s booster, rebuilt from the artefact's files."""
        raise NotImplementedError

    def margin(self, booster: Any, X: np.ndarray, threads: int) -> np.ndarray:
        """Raw margins (float64) of the rows of ``X``."""
        raise NotImplementedError

    def set_threads(self, booster: Any, threads: int) -> None:
        """Hook for libraries that keep the thread count on the booster."""


class LightGBMBackend(Backend):
    """LightGBM: model text, ``Booster.predict(raw_score=True)`` with a per-call thread count."""

    name = "lightgbm"

    def __init__(self) -> None:
        self.library_version = str(lgb.__version__)

    def files_of(self, head: str) -> list[str]:
        return [f"{head}.txt"]

    def build(self, head: str, files: Mapping[str, bytes], threads: int) -> Any:
        return lgb.Booster(model_str=files[f"{head}.txt"].decode("utf-8"))

    def margin(self, booster: Any, X: np.ndarray, threads: int) -> np.ndarray:
        return np.asarray(booster.predict(X, raw_score=True, num_threads=threads), dtype="float64")


class XGBoostBackend(Backend):
    """XGBoost: UBJSON model plus its config, ``inplace_predict`` with the booster's threads."""

    name = "xgboost"

    def __init__(self) -> None:
        self.library_version = str(xgb.__version__)

    def files_of(self, head: str) -> list[str]:
        return [f"{head}.ubj", f"{head}.config.json"]

    def build(self, head: str, files: Mapping[str, bytes], threads: int) -> Any:
        booster = xgb.Booster()
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


def scoring_backend(name: str) -> Backend:
    """The scoring backend called ``name``."""
    if name == "lightgbm":
        return LightGBMBackend()
    if name == "xgboost":
        return XGBoostBackend()
    raise ValueError(f"unknown backend {name!r}")
