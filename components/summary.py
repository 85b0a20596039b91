"""Print a short summary of what each pipeline stage produced (reads ``metrics/*.json``)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from components.core.catalog import DataPaths


def _load(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.exists() else None


def summarise(paths: DataPaths) -> list[str]:
    """One block of lines per stage whose metrics exist."""
    lines: list[str] = []
    ing, ing_t = _load(paths.of("metrics_ingest")), _load(paths.of("metrics_ingest_throughput"))
    if ing:
        lines.append(
            f"ingest      {ing['n_in']:>10,} records in = {ing['stored']:,} stored + "
            f"{ing['quarantined']:,} quarantined + {ing['duplicates']:,} duplicates"
            f"  ({ing['unknown_content']:,} flagged unknown content)"
        )
        if ing.get("reasons"):
            reasons = ", ".join(f"{k}={v}" for k, v in sorted(ing["reasons"].items()))
            lines.append(f"            quarantine reasons: {reasons}")
        if ing_t:
            lines.append(f"            {ing_t['events_per_second']:,.0f} events/s")
        lines.append(f"            -> {paths.raw_events} (Parquet, partitioned by event_date)")
    pre, pre_t = _load(paths.of("metrics_preprocess")), _load(paths.of("metrics_preprocess_throughput"))
    if pre:
        lines.append(
            f"preprocess  {pre['events_out']:>10,} clean events, {pre['sessions']:,} sessions of "
            f"{pre['users']:,} users (mean {pre['mean_session_events']:.1f} events/session, "
            f"median {pre['median_session_duration_s']:.0f} s); "
            f"{pre['contents_duration_imputed']:,} of {pre['contents']:,} durations imputed"
        )
        if pre_t:
            lines.append(f"            {pre_t['events_per_second']:,.0f} events/s")
        lines.append(f"            -> {paths.interim}/{{events,sessions,content,users}}.parquet")
    feat = _load(paths.of("metrics_features"))
    if feat:
        rows = ", ".join(f"{k} {v:,}" for k, v in sorted(feat.get("rows", {}).items()))
        lines.append(
            f"features    snapshot rows: {rows} ({feat.get('first_snapshot', '?')[:10]} .. "
            f"{feat.get('last_snapshot', '?')[:10]})"
        )
        lines.append(f"            -> {paths.features}/*.parquet")
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
    rk = _load(paths.of("metrics_ranking"))
    if rk:
        combined = (rk.get("training", {}) or {}).get("combined", {}) or {}
        lines.append(
            f"train       ranker {rk.get('version', '?')} on {rk.get('rows', 0):,} rows in "
            f"{rk.get('groups', 0):,} groups, {rk.get('features', 0)} features; validation "
            f"AUC {combined.get('auc', float('nan')):.3f}, NDCG@10 {combined.get('ndcg@10', float('nan')):.3f}"
        )
    evaluations = [paths.of("metrics_evaluate")] + [
        paths.of("metrics_evaluate_dataset", dataset=d) for d in ("kuairand", "movielens")
    ]
    for path in evaluations:
        ev = _load(path) or {}
        models = ev.get("models", {})
        if "pipeline" in models:
            best = ev.get("best_baseline", "")
            lines.append(
                f"evaluate    {ev.get('dataset', '?')} ({ev.get('protocol', '?')}): NDCG@10 pipeline "
                f"{models['pipeline']['ndcg@10']:.4f} vs best baseline {best} {models.get(best, {}).get('ndcg@10', float('nan')):.4f}"
            )
    drift = _load(paths.of("metrics_drift"))
    if drift:
        lines.append(f"drift       {drift.get('reason', '?')}")
        lines.append(f"            -> {paths.of('report_drift')}")
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
