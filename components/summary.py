"""Print a short summary of what each pipeline stage produced (reads ``metrics/*.json``)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from components.core.catalog import DataPaths


def _load(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.exists() else None


def _ingest(paths: DataPaths) -> list[str]:
    ing, ing_t = _load(paths.of("metrics_ingest")), _load(paths.of("metrics_ingest_throughput"))
    if not ing:
        return []
    lines = [
        f"ingest      {ing['n_in']:>10,} records in = {ing['stored']:,} stored + "
        f"{ing['quarantined']:,} quarantined + {ing['duplicates']:,} duplicates"
        f"  ({ing['unknown_content']:,} flagged unknown content)"
    ]
    if ing.get("reasons"):
        reasons = ", ".join(f"{k}={v}" for k, v in sorted(ing["reasons"].items()))
        lines.append(f"            quarantine reasons: {reasons}")
    if ing_t:
        lines.append(f"            {ing_t['events_per_second']:,.0f} events/s")
    lines.append(f"            -> {paths.raw_events} (Parquet, partitioned by event_date)")
    return lines


def _preprocess(paths: DataPaths) -> list[str]:
    pre, pre_t = _load(paths.of("metrics_preprocess")), _load(paths.of("metrics_preprocess_throughput"))
    if not pre:
        return []
    lines = [
        f"preprocess  {pre['events_out']:>10,} clean events, {pre['sessions']:,} sessions of "
        f"{pre['users']:,} users (mean {pre['mean_session_events']:.1f} events/session, "
        f"median {pre['median_session_duration_s']:.0f} s); "
        f"{pre['contents_duration_imputed']:,} of {pre['contents']:,} durations imputed"
    ]
    if pre_t:
        lines.append(f"            {pre_t['events_per_second']:,.0f} events/s")
    lines.append(f"            -> {paths.interim}/{{events,sessions,content,users}}.parquet")
    return lines


def _features(paths: DataPaths) -> list[str]:
    feat = _load(paths.of("metrics_features"))
    if not feat:
        return []
    rows = ", ".join(f"{k} {v:,}" for k, v in sorted(feat.get("rows", {}).items()))
    return [
        f"features    snapshot rows: {rows} ({feat.get('first_snapshot', '?')[:10]} .. "
        f"{feat.get('last_snapshot', '?')[:10]})",
        f"            -> {paths.features}/*.parquet",
    ]


def _feast(paths: DataPaths) -> list[str]:
    """The feast_apply and materialize stages."""
    lines = []
    fa = _load(paths.of("metrics_feast_apply"))
    if fa:
        services = ", ".join(f"{k} ({v} features)" for k, v in sorted(fa.get("feature_services", {}).items()))
        lines.append(
            f"feast_apply {len(fa.get('feature_views', {}))} feature views, "
            f"{len(fa.get('entities', []))} entities; services {services}"
        )
    mat = _load(paths.of("metrics_materialize"))
    if mat:
        lines.append(
            f"materialize {mat.get('rows', 0):,} rows into the {mat.get('online_store', '?')} online store "
            f"({len(mat.get('views', []))} views)"
        )
    return lines


def _retrieval(paths: DataPaths) -> list[str]:
    """The embeddings and candidates stages."""
    lines = []
    emb = _load(paths.of("metrics_embeddings"))
    if emb:
        lines.append(
            f"embeddings  {emb.get('users', 0):,} users, {emb.get('contents', 0):,} contents "
            f"({emb.get('cold_contents', 0):,} cold-start); unified dim {emb.get('unified_dim', '?')}, "
            f"version {emb.get('version', '?')}"
        )
    cand = _load(paths.of("metrics_candidates"))
    if cand:
        ev = cand.get("evaluation", {})
        rec = ev.get("recall", {})
        merged, pop = rec.get("merged", {}), rec.get("popularity", {})
        lines.append(f"candidates  {cand.get('candidates', 0):,} candidates written")
        if merged and pop:
            lines.append(
                "            hold-out recall merged vs popularity: "
                + ", ".join(f"{k} {merged[k]:.3f} vs {pop.get(k, 0):.3f}" for k in sorted(merged, key=lambda x: int(x[1:])))
            )
    return lines


def _train(paths: DataPaths) -> list[str]:
    rk = _load(paths.of("metrics_ranking"))
    if not rk:
        return []
    combined = (rk.get("training", {}) or {}).get("combined", {}) or {}
    return [
        f"train       ranker {rk.get('version', '?')} on {rk.get('rows', 0):,} rows in "
        f"{rk.get('groups', 0):,} groups, {rk.get('features', 0)} features; validation "
        f"AUC {combined.get('auc', float('nan')):.3f}, NDCG@10 {combined.get('ndcg@10', float('nan')):.3f}"
    ]


def _evaluate(paths: DataPaths) -> list[str]:
    """The default evaluation, then the real data sets'."""
    lines = []
    evaluations = [paths.of("metrics_evaluate")] + [
        paths.of("metrics_evaluate_dataset", dataset=d) for d in ("kuairand", "movielens")
    ]
    for path in evaluations:
        ev = _load(path) or {}
        models = ev.get("models", {})
        if "pipeline" in models:
            best = ev.get("best_baseline", "")
            half = ev.get("intervals", {})
            n = ev.get("repeats", 1)

            lines.append(
                f"evaluate    {ev.get('dataset', '?')} ({ev.get('protocol', '?')}): NDCG@10 pipeline "
                f"{_ndcg(models, half, 'pipeline', n)} vs best baseline {best} {_ndcg(models, half, best, n)} "
                + (f"(95 % over {n} repeats)" if n > 1 else "(one repeat, no interval: evaluate.repeats)")
            )
    return lines


def _ndcg(models: dict[str, Any], half: dict[str, Any], model: str, repeats: int) -> str:
    """NDCG@10's mean, with its 95 % half-width when there are repeats."""
    value = f"{models.get(model, {}).get('ndcg@10', float('nan')):.4f}"
    return value + (f" ± {half.get(model, {}).get('ndcg@10', 0.0):.4f}" if repeats > 1 else "")


def _drift(paths: DataPaths) -> list[str]:
    drift = _load(paths.of("metrics_drift"))
    if not drift:
        return []
    return [f"drift       {drift.get('reason', '?')}", f"            -> {paths.of('report_drift')}"]


def _deployment(paths: DataPaths) -> list[str]:
    """The gates' verdicts and the registry's slots."""
    lines = []
    for gate in ("offline", "shadow", "canary"):
        g = _load(paths.of("gate_verdict", gate=gate))
        if g:
            lines.append(f"gate        {gate:8s} {g.get('candidate') or '-'}: {g.get('decision')} ({g.get('reason')})")
    registry_db = paths.of("registry_db")
    if registry_db.exists():
        from components.deploy.registry import ModelRegistry

        with ModelRegistry(paths) as reg:
            dep = reg.deployment()
        slots = ", ".join(
            f"{name} {rec.version if rec else '-'}"
            for name, rec in (("production", dep.production), ("canary", dep.canary), ("shadow", dep.shadow))
        )
        lines.append(f"registry    {slots} (revision {dep.revision})")
    return lines


SECTIONS: tuple[Callable[[DataPaths], list[str]], ...] = (
    _ingest,
    _preprocess,
    _features,
    _feast,
    _retrieval,
    _train,
    _evaluate,
    _drift,
    _deployment,
)


def summarise(paths: DataPaths) -> list[str]:
    """One block of lines per stage whose metrics exist (in pipeline order)."""
    return [line for section in SECTIONS for line in section(paths)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", default=None)
    args = parser.parse_args(argv)
    paths = DataPaths(Path(args.root)) if args.root else DataPaths()
    lines = summarise(paths)
    print("pipeline summary" if lines else "no stage has produced metrics yet: run `make demo`")
    for line in lines:
        print("  " + line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
