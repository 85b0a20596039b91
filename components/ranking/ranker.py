"""The ranking model layer's names under their former single module, for callers not yet moved
(``components.ranking.stage`` imports them from here).

The layer is split by concern: :mod:`~components.ranking.params` (tunables, heads),
:mod:`~components.ranking.split` (time-based validation split),
:mod:`~components.ranking.backends` (scoring a head's booster),
:mod:`~components.ranking.boosting` (fitting one), :mod:`~components.ranking.model`
(:class:`RankerModel`, what serving needs), :mod:`~components.ranking.artefact` (save / load)
and :mod:`~components.ranking.train` (:func:`train_ranker`). New code imports from those:
this module pulls in training code, which serving must not.
"""

from __future__ import annotations

from components.ranking.artefact import MANIFEST, load, save
from components.ranking.model import HeadSpec, RankerModel
from components.ranking.params import HEADS, RankerParams, head_kind, label_column
from components.ranking.split import time_split
from components.ranking.train import train_ranker

__all__ = [
    "HEADS",
    "MANIFEST",
    "HeadSpec",
    "RankerModel",
    "RankerParams",
    "head_kind",
    "label_column",
    "load",
    "save",
    "time_split",
    "train_ranker",
]
