"""Make a MovieLens split under a published protocol, as files for ``--train-file/--test-file``.

Writes ``train.csv`` and ``test.csv`` (``user,item,rating,timestamp``, epoch seconds) and
``content.parquet`` (the movies as the MovieLens adapter describes them: category, genre and
tag text, release year) under ``--out``. Protocols:

* ``random_per_user``: each user's ratings shuffled with ``base.seed``, the last
  ``evaluate.overrides.movielens.test_fraction`` (25 %) held out (the MovieLens protocol the
  ``evaluate_real`` stage runs);
* ``leave_last_out``: each user's latest rating held out (ties: the later row).

Then, e.g.::

    python -m benchmarks.brought_movielens --out /tmp/ml-split
    python -m components.evaluation.stage --root /tmp/ml-eval --name ml-latest-small-brought \\
        --params-of movielens --train-file /tmp/ml-split/train.csv --test-file /tmp/ml-split/test.csv \\
        --content-file /tmp/ml-split/content.parquet
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from components.core.config import load_params
from components.data.adapters.movielens import movielens_to_drop, read_movielens
from components.evaluation.splits import Split, random_per_user

SRC = Path("datasets/ml-latest-small")


def make_split(ratings: pd.DataFrame, protocol: str, seed: int, test_fraction: float) -> Split:
    """``user,item,rating,timestamp`` train and test tables (ids as the MovieLens adapter's)."""
    table = pd.DataFrame(
        {
            "user": "ml_u" + ratings["userId"].astype(str),
            "item": "ml_m" + ratings["movieId"].astype(str),
            "rating": ratings["rating"],
            "timestamp": ratings["timestamp"],
        }
    )
    if protocol == "random_per_user":
        return random_per_user(table, test_fraction=test_fraction, seed=seed)
    if protocol == "leave_last_out":
        by_time = table.sort_values(["user", "timestamp"], kind="stable")
        last = ~by_time.duplicated("user", keep="last")
        return Split(train=by_time[~last].sort_index(), test=by_time[last].sort_index())
    raise ValueError(f"unknown protocol {protocol!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", type=Path, default=SRC)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--params", type=Path, default=None)
    parser.add_argument("--protocol", choices=("random_per_user", "leave_last_out"), default="random_per_user")
    args = parser.parse_args()
    params = load_params(args.params)
    seed = int(params["base"]["seed"])
    test_fraction = float(params["evaluate"]["overrides"]["movielens"]["test_fraction"])
    ratings, movies, tags = read_movielens(args.src)
    split = make_split(ratings, args.protocol, seed, test_fraction)
    args.out.mkdir(parents=True, exist_ok=True)
    split.train.to_csv(args.out / "train.csv", index=False)
    split.test.to_csv(args.out / "test.csv", index=False)
    content = movielens_to_drop(ratings.head(0), movies, tags).content
    content.to_parquet(args.out / "content.parquet", index=False)
    print(
        json.dumps(
            {
                "protocol": args.protocol,
                "seed": seed,
                "train_rows": len(split.train),
                "test_rows": len(split.test),
                "users": int(ratings["userId"].nunique()),
                "items": len(content),
                "first_rating": str(pd.to_datetime(ratings["timestamp"].min(), unit="s")),
                "before_2000": int((ratings["timestamp"] < 946684800).sum()),
            }
        )
    )


if __name__ == "__main__":
    main()
