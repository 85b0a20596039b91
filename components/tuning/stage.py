"""Tuning as a stage: Optuna searches hyper-parameters on a validation part carved from the
evaluation's train part (never its test part), within ``tuning.trials`` (each retrieval study)
and ``tuning.ranker_trials`` (the ranker's).

    split the events by the data set's evaluation protocol (seed base.seed)  -> train | test
      (test is dropped here)
    split train again by the same protocol (seed base.seed + 1)              -> inner | validation
    retrieval fitted on inner once; the source studies (EASE, ALS, kNN) refit only their source
    and score its top-10 on validation; then retrieval is refitted with their chosen values (and
    the feature store built from inner, as the evaluation does) for the merge-quota study
    (candidate recall) and the ranker study (a training set labelled by validation, built once;
    each trial trains the ranker's main head on it); last, the folds study (per-user temporal
    protocols) runs the whole evaluation one level down, trained on inner and scored on
    validation, once per combination of ``tuning.inner_cut_quantiles`` (per-user temporal
    protocols only) and ``tuning.fold_negatives``

The studies and their objectives are :mod:`components.tuning.studies`. One retrieval fit serves
the pipeline and every baseline, so the pipeline's sources, their ``z_*`` features, the blend
and the EASE / ALS / item-kNN baselines all take the tuned values (baselines tuned with the same
budget as the pipeline's sources). Each study's first trial is the current values, so a chosen
value is never worse on validation than the current one.

Outputs: the studies (``data/tuning/<name>.db``, Optuna's SQLite storage, one study per group:
every trial, inspectable with ``optuna-dashboard``) and the chosen values
(``data/tuning/<name>.json``: params overrides plus each study's figures). ``<name>`` is
``pipeline`` for the pipeline's own data (the DVC ``tune`` stage) or the ``--dataset``. The
evaluation lays the chosen overrides over its params when ``tuning.apply`` is true
(:func:`tuned_params`).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna
import pandas as pd

from components.core.config import Params, deep_merge, stage_context, stage_parser
from components.core.tuned import PIPELINE_STUDY, tuned_params  # noqa: F401 - tuned_params: re-exported
from components.data.prepare import prepare_data
from components.evaluation.feed import read_tables
from components.evaluation.protocols import (
    EvalSettings,
    cut_of,
    evaluate_split,
    evaluation_pipeline,
    fold_parts,
    relevant_items,
    split_events,
)
from components.pipeline import Pipeline, TrainingPart
from components.retrieval.embedding_params import EmbeddingParams
from components.tuning import studies as S

log = logging.getLogger(__name__)

PIPELINE_NAME = PIPELINE_STUDY
RETRIEVAL_STUDIES = ("ease", "als", "knn")


def _validation_split(events: pd.DataFrame, s: EvalSettings) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(inner train, validation): both from the evaluation's train part only."""
    train, _test = _train_part(events, s)
    return split_events(train, s.protocol, test_fraction=s.test_fraction, cut_quantile=s.cut_quantile, seed=s.seed + 1)


def _train_part(events: pd.DataFrame, s: EvalSettings) -> tuple[pd.DataFrame, pd.DataFrame]:
    return split_events(events, s.protocol, test_fraction=s.test_fraction, cut_quantile=s.cut_quantile, seed=s.seed)


@dataclasses.dataclass
class _Run:
    """One tuning run's state: the studies' storage, the chosen overrides so far, the figures."""

    params: Mapping[str, Any]
    dataset: str
    storage: str
    name: str
    overrides: dict[str, Any] = dataclasses.field(default_factory=dict)
    figures: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def cfg(self) -> Params:
        return Params.of(self.params)

    def tuned(self) -> dict[str, Any]:
        return deep_merge(self.params, self.overrides)

    def current(self, dims: Sequence[S.Dim]) -> dict[str, Any]:
        raw = Params.of(self.tuned()).for_dataset(self.dataset, evaluation=True).model_dump(by_alias=True)
        return {d.name: S.value_at(raw, d.path) for d in dims}

    def study(
        self, group: str, dims: Sequence[S.Dim], objective: S.Objective, metric: str, trials: int,
        current: Mapping[str, Any] | None = None, also: Sequence[Mapping[str, Any]] = (),
    ) -> dict[str, Any]:
        """Run one group's study (``current``: the values tried first, by default read from the
        params at the dims' paths); record its figures; return its chosen values."""
        t0 = time.perf_counter()
        current = self.current(dims) if current is None else current
        study = optuna.create_study(
            study_name=f"{self.name}-{group}", storage=self.storage, direction="maximize",
            sampler=optuna.samplers.TPESampler(seed=self.cfg.base.seed),
        )
        best = S.run_study(study, dims, current, objective, trials, self.cfg.tuning.timeout_s, also)
        first = study.trials[0]
        self.figures[group] = {
            "metric": metric,
            "validation": round(float(best.value or 0.0), 6),
            "current": round(float(first.value or 0.0), 6) if first.params == {k: current[k] for k in first.params} else None,
            "trials": len(study.trials),
        }
        log.info("tuning %s/%s: %s %.4f (current %s, %d trials, %.0f s)", self.name, group, metric,
                 self.figures[group]["validation"], self.figures[group]["current"], len(study.trials), time.perf_counter() - t0)
        return dict(best.params)


def _tune_sources(run: _Run, inner: pd.DataFrame, truth: dict[str, set[str]], content: pd.DataFrame, users: pd.DataFrame) -> None:
    """The source studies on one retrieval fit of ``inner``, scored against the validation
    ``truth``."""
    t = run.cfg.tuning
    groups = [g for g in RETRIEVAL_STUDIES if g in t.studies]
    if not groups:
        return
    retr = Pipeline.of(run.params, run.dataset).fit(inner, content, users, cut_of(inner)).retriever
    v = S.Validation(sorted(truth), retr.user_rows(sorted(truth)), truth)
    space = S.spaces(t, ())
    objectives = {
        "ease": lambda: S.ease_objective(retr, v, inner),
        "als": lambda: S.als_objective(retr, v, EmbeddingParams.from_params(run.params)),
        "knn": lambda: S.knn_objective(retr, v),
    }
    for g in groups:
        best = run.study(g, space[g], objectives[g](), f"ndcg@{S.K}", t.trials)
        run.overrides = deep_merge(run.overrides, S.as_overrides(space[g], best))


def _tune_mix_and_ranker(
    run: _Run, train: pd.DataFrame, truth: dict[str, set[str]], content: pd.DataFrame, users: pd.DataFrame, work: Path
) -> None:
    """The merge-quota and ranker studies on retrieval refitted with the tuned sources: the
    evaluation's first nested validation part (inner fit, validation labels) is built once; it is
    the inner | validation split, so the merge quotas are scored against its ``truth``."""
    t = run.cfg.tuning
    if not {"mix", "ranker"} & set(t.studies):
        return
    s = EvalSettings.from_params(run.tuned(), run.dataset).replace(inner_folds=1)
    part: TrainingPart = next(iter(fold_parts(evaluation_pipeline(run.tuned(), run.dataset, s), s, train, content, users, work)))
    retr = part.fitted.retriever
    if "mix" in t.studies:
        mix = dict(retr.p.mix)
        total = float(sum(mix.values()))
        v = S.Validation(sorted(truth), retr.user_rows(sorted(truth)), truth)
        dims = S.spaces(t, list(mix))["mix"]
        best = run.study("mix", dims, S.mix_objective(retr, v, total), f"recall@{retr.p.per_user}", t.trials)
        chosen = S.rescaled_mix(best, total)
        run.overrides = deep_merge(run.overrides, {"candidates": {"mix": chosen}})
        retr.p = dataclasses.replace(retr.p, mix=chosen)
    if "ranker" in t.studies:
        s = EvalSettings.from_params(run.tuned(), run.dataset)
        pipe = evaluation_pipeline(run.tuned(), run.dataset, s)
        frame = pipe.training_set([part])
        dims = S.spaces(t, ())["ranker"]

        def objective(x: Mapping[str, Any]) -> float:
            # the main head only (the values apply to every head): a third of the cost of all heads,
            # and the head that orders the feed (the others add weighted corrections)
            ranker = s.ranker.replace(**x, heads={"engaged": s.ranker.heads["engaged"]})
            model = dataclasses.replace(pipe, ranker=ranker).train(frame, created_from=f"tune:{run.dataset}")
            return S.served_ndcg(model, ranker.eval_at)

        best = run.study("ranker", dims, objective, f"ndcg@{s.ranker.eval_at} (served, main head, ranker validation groups)", t.ranker_trials)
        run.overrides = deep_merge(run.overrides, S.as_overrides(dims, best))


def _tune_folds(
    run: _Run, inner: pd.DataFrame, valid: pd.DataFrame, content: pd.DataFrame, users: pd.DataFrame, work: Path
) -> None:
    """How the ranker's training folds are made, each combination of the grid once: where they
    cut the log (``evaluate.inner_cut_quantile`` from ``tuning.inner_cut_quantiles``; per-user
    temporal protocols only) and how many untouched candidates each group samples
    (``evaluate.negatives_per_group`` from ``tuning.fold_negatives``). The objective is the
    evaluation itself one level down: the pipeline trained on ``inner`` (its folds carved from
    ``inner``), scored on ``valid``."""
    t = run.cfg.tuning
    if "folds" not in t.studies:
        return
    s = EvalSettings.from_params(run.tuned(), run.dataset)
    # the data set's own override, so that the chosen value outranks a top-level one
    dims = [
        S.Dim(name, ("evaluate", "overrides", run.dataset, name), "cat", choices=choices)
        for name, choices in (
            ("inner_cut_quantile", t.inner_cut_quantiles if s.protocol == "temporal_per_user" else ()),
            ("negatives_per_group", t.fold_negatives),
        )
        if len(choices) > 1
    ]
    if not dims:
        log.info("tuning %s/folds: skipped (protocol %s, one value of each choice)", run.name, s.protocol)
        return
    key = f"ndcg@{min(s.ks)}"

    def objective(x: Mapping[str, Any]) -> float:
        p = deep_merge(run.tuned(), S.as_overrides(dims, x))
        trial_dir = work / ("folds-" + "-".join(str(x[d.name]) for d in dims))
        result = evaluate_split(p, run.dataset, inner, valid, content, users, EvalSettings.from_params(p, run.dataset), trial_dir)
        return float(result.summary["models"]["pipeline"][key])

    grid = [dict(zip([d.name for d in dims], combo, strict=True)) for combo in itertools.product(*(d.choices for d in dims))]
    current = {d.name: getattr(s, d.name) for d in dims}
    best = run.study("folds", dims, objective, f"{key} (pipeline, validation)", len(grid), current, grid)
    run.overrides = deep_merge(run.overrides, S.as_overrides(dims, best))


def tune(
    params: Mapping[str, Any], dataset: str, events: pd.DataFrame, content: pd.DataFrame, users: pd.DataFrame, out: Path, name: str
) -> dict[str, Any]:
    """Run the studies; write ``out/<name>.db`` and ``out/<name>.json``; return the chosen record."""
    s = EvalSettings.from_params(params, dataset)
    t0 = time.perf_counter()
    train, _test = _train_part(events, s)
    inner, valid = _validation_split(events, s)
    out.mkdir(parents=True, exist_ok=True)
    db = out / f"{name}.db"
    db.unlink(missing_ok=True)  # a stage output: rebuilt whole, so `dvc repro` twice agrees
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    run = _Run(params, dataset, f"sqlite:///{db}", name)
    truth = relevant_items(inner, valid, s.positive_types)  # the validation users' relevant contents
    _tune_sources(run, inner, truth, content, users)
    with tempfile.TemporaryDirectory(prefix=f"tune-{name}-") as tmp:
        _tune_mix_and_ranker(run, train, truth, content, users, Path(tmp))
        _tune_folds(run, inner, valid, content, users, Path(tmp))
    chosen = {
        "dataset": dataset,
        "overrides": run.overrides,
        "studies": run.figures,
        "trials": sum(f["trials"] for f in run.figures.values()),
        "validation_users": len(truth),
    }
    # wall times only in the log: the chosen file is a DVC output that must repeat exactly
    (out / f"{name}.json").write_text(json.dumps(chosen, indent=2, sort_keys=True) + "\n")
    log.info("tuning %s: %s (%d trials, %.0f s)", name, chosen["overrides"], chosen["trials"], time.perf_counter() - t0)
    return chosen


def main(argv: Sequence[str] | None = None) -> int:
    parser = stage_parser(__doc__)
    parser.add_argument("--dataset", choices=("synthetic", "kuairand", "movielens"), default=None, help="tune on this data set instead of the pipeline's data/interim")
    args = parser.parse_args(argv)
    params, paths = stage_context(args)
    out = paths.of("tuning")
    if args.dataset is None:
        events, content, users = read_tables(paths)
        tune(params, Params.of(params).data.source, events, content, users, out, PIPELINE_NAME)
        return 0
    with tempfile.TemporaryDirectory(prefix=f"tune-{args.dataset}-") as tmp:
        events, content, users = read_tables(prepare_data(params, args.dataset, Path(tmp) / "data-root"))
        tune(params, args.dataset, events, content, users, out, args.dataset)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
