"""Typed ``params.yaml`` and the stage CLIs' shared arguments.

``params.yaml`` is the one source of every tunable: each section has a Pydantic model
(:mod:`~components.core.sections_batch` for the pipeline's, :mod:`~components.core.sections_live`
for the live system's, on the :class:`~components.core.section.Section` base; all re-exported
here) with no defaults, unknown keys are rejected (``extra="forbid"``) and a problem is reported
with the key's dotted path and the file (``params.yaml: ranking.num_leavs: unknown key``).
A range a section's values must keep (``ranking.num_leaves`` at least 2, ``drift.drift_share``
in (0, 1]) is checked there too, so a bad value stops the run as the file loads; a stage's
settings class subclasses its section and adds only what needs the stage's own vocabulary.
:meth:`Section.replace` is the validated ``dataclasses.replace`` of these models.
:meth:`Params.for_dataset` is the one place the per-data-set ``overrides`` subsections are
applied. The environment (``RECO_*``) is read by :class:`components.core.settings.Settings`.
"""
from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from components.core.catalog import DataPaths
from components.core.section import ConfigError, IsoDate, Overrides, Section, Seed, error_lines
from components.core.sections_batch import (
    TRAINING_SET_KEYS,
    Base,
    BroughtSplit,
    CandidateEvaluation,
    Candidates,
    Data,
    Datagen,
    Drift,
    Ease,
    Embeddings,
    Evaluate,
    EvaluateProtocol,
    Exploration,
    Feast,
    Features,
    Fresh,
    Index,
    Ingest,
    IngestLimits,
    Knn,
    Preprocess,
    Ranking,
    RankingModel,
    RankingTrainingSet,
    Recent,
    Trending,
    Tuning,
)
from components.core.sections_live import (
    ARM_KEYS,
    CanaryGate,
    Experiment,
    ExperimentArm,
    Experiments,
    Guardrail,
    OfflineGate,
    OnlineUpdate,
    OnlineUpdateOptions,
    Promote,
    Serving,
    ShadowGate,
    Simulate,
)

__all__ = [
    "ARM_KEYS",
    "DATASETS",
    "DEFAULT_PARAMS",
    "OVERRIDABLE",
    "TRAINING_SET_KEYS",
    "Base",
    "BroughtSplit",
    "CanaryGate",
    "CandidateEvaluation",
    "Candidates",
    "ConfigError",
    "Data",
    "Datagen",
    "Drift",
    "Ease",
    "Embeddings",
    "Evaluate",
    "EvaluateProtocol",
    "Experiment",
    "ExperimentArm",
    "Experiments",
    "Exploration",
    "Feast",
    "Features",
    "Fresh",
    "Guardrail",
    "Index",
    "Ingest",
    "IngestLimits",
    "IsoDate",
    "Knn",
    "OfflineGate",
    "OnlineUpdate",
    "OnlineUpdateOptions",
    "Overrides",
    "Params",
    "Preprocess",
    "Promote",
    "Ranking",
    "RankingModel",
    "RankingTrainingSet",
    "Recent",
    "Section",
    "Seed",
    "Serving",
    "ShadowGate",
    "Simulate",
    "Trending",
    "Tuning",
    "deep_merge",
    "error_lines",
    "load_config",
    "load_params",
    "stage_context",
    "stage_parser",
]

DEFAULT_PARAMS = DataPaths().of("params")
#: Data sets a drop can come from (``data.source``).
DATASETS: tuple[str, ...] = ("synthetic", "kuairand", "movielens")
#: Sections with ``overrides.<dataset>`` subsections, merged by :meth:`Params.for_dataset`.
OVERRIDABLE: tuple[str, ...] = ("ingest", "candidates", "evaluate")

class Params(Section):
    """The whole ``params.yaml``: build it with :meth:`of` or :func:`load_config`, which also
    check every ``overrides`` subsection against its section's model."""

    base: Base
    data: Data
    datagen: Datagen
    ingest: Ingest
    preprocess: Preprocess
    features: Features
    feast: Feast
    embeddings: Embeddings
    candidates: Candidates
    exploration: Exploration
    ranking: Ranking
    evaluate: Evaluate
    drift: Drift
    promote: Promote
    serving: Serving
    online_update: OnlineUpdate
    experiments: Experiments
    simulate: Simulate
    tuning: Tuning = Tuning()

    @classmethod
    def of(cls, params: Params | Mapping[str, Any], source: str = "params") -> Params:
        """Validate a params mapping (an already validated :class:`Params` is returned as is)."""
        if isinstance(params, Params):
            return params
        try:
            cfg = cls.model_validate(dict(params))
        except ValidationError as err:
            raise ConfigError("\n".join(error_lines(err, source))) from None
        problems = cfg._override_problems(source)
        if problems:
            raise ConfigError("\n".join(problems))
        return cfg

    def _override_problems(self, source: str) -> list[str]:
        raw = self.model_dump(by_alias=True)
        models: dict[str, type[Section]] = {"ingest": Ingest, "candidates": Candidates, "evaluate": Evaluate}
        problems: list[str] = []

        def check(model: type[Section], merged: dict[str, Any], prefix: tuple[str, ...]) -> None:
            try:
                model.model_validate(merged)
            except ValidationError as err:
                problems.extend(error_lines(err, source, prefix))

        check(Ranking, deep_merge(raw["ranking"], raw["evaluate"]["ranking"]), ("evaluate", "ranking"))
        for name in OVERRIDABLE:
            for dataset, top in raw[name]["overrides"].items():
                where = (name, "overrides", dataset)
                if dataset not in DATASETS:
                    problems.append(f"{source}: {'.'.join(where)}: unknown data set (one of {DATASETS})")
                if "overrides" in top:
                    problems.append(f"{source}: {'.'.join(where)}.overrides: unknown key")
                    continue
                check(models[name], deep_merge(raw[name], top), where)
                if name == "evaluate" and "ranking" in top:
                    check(Ranking, deep_merge(raw["ranking"], top["ranking"]), (*where, "ranking"))
        return problems

    def for_dataset(self, dataset: str | None = None, *, evaluation: bool = False) -> Params:
        """These params for one data set (default ``data.source``): each section's
        ``overrides.<dataset>`` merged over it; with ``evaluation``, ``evaluate.ranking`` (after
        its own override) laid over ``ranking`` as the evaluation protocol trains it."""
        name = dataset or self.data.source
        raw = self.model_dump(by_alias=True)
        for section in OVERRIDABLE:
            raw[section] = deep_merge(raw[section], raw[section]["overrides"].get(name) or {})
        if evaluation:
            raw["ranking"] = deep_merge(raw["ranking"], raw["evaluate"]["ranking"])
        return Params.of(raw, source=f"params for {name}")


def deep_merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``top`` laid over it, nested mappings merged key by key."""
    out = dict(base)
    for k, v in top.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


def _read(path: str | Path | None) -> tuple[dict[str, Any], str]:
    p = Path(path) if path is not None else DEFAULT_PARAMS
    with p.open(encoding="utf-8") as fh:
        raw = yaml.safe_load(fh) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: expected a mapping of sections")
    return raw, str(path) if path is not None else str(p)


def load_config(path: str | Path | None = None) -> Params:
    """The validated params file (default: the project's ``params.yaml``)."""
    raw, source = _read(path)
    return Params.of(raw, source)


def load_params(path: str | Path | None = None) -> dict[str, Any]:
    """The params file as a plain mapping, after validating it (see :func:`load_config`)."""
    raw, source = _read(path)
    Params.of(raw, source)
    return raw


# ---------------------------------------------------------------------------------------------
# Stage CLIs


def stage_parser(doc: str | None) -> argparse.ArgumentParser:
    """The arguments every stage CLI shares: ``--params`` and ``--root``."""
    parser = argparse.ArgumentParser(description=(doc or "").strip().splitlines()[0] if doc else None)
    parser.add_argument("--params", default=None, help="params.yaml (default: the project's)")
    parser.add_argument("--root", default=None, help="project root for inputs/outputs (default: this project)")
    return parser


def stage_context(args: argparse.Namespace) -> tuple[dict[str, Any], DataPaths]:
    """Set up logging for a stage CLI, validate its params file (a typo stops the stage with the
    key's path) and return the params and the paths."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    root = getattr(args, "root", None)
    paths = DataPaths(Path(root)) if root else DataPaths()
    try:
        params = load_params(getattr(args, "params", None))
    except ConfigError as err:
        raise SystemExit(f"invalid params: {err}") from None
    return params, paths
