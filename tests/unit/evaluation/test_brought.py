"""Brought splits (``--train-file/--test-file``): their own ingestion rules, whatever their name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from components.core.catalog import DataPaths
from components.core.config import BroughtSplit, ConfigError, Params
from components.data.ingest import NothingStored
from components.data.ingestion.rules import Limits
from components.evaluation import report as Rp
from components.evaluation import stage as V
from components.evaluation.splits import random_per_user
from components.retrieval.interactions import interaction_events
from tests.fixtures.params import project_params
from tests.fixtures.worlds import make_world
from tests.unit.evaluation.test_evaluate import small_params

#: The world's clock moved back so that every rating falls in 1997 (MovieLens 100K's years).
SHIFT = pd.Timedelta(days=365 * 29 + 7)


@pytest.fixture(scope="module")
def split_1990s(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path, int]:
    """A MovieLens 100K-style split (ratings 1-5, epoch seconds in 1997) as CSV files."""
    ev, content, _ = make_world(n_users_per_cat=8, n_items_per_cat=15, days=6.0)
    views = interaction_events(ev)
    views = views[views["event_type"] == "view"]
    ts = views["timestamp"] - SHIFT
    table = pd.DataFrame(
        {
            "user": views["user_id"].to_numpy(),
            "item": views["content_id"].to_numpy(),
            "rating": np.where(views["watch_ratio"].to_numpy() > 0.5, 5.0, 2.0),
            "timestamp": ((ts - pd.Timestamp(0, tz=ts.dt.tz)) // pd.Timedelta(seconds=1)).to_numpy(dtype="int64"),
        }
    )
    years = pd.to_datetime(table["timestamp"], unit="s").dt.year
    assert (years == 1997).all(), years.value_counts()
    sp = random_per_user(table, test_fraction=0.25, seed=42)
    out = tmp_path_factory.mktemp("split")
    sp.train.to_csv(out / "train.csv", index=False)
    sp.test.to_csv(out / "test.csv", index=False)
    content.assign(upload_timestamp=content["upload_timestamp"] - SHIFT).to_parquet(out / "content.parquet")
    return out / "train.csv", out / "test.csv", out / "content.parquet", len(sp.train)


def test_a_1990s_split_evaluates_end_to_end(split_1990s: tuple[Path, Path, Path, int], tmp_path: Path) -> None:
    train, test, content, n_train = split_1990s
    paths = DataPaths(tmp_path / "out")
    res = V.run_files(small_params(), train, test, paths, name="ml100k-style", content_file=content)
    assert res.summary["users_evaluated"] > 10
    # every rating kept: a view each, plus a like for every 5 (none is <= 1.5, so no hide)
    n_likes = (pd.read_csv(train)["rating"] >= 4).sum()
    assert res.summary["train_events"] == n_train + n_likes
    assert (paths.metrics / "evaluate_ml100k-style.json").exists()
    models = res.summary["models"]
    assert models[Rp.PIPELINE]["ndcg@10"] > models["popularity"]["ndcg@10"]


def test_a_bound_asked_for_quarantines_the_split_with_a_clear_error(
    split_1990s: tuple[Path, Path, Path, int], tmp_path: Path
) -> None:
    train, test, _, n_train = split_1990s
    with pytest.raises(NothingStored, match=r"dominant reason 'timestamp_before_2000' \(\d+ records, 100%\)") as exc:
        V.run_files(
            small_params(), train, test, DataPaths(tmp_path), name="movielens-like",
            rules=BroughtSplit(min_timestamp="2000-01-01T00:00:00Z"),
        )
    assert exc.value.result.quarantined == exc.value.result.n_in >= n_train


def test_cli_flag_sets_the_bound_and_reports_the_reason(
    split_1990s: tuple[Path, Path, Path, int], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train, test, _, _ = split_1990s
    argv = ["--root", str(tmp_path), "--train-file", str(train), "--test-file", str(test), "--name", "m"]
    assert V.main([*argv, "--min-timestamp", "1998-01-01"]) == 2
    err = capsys.readouterr().err
    assert "evaluate: error: no event stored" in err and "is before 1998-01-01" in err
    with pytest.raises(SystemExit):
        V.main([*argv, "--min-timestamp", "last tuesday"])
    assert "not an ISO-8601 timestamp" in capsys.readouterr().err


def test_brought_rules_ignore_the_data_set_overrides_of_the_name() -> None:
    params = project_params()
    assert params["evaluate"]["brought"]["min_timestamp"] is None
    for name in ("movielens", "synthetic", "anything"):
        rules = Params.of(params).for_dataset(name).evaluate.brought
        limits = Limits.from_params({**V.brought_params(params, rules), "data": {"source": name}})
        assert limits.min_timestamp is None
    bounded = V.brought_params(params, BroughtSplit(min_timestamp="2010-01-01"))
    assert Limits.from_params({**bounded, "data": {"source": "movielens"}}).min_timestamp == "2010-01-01"
    with pytest.raises(ConfigError, match="brought"):
        Params.of(project_params(evaluate={"brought": {"min_timestamp": "not a time"}}))
