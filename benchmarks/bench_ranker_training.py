"""Benchmark: LightGBM vs XGBoost (hist) for the ranking model — training and scoring.

Training: one synthetic training set (default 1,000,000 rows × 80 features in groups of 50,
with structure: user / item latent factors, popularity, freshness, retrieval scores, context,
some missing values) is generated once (not timed) and written to a temporary folder. Each
(backend, objective) run then happens in a fresh child process that loads the frame and calls
:func:`components.ranking.train.train_ranker` with the main head only, the same number of rounds and
no early stopping (validation is still scored every round by both libraries), and reports:

* ``train_s``: the whole ``train_ranker`` call (sorting, float32 matrix, fit, standardisation
  statistics, validation metrics); ``fit_s``: the library's training alone (incl. binning);
* ``cpu_s``: CPU seconds of the ``train_ranker`` call (user + system, all threads);
* ``rss_loaded_gb``: resident memory once the frame is loaded; ``peak_gb``: ``ru_maxrss`` of the
  child (imports, frame and training included);
* the validation metrics on the latest 20 % of groups (NDCG@10 on engaged, AUC, log-loss).

Scoring: another child trains one 300-tree model per backend (binary, on the first 100,000
rows; not timed), then scores the same 500 × 80 block 1,000 times with one thread:
LightGBM ``Booster.predict(raw_score=True, num_threads=1)`` vs XGBoost ``inplace_predict``
(``nthread=1``), plus the full serving path ``RankerModel.predict`` on a 500-row DataFrame.

The machine's 1-minute load average before -> after is printed with each run: on a 2-core
machine another busy process slows multi-threaded OpenMP training down far more than
proportionally, so only runs whose load stayed near the training thread count (this benchmark
alone) compare fairly; rerun one configuration with ``--backends … --objectives …``.

    python -m benchmarks.bench_ranker_training                 # defaults below (< 10 min)
    python -m benchmarks.bench_ranker_training --rows 200000   # quick run
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

PROJECT_ROOT = Path(__file__).resolve().parent.parent
N_FEATURES = 80


# ---------------------------------------------------------------- data


def generate(n_rows: int, group_size: int, seed: int, out: Path) -> list[str]:
    """Write the synthetic training set as .npy files; returns the feature names."""
    rng = np.random.default_rng(seed)
    n_groups = n_rows // group_size
    n = n_groups * group_size
    n_users, n_items, d = max(1000, n_groups // 4), max(5000, n // 20), 8
    user_f = rng.normal(size=(n_users, d)).astype(np.float32)
    item_f = rng.normal(size=(n_items, d)).astype(np.float32)
    item_pop = rng.gamma(0.6, 2.0, size=n_items).astype(np.float32)
    item_age_h = rng.exponential(72.0, size=n_items).astype(np.float32)
    item_cat = rng.integers(0, 20, size=n_items)
    user_cat = rng.integers(0, 20, size=n_users)
    creator_q = rng.normal(size=n_items // 10 + 1).astype(np.float32)
    item_creator = rng.integers(0, len(creator_q), size=n_items)

    g_user = rng.integers(0, n_users, size=n_groups)
    user = np.repeat(g_user, group_size)
    item = rng.integers(0, n_items, size=n)
    u, v = user_f[user], item_f[item]
    affinity = (u * v).sum(axis=1)
    fresh = np.exp(-item_age_h[item] / 48.0)
    cat_match = (item_cat[item] == user_cat[user]).astype(np.float32)
    latent = (
        0.6 * affinity
        + 0.5 * np.log1p(item_pop[item])
        + 0.8 * fresh * cat_match
        + 0.7 * creator_q[item_creator[item]]
        - 0.5 * (item_age_h[item] > 168)
        + rng.normal(scale=1.0, size=n)
    )
    engaged = rng.random(n) < 1 / (1 + np.exp(-(latent - 2.0)))
    like = engaged & (rng.random(n) < 0.4)
    share = engaged & (rng.random(n) < 0.1)

    def noisy(x: np.ndarray, scale: float) -> np.ndarray:
        return (x + rng.normal(scale=scale, size=x.shape)).astype(np.float32)

    cols: list[np.ndarray] = []
    cols += list(noisy(u, 0.3).T)  # 8 user taste factors
    cols += list(noisy(np.log1p(rng.gamma(2.0, 20.0, size=(n_users, 8))[user]), 0.05).T)  # activity
    cols += list(noisy(v, 0.3).T)  # 8 item content factors
    cols += [
        noisy(np.log1p(item_pop[item]), 0.1),
        noisy(item_age_h[item], 1.0),
        fresh.astype(np.float32),
    ]
    cols += list(noisy(np.repeat(item_pop[item, None], 5, axis=1), 0.5).T)  # popularity windows
    cols += list(noisy(np.repeat(creator_q[item_creator[item], None], 8, axis=1), 0.7).T)  # creator
    cols += list(rng.normal(size=(8, n)).astype(np.float32))  # text dims (pure noise)
    cols += list(noisy(u * v, 0.3).T)  # 8 user × item products
    cols += [noisy(affinity, 0.5), cat_match]
    cols += list(noisy(np.repeat((0.6 * affinity)[:, None], 9, axis=1), 1.5).T)  # 9 source scores
    hour = np.repeat(rng.integers(0, 24, size=n_groups), group_size).astype(np.float32)
    cols += [hour, np.repeat(rng.integers(0, 3, size=n_groups), group_size).astype(np.float32)]
    cols += list(rng.normal(size=(N_FEATURES - len(cols), n)).astype(np.float32))  # filler noise
    X = np.asfortranarray(np.stack(cols[:N_FEATURES], axis=1))
    for j in (9, 20, 45):  # some missing values
        X[rng.random(n) < 0.1, j] = np.nan
    names = [f"x{j:02d}" for j in range(X.shape[1])]
    np.save(out / "X.npy", X)  # Fortran order: the DataFrame is built on it without a copy
    np.save(out / "group.npy", np.repeat(np.arange(n_groups), group_size))
    np.save(out / "engaged.npy", engaged.astype(np.int8))
    np.save(
        out / "relevance.npy", np.minimum(engaged.astype(int) + like + share, 3).astype(np.int8)
    )
    (out / "features.json").write_text(json.dumps(names))
    return names


def load_frame(data: Path, rows: int | None = None) -> tuple[Any, list[str]]:
    import pandas as pd

    names = json.loads((data / "features.json").read_text())
    X = np.load(data / "X.npy")[:rows]
    frame = pd.DataFrame(X, columns=names, copy=False)
    group = np.load(data / "group.npy")[:rows]
    frame["group_id"] = group
    frame["event_timestamp"] = pd.Timestamp("2026-01-05", tz="UTC") + pd.to_timedelta(
        group, unit="min"
    )
    frame["label_engaged"] = np.load(data / "engaged.npy")[:rows]
    frame["relevance"] = np.load(data / "relevance.npy")[:rows]
    return frame, names


def _rss_gb() -> float:
    import psutil

    return float(psutil.Process().memory_info().rss / 1e9)


def _cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9  # Linux: KiB


# ---------------------------------------------------------------- children


def child_train(
    data: Path, backend: str, objective: str, rounds: int, threads: int
) -> dict[str, Any]:
    from components.core.config import load_params
    from components.ranking.params import RankerParams
    from components.ranking.train import train_ranker

    frame, names = load_frame(data)
    rss_loaded = _rss_gb()
    p = RankerParams.from_params(load_params()).replace(
        backend=backend,
        objective=objective,
        heads={"engaged": 1.0},
        n_estimators=rounds,
        early_stopping_rounds=0,
        n_threads=threads,
        seed=42,
        base_feature="",
    )
    cpu0, t0 = _cpu_s(), time.perf_counter()
    model = train_ranker(frame, names, p)
    train_s, cpu_s = time.perf_counter() - t0, _cpu_s() - cpu0
    m = model.training_metrics["heads"]["engaged"]
    return {
        "backend": backend,
        "objective": objective,
        "rows": len(frame),
        "rounds": m["rounds_run"],
        "train_s": round(train_s, 1),
        "fit_s": model.timings["engaged_fit_s"],
        "cpu_s": round(cpu_s, 1),
        "rss_loaded_gb": round(rss_loaded, 2),
        "peak_gb": round(_peak_gb(), 2),
        "val_ndcg@10": round(m["ndcg@10"], 4),
        "val_auc": round(m["auc"], 4),
        "val_logloss": round(m["logloss"], 4) if "logloss" in m else None,
    }


def child_latency(data: Path, rows: int, trees: int, calls: int, batch: int) -> dict[str, Any]:
    import pandas as pd

    from components.core.config import load_params
    from components.ranking.params import RankerParams
    from components.ranking.train import train_ranker

    frame, names = load_frame(data, rows + batch)
    train, block = frame.iloc[:rows], frame.iloc[rows : rows + batch]
    Xb = np.ascontiguousarray(block[names].to_numpy(dtype=np.float32))
    out: dict[str, Any] = {"trees": trees, "batch_rows": batch, "calls": calls}
    for backend in ("lightgbm", "xgboost"):
        p = RankerParams.from_params(load_params()).replace(
            backend=backend,
            objective="binary",
            heads={"engaged": 1.0},
            n_estimators=trees,
            early_stopping_rounds=0,
            n_threads=1,
            seed=42,
            base_feature="",
        )
        model = train_ranker(train, names, p)
        model.predict_threads = 1
        booster = model.boosters["engaged"]
        if backend == "lightgbm":

            def raw(b: Any = booster) -> Any:
                return b.predict(Xb, raw_score=True, num_threads=1)
        else:
            booster.set_param({"nthread": 1})

            def raw(b: Any = booster) -> Any:
                return b.inplace_predict(Xb, predict_type="margin")

        def served(m: Any = model, df: pd.DataFrame = block) -> Any:
            return m.predict(df)

        for name, fn in (("booster", raw), ("ranker_predict", served)):
            for _ in range(20):
                fn()
            times = np.empty(calls)
            for i in range(calls):
                t0 = time.perf_counter()
                fn()
                times[i] = time.perf_counter() - t0
            out[f"{backend}_{name}_p50_ms"] = round(float(np.percentile(times, 50)) * 1e3, 3)
            out[f"{backend}_{name}_p99_ms"] = round(float(np.percentile(times, 99)) * 1e3, 3)
        out[f"{backend}_trees"] = model.heads["engaged"].best_iteration
    return out


def run_child(args: list[str]) -> dict[str, Any]:
    load_before = os.getloadavg()[0]
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_ranker_training", *args],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"child {args} failed:\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    result["load_avg_1m"] = f"{load_before:.1f}->{os.getloadavg()[0]:.1f}"
    return result


# ---------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--group-size", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--backends", nargs="+", default=["lightgbm", "xgboost"])
    ap.add_argument("--objectives", nargs="+", default=["lambdarank", "binary"])
    ap.add_argument("--latency-train-rows", type=int, default=100_000)
    ap.add_argument("--latency-trees", type=int, default=300)
    ap.add_argument("--latency-calls", type=int, default=1000)
    ap.add_argument("--latency-batch", type=int, default=500)
    ap.add_argument("--skip-training", action="store_true")
    ap.add_argument("--out", type=Path, help="also write the results as JSON here")
    ap.add_argument("--child", choices=["train", "latency"], help=argparse.SUPPRESS)
    ap.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--backend", help=argparse.SUPPRESS)
    ap.add_argument("--objective", help=argparse.SUPPRESS)
    a = ap.parse_args()

    if a.child == "train":
        print(json.dumps(child_train(a.data, a.backend, a.objective, a.rounds, a.threads)))
        return
    if a.child == "latency":
        res = child_latency(
            a.data, a.latency_train_rows, a.latency_trees, a.latency_calls, a.latency_batch
        )
        print(json.dumps(res))
        return

    work = Path(tempfile.mkdtemp(prefix="bench_ranker_"))
    try:
        t0 = time.perf_counter()
        names = generate(a.rows, a.group_size, 42, work)
        print(
            f"data: {a.rows:,} rows × {len(names)} features, groups of {a.group_size}, "
            f"generated in {time.perf_counter() - t0:.1f}s; {os.cpu_count()} CPUs, "
            f"{a.threads} training threads, {a.rounds} rounds, no early stopping",
            flush=True,
        )
        results: dict[str, Any] = {
            "rows": a.rows,
            "features": len(names),
            "training": [],
            "latency": None,
        }
        if not a.skip_training:
            for objective in a.objectives:
                for backend in a.backends:
                    r = run_child(
                        [
                            "--child",
                            "train",
                            "--data",
                            str(work),
                            "--backend",
                            backend,
                            "--objective",
                            objective,
                            "--rounds",
                            str(a.rounds),
                            "--threads",
                            str(a.threads),
                        ]
                    )
                    results["training"].append(r)
                    print(json.dumps(r), flush=True)
        lat = run_child(
            [
                "--child",
                "latency",
                "--data",
                str(work),
                "--latency-train-rows",
                str(a.latency_train_rows),
                "--latency-trees",
                str(a.latency_trees),
                "--latency-calls",
                str(a.latency_calls),
                "--latency-batch",
                str(a.latency_batch),
            ]
        )
        results["latency"] = lat
        print(json.dumps(lat), flush=True)

        print("\nTraining (fresh process each):")
        print(
            f"{'backend':9} {'objective':10} {'train_s':>8} {'fit_s':>7} {'cpu_s':>7} {'loaded_GB':>9} {'peak_GB':>8} "
            f"{'NDCG@10':>8} {'AUC':>7} {'logloss':>8}  load"
        )
        for r in results["training"]:
            ll = "" if r["val_logloss"] is None else f"{r['val_logloss']:.4f}"
            print(
                f"{r['backend']:9} {r['objective']:10} {r['train_s']:>8.1f} {r['fit_s']:>7.1f} {r['cpu_s']:>7.1f} "
                f"{r['rss_loaded_gb']:>9.2f} {r['peak_gb']:>8.2f} {r['val_ndcg@10']:>8.4f} "
                f"{r['val_auc']:>7.4f} {ll:>8}  {r['load_avg_1m']}"
            )
        print(
            f"\nScoring {lat['batch_rows']} rows × {len(names)} features, {lat['trees']} trees, "
            f"1 thread, {lat['calls']} calls (ms):"
        )
        for backend, call in (("lightgbm", "Booster.predict"), ("xgboost", "inplace_predict")):
            print(
                f"  {backend:9} {call:16} p50 {lat[f'{backend}_booster_p50_ms']:7.3f}  "
                f"p99 {lat[f'{backend}_booster_p99_ms']:7.3f} | RankerModel.predict(DataFrame) "
                f"p50 {lat[f'{backend}_ranker_predict_p50_ms']:7.3f}  "
                f"p99 {lat[f'{backend}_ranker_predict_p99_ms']:7.3f}"
            )
        if a.out:
            a.out.write_text(json.dumps(results, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
