"""Offline evaluation stage: the whole pipeline and standard baselines under one protocol.

``python -m components.evaluation.stage`` evaluates the pipeline's own data (``data/interim``,
the ``evaluate`` stage), a named data set ingested into a throw-away folder (``--dataset``, the
``evaluate_real`` stages), a split brought as files (``--train-file``/``--test-file``), k-fold
cross-validation (``--cv``), or writes a batch feed from the trained artefacts
(``--feed-users``).

The protocol (splits, training on train only, nested validation folds) is
:mod:`components.evaluation.protocols`; the lists, metrics and report
:mod:`components.evaluation.report`; the feed :mod:`components.evaluation.feed`. All of them run
the model pipeline through :class:`components.pipeline.Pipeline`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from components.core.catalog import DataPaths, check_name
from components.core.config import BroughtSplit, Params, stage_context, stage_parser
from components.core.io import write_metrics
from components.core.tuned import PIPELINE_STUDY, tuned_params
from components.data.adapters.brought import table_to_drop
from components.data.ingestion.pseudonyms import hmac_key_from_env
from components.data.ingestion.rules import IngestError
from components.data.prepare import ingest_drop, prepare_data
from components.data.realdata import write_drop
from components.evaluation.feed import batch_feed, read_tables
from components.evaluation.protocols import (
    PROTOCOLS,
    EvalSettings,
    cross_validate,
    evaluate_events,
    evaluate_repeated,
)
from components.evaluation.report import EvalResult, write_outputs
from components.evaluation.splits import read_split

DATASETS = ("synthetic", "kuairand", "movielens")


def run(params: Mapping[str, Any], paths: DataPaths) -> EvalResult:
    """Stage: evaluate the pipeline's own data (``data.source``) from ``data/interim``, with the
    values the ``tune`` stage chose (:func:`components.core.tuned.tuned_params`)."""
    params = tuned_params(params, paths, PIPELINE_STUDY)
    dataset = Params.of(params).data.source
    events, content, users = read_tables(paths)
    with tempfile.TemporaryDirectory(prefix="evaluate-") as tmp:
        result = evaluate_events(params, dataset, events, content, users, Path(tmp))
    write_outputs(result, paths)
    return result


def run_dataset(params: Mapping[str, Any], dataset: str, paths: DataPaths) -> EvalResult:
    """Evaluate one named data set, ingested and preprocessed into a throw-away folder (with
    ``data/tuning/<dataset>.json``'s values when ``python -m components.tuning.stage --dataset``
    wrote one)."""
    params = tuned_params(params, paths, dataset)
    with tempfile.TemporaryDirectory(prefix=f"evaluate-{dataset}-") as tmp:
        prepared = prepare_data(params, dataset, Path(tmp) / "data-root")
        events, content, users = read_tables(prepared)
        result = evaluate_events(params, dataset, events, content, users, Path(tmp))
    write_outputs(result, paths, dataset)
    return result


def _read_content(content_file: Path | None) -> pd.DataFrame | None:
    if content_file is None:
        return None
    if content_file.suffix == ".parquet":
        return pd.read_parquet(content_file)
    return pd.read_csv(content_file, dtype={"content_id": str})


def brought_params(params: Mapping[str, Any], rules: BroughtSplit) -> dict[str, Any]:
    """``params`` whose ``ingest`` section validates a brought split: the base bounds, no data
    set's override (a split named ``movielens`` gets no special treatment), and the split's own
    timestamp bound (``None``: none; the 2000 bound is the short-video log's, not a published
    data set's)."""
    raw = Params.of(params).model_dump(by_alias=True)
    raw["ingest"] = {**raw["ingest"], "min_timestamp": rules.min_timestamp, "overrides": {}}
    return raw


def run_files(
    params: Mapping[str, Any],
    train_file: Path,
    test_file: Path,
    paths: DataPaths,
    *,
    name: str = "files",
    content_file: Path | None = None,
    inner_protocol: str = "random_per_user",
    positive_types: Sequence[str] = (),
    rules: BroughtSplit | None = None,
    params_of: str | None = None,
) -> EvalResult:
    """Bring your own split: ``user,item,rating,timestamp`` tables (CSV or Parquet) for train and
    test. Both go through the project's ingestion (validation, pseudonymisation) and
    preprocessing together; the pipeline is then trained on the train part only (the ranker's
    validation parts carved from it by ``inner_protocol``) and scored on the test part.

    ``params_of`` names the data set whose ``overrides`` configure the run (default ``name``),
    so that a split of e.g. MovieLens runs as ``--dataset movielens`` does while its outputs keep
    their own name. ``rules`` (default ``evaluate.brought``) bound the split's timestamps,
    whatever the names:
    see :func:`brought_params`. A split of which no record passes is a
    :class:`~components.data.ingest.NothingStored` error naming the dominant reason."""
    check_name(name, "--name")  # before any work: the name becomes part of the output paths
    config = params_of or name
    rules = rules if rules is not None else Params.of(params).for_dataset(config).evaluate.brought
    drop = table_to_drop({"train": read_split(train_file), "test": read_split(test_file)}, _read_content(content_file))
    s = EvalSettings.from_params(params, config).replace(protocol=inner_protocol, positive_types=tuple(positive_types))
    with tempfile.TemporaryDirectory(prefix="evaluate-files-") as tmp:
        root = Path(tmp)
        write_drop(drop, root / "drop")
        prepared = ingest_drop(
            brought_params(params, rules), config, root / "drop", root / "data-root", key=b"evaluation-split"
        )
        events, content, users = read_tables(prepared)
        part = events["event_id"].astype(str).str.split("-", n=1).str[0].to_numpy()
        train, test = events[part != "test"], events[part == "test"]
        result = evaluate_repeated(params, config, lambda _: (train, test), content, users, s, root)
    write_outputs(result, paths, name)
    return result


# ---------------------------------------------------------------------------------------------
# CLI


def _split_name(value: str) -> str:
    try:
        return check_name(value, "--name")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _min_timestamp(value: str) -> str | None:
    if value.strip().lower() in ("none", "null", ""):
        return None
    try:
        return BroughtSplit(min_timestamp=value).min_timestamp
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 timestamp: {value!r}") from exc


def _parser() -> argparse.ArgumentParser:
    parser = stage_parser(__doc__)
    parser.add_argument("--dataset", choices=DATASETS, default=None, help="evaluate this data set instead of the pipeline's data/interim")
    parser.add_argument("--train-file", type=Path, help="bring your own split: train table (user,item,rating,timestamp)")
    parser.add_argument("--test-file", type=Path, help="bring your own split: test table")
    parser.add_argument("--content-file", type=Path, help="optional content table for --train-file (content_id, category, tags, ...)")
    parser.add_argument("--name", default="files", type=_split_name, help="name of a brought split (output suffix; letters, digits, _ - . @ +)")
    parser.add_argument("--inner-protocol", choices=PROTOCOLS, default="random_per_user", help="how the ranker's validation parts are carved from a brought train part")
    parser.add_argument("--positive-types", nargs="*", default=[], help="relevant event types of a brought split (default: any interaction)")
    parser.add_argument("--params-of", choices=DATASETS, default=None, help="configure a brought split with this data set's overrides (its outputs keep --name)")
    parser.add_argument("--min-timestamp", type=_min_timestamp, default=argparse.SUPPRESS, help="earliest timestamp a brought split keeps (ISO-8601, or 'none' for no bound); default evaluate.brought.min_timestamp")
    parser.add_argument("--cv", type=int, default=0, help="k-fold cross-validation (per user) of the data set instead of the hold-out")
    parser.add_argument("--feed-users", type=Path, help="batch mode: a file with one user id per line; writes the top-K feed CSV")
    parser.add_argument("--k", type=int, default=10, help="feed length in batch mode")
    parser.add_argument("--out", type=Path, help="batch mode: output CSV (default reports/feed.csv)")
    return parser


def _feed(args: argparse.Namespace, params: Mapping[str, Any], paths: DataPaths) -> int:
    wanted = [line.strip() for line in args.feed_users.read_text().splitlines() if line.strip()]
    feed = batch_feed(params, paths, wanted, args.k, hmac_key_from_env())
    out = args.out or paths.of("feed")
    out.parent.mkdir(parents=True, exist_ok=True)
    feed.to_csv(out, index=False)
    print(f"feed: {feed['user_id'].nunique()} users x top {args.k} -> {out}")
    return 0


def _cross_validation(args: argparse.Namespace, params: Mapping[str, Any], paths: DataPaths) -> int:
    dataset = args.dataset or Params.of(params).data.source
    with tempfile.TemporaryDirectory(prefix="evaluate-cv-") as tmp:
        source = prepare_data(params, dataset, Path(tmp) / "data-root") if args.dataset else paths
        events, content, users = read_tables(source)
        cv = cross_validate(params, dataset, events, content, users, args.cv, Path(tmp))
    write_metrics(paths.of("metrics_evaluate_cv", dataset=dataset), cv)
    for name, m in cv["models"].items():
        print(f"{name:12s} ndcg@10 {m['ndcg@10']['mean']:.4f} ± {m['ndcg@10']['ci95']:.4f} (95 % t over folds)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    params, paths = stage_context(args)
    if args.feed_users:
        return _feed(args, params, paths)
    if args.cv:
        return _cross_validation(args, params, paths)
    if args.train_file or args.test_file:
        if not (args.train_file and args.test_file):
            parser.error("--train-file and --test-file go together")
        rules = BroughtSplit(min_timestamp=args.min_timestamp) if hasattr(args, "min_timestamp") else None
        try:
            result = run_files(
                params, args.train_file, args.test_file, paths, name=args.name, content_file=args.content_file,
                inner_protocol=args.inner_protocol, positive_types=args.positive_types, rules=rules,
                params_of=args.params_of,
            )
        except IngestError as exc:
            print(f"evaluate: error: {exc}", file=sys.stderr)
            return 2
    else:
        result = run_dataset(params, args.dataset, paths) if args.dataset else run(params, paths)
    print(result.report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
