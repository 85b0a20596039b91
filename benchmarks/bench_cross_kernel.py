"""How many of the ranker's training rows change between two process settings, before and after
keyed negative sampling.

The ranker's negatives are sampled per request group. Before, a generator seeded with
(seed, cut) drew one key per row in sorted order: when one candidate of a user differed between
two machines (a near-tie at the ``per_user`` cut resolved the other way by another BLAS kernel,
thread count or FAISS build), every later key moved and the user's whole negative sample was
drawn again. Now each row's key is a keyed SipHash of (seed, cut, user, content)
(:func:`components.ranking.dataset.sample_keys`): a changed candidate changes its own row only.

Three measurements, each in two subprocesses with different ``PYTHONHASHSEED`` and thread
counts (``OMP_NUM_THREADS`` / implicit's ``num_threads`` 1 vs 2):

1. implicit ALS factors and top-100 lists (the upstream cause): how many users' lists differ;
2. the training rows of identical candidates (the sampler alone): rows differing, before / after;
3. the training rows when ``--flip`` of the users have one candidate swapped (what a differing
   kernel does to retrieval): rows differing, before / after.

    .venv/bin/python -m benchmarks.bench_cross_kernel --users 1000 --candidates 300

Measured on this machine (1,000 users, 300 candidates, 50 negatives per group, 52,000 rows):
ALS top-100 lists differing between the settings 0 of 1,000; identical candidates: 0 rows differ
before and after; 10 % of users with one candidate swapped: 1,812 rows differ before (3.48 %),
29 after (0.06 %: the swapped rows themselves, as sampled).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from components.ranking.dataset import _sample_negatives

CUT = pd.Timestamp("2026-01-14", tz="UTC")


def _candidates(n_users: int, n_cand: int, n_items: int, flip: float, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Candidates per user (and a few window positives); with ``flip``, that share of users
    has its last candidate replaced by another item (a near-tie resolved the other way)."""
    rng = np.random.default_rng(seed)
    users, items = [], []
    for u in range(n_users):
        chosen = rng.choice(n_items, size=n_cand + 1, replace=False)
        keep = chosen[:n_cand].copy()
        users += [f"u{u:05d}"] * n_cand
        items.append(keep)
    cand = pd.DataFrame({"user_id": users, "content_id": [f"c{i:05d}" for i in np.concatenate(items)]})
    if flip:
        flipped = np.random.default_rng(seed + 1).random(n_users) < flip
        last = cand.groupby("user_id").cumcount().to_numpy() == n_cand - 1
        rows = np.flatnonzero(last & np.repeat(flipped, n_cand))
        cand.loc[rows, "content_id"] = [f"x{r:07d}" for r in rows]  # an item the other side did not have
    pos = cand.groupby("user_id").head(2)[["user_id", "content_id"]]
    return cand.sort_values(["user_id", "content_id"]).reset_index(drop=True), pos.reset_index(drop=True)


def _positional(rows: pd.DataFrame, pairs: pd.DataFrame, negatives: int, seed: int) -> pd.DataFrame:
    """The sampler before: one generator draw per row in sorted order."""
    touched = rows.merge(pairs.assign(_t=True), on=["user_id", "content_id"], how="left")["_t"].notna().to_numpy()
    key = np.random.default_rng([seed, int(CUT.value // 1_000_000_000)]).random(len(rows))
    key[touched] = -1.0
    ranked = rows.assign(_key=key).sort_values(["user_id", "_key"], kind="stable")
    pos = ranked.groupby("user_id", sort=False).cumcount().to_numpy()
    n_t = ranked.groupby("user_id", sort=False)["_key"].transform(lambda k: (k < 0).sum()).to_numpy()
    return ranked[(ranked["_key"].to_numpy() < 0) | (pos < n_t + negatives)][["user_id", "content_id"]]


def _als_lists(n_users: int, n_items: int, threads: int) -> list[list[int]]:
    from implicit.als import AlternatingLeastSquares
    from scipy import sparse

    rng = np.random.default_rng(0)
    nnz = n_users * 40
    m = sparse.csr_matrix(
        (rng.random(nnz).astype(np.float32) * 5, (rng.integers(0, n_users, nnz), rng.integers(0, n_items, nnz))),
        shape=(n_users, n_items),
    )
    model = AlternatingLeastSquares(factors=32, iterations=10, random_state=42, num_threads=threads)
    model.fit(m, show_progress=False)
    ids, _ = model.recommend(np.arange(n_users), m, N=100, filter_already_liked_items=True)
    return [list(map(int, r)) for r in ids]


def child(args: argparse.Namespace) -> None:
    """One process setting: print every measurement's row set."""
    out: dict[str, object] = {"als": _als_lists(args.users, args.items, args.threads)}
    for flip in (0.0, args.flip):
        cand, pos = _candidates(args.users, args.candidates, args.items, flip if args.side == "b" else 0.0)
        rows = cand.merge(pos.assign(_p=1), how="outer", on=["user_id", "content_id"]).drop(columns="_p")
        rows = rows.sort_values(["user_id", "content_id"]).reset_index(drop=True)
        before = _positional(rows, pos, args.negatives, 42)
        after = _sample_negatives(rows, pos, CUT, args.negatives, 42)
        out[f"before_{flip}"] = sorted(map(tuple, before.to_numpy().tolist()))
        out[f"after_{flip}"] = sorted(map(tuple, after[["user_id", "content_id"]].to_numpy().tolist()))
    print(json.dumps(out))


def _run(side: str, hashseed: str, threads: int, args: argparse.Namespace) -> dict[str, list]:
    env = {**os.environ, "PYTHONHASHSEED": hashseed, "OMP_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads)}
    cmd = [sys.executable, "-m", "benchmarks.bench_cross_kernel", "--child", "--side", side, "--threads", str(threads),
           "--users", str(args.users), "--items", str(args.items), "--candidates", str(args.candidates),
           "--negatives", str(args.negatives), "--flip", str(args.flip)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parents[1])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--items", type=int, default=5000)
    ap.add_argument("--candidates", type=int, default=300)
    ap.add_argument("--negatives", type=int, default=50)
    ap.add_argument("--flip", type=float, default=0.1, help="share of users with one candidate swapped on side b")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--side", default="a")
    ap.add_argument("--child", action="store_true")
    args = ap.parse_args(argv)
    if args.child:
        child(args)
        return 0
    a = _run("a", "0", 1, args)
    b = _run("b", "12345", 2, args)
    als_diff = sum(x != y for x, y in zip(a["als"], b["als"], strict=True))
    print(f"setting a: PYTHONHASHSEED=0, 1 thread; setting b: PYTHONHASHSEED=12345, 2 threads; {args.users} users")
    print(f"1. implicit ALS top-100 lists differing: {als_diff} of {len(a['als'])}")
    for flip in (0.0, args.flip):
        what = "identical candidates" if flip == 0.0 else f"{flip:.0%} of users with one candidate swapped on b"
        for when in ("before", "after"):
            ra, rb = {tuple(r) for r in a[f"{when}_{flip}"]}, {tuple(r) for r in b[f"{when}_{flip}"]}
            how = "positional generator" if when == "before" else "keyed hash"
            print(f"{'2' if flip == 0.0 else '3'}. {what}, {when} ({how}): "
                  f"{len(ra ^ rb) // 2:6d} of {len(ra)} training rows differ ({len(ra ^ rb) / 2 / max(len(ra), 1):.2%})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
