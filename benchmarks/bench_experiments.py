"""Calibration of the experiment statistics and the off-policy estimators on simulated data
with known truth; prints the figures.

* A/A: ``--aa-runs`` experiments of ``--users`` users (a new salt each, both arms engaged with
  the same probability, per-user Binomial outcomes): the share significant at alpha.
* SRM: the same A/A assignment with a share of one arm's users lost: how often the
  chi-square check flags it at ``experiments.srm_alpha``; and how often it flags a clean one.
* OPE: bias, RMSE and interval coverage of IPS / SNIPS / DR over ``--ope-runs`` simulated logs
  (:func:`components.evaluation.ope_check.coverage_study`).

    .venv/bin/python -m benchmarks.bench_experiments --aa-runs 1000 --ope-runs 100
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from components.core.config import load_config
from components.evaluation.ope_check import coverage_study
from components.experiments.assign import assign_arms
from components.experiments.stats import srm_check, welch_effect


def aa_and_srm(
    seed: int, runs: int, users: int, alpha: float, srm_alpha: float, loss: float
) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    ids = [f"u{i}" for i in range(users)]
    sig = srm_clean = srm_bad = 0
    for r in range(runs):
        arm = assign_arms(ids, f"aa-{r}", [("a", 0.5), ("b", 0.5)])
        rate = rng.binomial(20, 0.1, size=users) / 20
        e = welch_effect(rate[arm == "b"], rate[arm == "a"], alpha)
        sig += e.p_value < alpha
        counts = pd.Series(arm).value_counts().to_dict()
        srm_clean += srm_check(counts, {"a": 0.5, "b": 0.5}, srm_alpha).mismatch
        kept = arm[(arm == "a") | (rng.random(users) >= loss)]
        srm_bad += srm_check(
            pd.Series(kept).value_counts().to_dict(), {"a": 0.5, "b": 0.5}, srm_alpha
        ).mismatch
    return {"aa_rate": sig / runs, "srm_clean": srm_clean / runs, "srm_corrupted": srm_bad / runs}


def main() -> None:
    cfg = load_config()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--aa-runs", type=int, default=1000)
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument(
        "--loss", type=float, default=0.05, help="share of arm b's users lost (SRM)"
    )
    parser.add_argument("--ope-runs", type=int, default=100)
    parser.add_argument("--ope-n", type=int, default=3000)
    args = parser.parse_args()
    e = cfg.experiments
    t0 = time.perf_counter()
    r = aa_and_srm(cfg.base.seed, args.aa_runs, args.users, e.alpha, e.srm_alpha, args.loss)
    print(
        f"A/A: {args.aa_runs} runs x {args.users} users: significant at alpha={e.alpha} in {r['aa_rate']:.3f} of runs"
    )
    print(
        f"SRM (alpha {e.srm_alpha}): flagged {r['srm_clean']:.3f} of clean runs, "
        f"{r['srm_corrupted']:.3f} of runs with {args.loss:.0%} of arm b lost"
    )
    print(f"  ({time.perf_counter() - t0:.1f} s)")
    if args.ope_runs <= 0:
        return
    t0 = time.perf_counter()
    table = coverage_study(cfg.base.seed, args.ope_runs, args.ope_n, e.ope_bootstrap, e.alpha)
    print(
        f"OPE: {args.ope_runs} simulated logs x {args.ope_n} decisions, {e.ope_bootstrap} bootstraps"
    )
    print(table.round(4).to_string())
    print(f"  ({time.perf_counter() - t0:.1f} s)")


if __name__ == "__main__":
    main()
