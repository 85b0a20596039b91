"""Tuning as a stage: Optuna searches hyper-parameters on a validation part carved from the
evaluation's train part (never its test part), within ``tuning.trials`` / ``tuning.timeout_s``.

    split the events by the data set's evaluation protocol (seed base.seed)  -> train | test
      (test is dropped here)
    split train again by the same protocol (seed base.seed + 1)              -> inner | validation
    fit retrieval on inner once; each trial refits only what it changes and scores that source's
    top-10 on validation (NDCG@10, relevant = the protocol's positive types)

Searched today: EASE's ridge strength ``candidates.ease.lambda`` (log-uniform in
``tuning.ease_lambda``), the strongest baseline and the ranker's best single source, so the
pipeline's EASE source, its ``z_ease`` feature, the blend and the EASE baseline all take the tuned
value (a fair comparison: one retrieval fit serves the pipeline and every baseline). The current
value is the first trial, so the chosen one is never worse on validation.

Outputs: the study (``data/tuning/<name>.db``, Optuna's SQLite storage: every trial, resumable
and inspectable with ``optuna-dashboard``) and the chosen values (``data/tuning/<name>.json``:
params overrides plus the study's figures). ``<name>`` is ``pipeline`` for the pipeline's own
data (the DVC ``tune`` stage) or the ``--dataset``. The evaluation lays the chosen overrides over
its params when ``tuning.apply`` is true (:func:`tuned_params`).
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna
import pandas as pd

from components.core.catalog import DataPaths
from components.core.config import Params, deep_merge, stage_context, stage_parser
from components.data.prepare import prepare_data
from components.evaluation.feed import read_tables
from components.evaluation.metrics import ranking_metrics
from components.evaluation.protocols import EvalSettings, cut_of, relevant_items, split_events
from components.pipeline import Pipeline
from components.retrieval.collaborative import fit_ease

log = logging.getLogger(__name__)

PIPELINE_NAME = "pipeline"
K = 10


def _validation_split(events: pd.DataFrame, s: EvalSettings) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(inner train, validation): both from the evaluation's train part only."""
    train, _test = split_events(events, s.protocol, test_fraction=s.test_fraction, cut_quantile=s.cut_quantile, seed=s.seed)
    return split_events(train, s.protocol, test_fraction=s.test_fraction, cut_quantile=s.cut_quantile, seed=s.seed + 1)


def tune(
    params: Mapping[str, Any], dataset: str, events: pd.DataFrame, content: pd.DataFrame, users: pd.DataFrame, out: Path, name: str
) -> dict[str, Any]:
    """Run the study; write ``out/<name>.db`` and ``out/<name>.json``; return the chosen record."""
    cfg = Params.of(params)
    t = cfg.tuning
    s = EvalSettings.from_params(params, dataset)
    t0 = time.perf_counter()
    inner, valid = _validation_split(events, s)
    retr = Pipeline.of(params, dataset).fit(inner, content, users, cut_of(inner)).retriever
    truth = relevant_items(inner, valid, s.positive_types)
    users_v = sorted(truth)
    rows = retr.user_rows(users_v)
    positive = retr.inter.positive()
    ids = retr.index.content_ids
    fit_s = time.perf_counter() - t0

    def objective(trial: optuna.Trial) -> float:
        lam = trial.suggest_float("ease_lambda", t.ease_lambda[0], t.ease_lambda[1], log=True)
        retr.ease_b = fit_ease(positive, lam)
        lists = {u: [ids[int(i)] for i in c.items[:K]] for u, c in zip(users_v, retr.ease(rows, K), strict=True)}
        return float(ranking_metrics(lists, truth, ks=(K,))[f"ndcg@{K}"])

    out.mkdir(parents=True, exist_ok=True)
    db = out / f"{name}.db"
    db.unlink(missing_ok=True)  # a stage output: rebuilt whole, so `dvc repro` twice agrees
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=f"{name}-ease", storage=f"sqlite:///{db}", direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=cfg.base.seed),
    )
    current = float(cfg.for_dataset(dataset).candidates.ease.lambda_)
    if t.ease_lambda[0] <= current <= t.ease_lambda[1]:
        study.enqueue_trial({"ease_lambda": current})
    study.optimize(objective, n_trials=t.trials, timeout=t.timeout_s or None)
    best = study.best_trial
    chosen = {
        "dataset": dataset,
        "overrides": {"candidates": {"ease": {"lambda": round(float(best.params["ease_lambda"]), 3)}}},
        "validation_ndcg@10": round(float(best.value or 0.0), 6),
        "current_value": {"ease_lambda": current},
        "trials": len(study.trials),
        "validation_users": len(users_v),
    }
    # wall times only in the log: the chosen file is a DVC output that must repeat exactly
    (out / f"{name}.json").write_text(json.dumps(chosen, indent=2, sort_keys=True) + "\n")
    log.info(
        "tuning %s: %s (validation NDCG@10 %.4f, %d trials; retrieval fit %.0f s, total %.0f s)",
        name, chosen["overrides"], chosen["validation_ndcg@10"], len(study.trials), fit_s, time.perf_counter() - t0,
    )
    return chosen


def tuned_params(params: Mapping[str, Any], paths: DataPaths, name: str) -> dict[str, Any]:
    """``params`` with the chosen values of ``data/tuning/<name>.json`` laid over them (when
    ``tuning.apply`` and the file exists; otherwise as they are)."""
    path = paths.of("tuning_chosen", study=name)
    if not Params.of(params).tuning.apply or not path.exists():
        return dict(params)
    chosen = json.loads(path.read_text())
    log.info("tuned values of %s: %s", path, chosen["overrides"])
    return deep_merge(params, chosen["overrides"])


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
