"""The evaluation's lists, metrics, summary, Markdown report and output files.

Lists: the pipeline's (top K by the ranker's score) and the baselines' from the same retrieval
fit, with the same exclusions and users (:func:`baseline_lists`). Metrics
(:mod:`components.evaluation.metrics` conventions): Precision, Recall, NDCG, MAP and HitRate at
``ks``; catalogue coverage, intra-list diversity (unified content vectors), novelty and
creator-exposure Gini of the top-``beyond_k`` lists; AUC and log-loss of each ranker head on the
labelled test candidates. Curves of precision / recall / NDCG at every K up to ``curve_max_k``
go to one CSV per model for ``dvc plots``; the side-by-side table to ``reports/``.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import log_loss, roc_auc_score

from components.core.catalog import DataPaths
from components.core.io import write_metrics
from components.evaluation.intervals import (
    aggregate_models,
    bootstrap_lift,
    fmt,
    lift_text,
    paired_lift,
)
from components.evaluation.metrics import (
    catalogue_coverage,
    exposure_gini,
    intra_list_diversity,
    novelty,
    ranking_metrics,
    user_metrics,
)
from components.ranking.model import RankerModel
from components.retrieval.collaborative import fit_ease
from components.retrieval.interactions import interaction_events
from components.retrieval.retriever import Retriever
from components.retrieval.sources import Candidates

#: every run's baselines; ``ease_plain`` (Steck's EASE) joins them when the EASE source counts a
#: sequence window (``candidates.ease.window``)
BASELINES = ("popularity", "recent", "item_knn", "mf", "ease", "candidates")
PIPELINE = "pipeline"
#: the ranker's own ordering, without the blend with the best source (the pipeline serves the blend)
RANKER_ALONE = "ranker_alone"
METRIC_ORDER = ("ndcg", "map", "precision", "recall", "hit_rate")


@dataclass
class EvalResult:
    dataset: str
    summary: dict[str, Any]
    curves: pd.DataFrame
    report: str
    #: NDCG at the first K of each scored user, per model (one repeat's; the paired bootstrap)
    per_user: dict[str, dict[str, float]] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Lists


def _lists_from(retr: Retriever, users: Sequence[str], lists: Sequence[Candidates], k: int) -> dict[str, list[str]]:
    ids = retr.index.content_ids
    return {u: [ids[int(i)] for i in c.items[:k]] for u, c in zip(users, lists, strict=True)}


def baseline_lists(retr: Retriever, users: Sequence[str], k: int, candidates: pd.DataFrame) -> dict[str, dict[str, list[str]]]:
    """Each baseline's top ``k`` per user; ``candidates``: the quota-merged list by rank."""
    rows = retr.user_rows(list(users))
    out = {
        "popularity": _lists_from(retr, users, retr.popular(rows, k), k),
        "item_knn": _lists_from(retr, users, retr.item_knn(rows, k), k),
        "mf": _lists_from(retr, users, retr.mf(rows, k), k),
    }
    if retr.recent is not None:
        out["recent"] = _lists_from(retr, users, retr.recent_for(rows, k), k)
    if retr.ease_b is not None:
        out["ease"] = _lists_from(retr, users, retr.ease(rows, k), k)
        if retr.ease_seq is not None:
            # the pipeline's EASE counts pairs consumed close together: Steck's plain EASE (same
            # lambda) is scored beside it, so the pipeline is also compared with the published model
            plain = dataclasses.replace(retr, ease_b=fit_ease(retr.inter.positive(), retr.p.ease_lambda))
            out["ease_plain"] = _lists_from(retr, users, plain.ease(rows, k), k)
    ordered = candidates.sort_values(["user_id", "rank"], kind="stable")
    merged = {u: g["content_id"].head(k).tolist() for u, g in ordered.groupby("user_id", sort=False)}
    out["candidates"] = {u: merged.get(u, []) for u in users}
    return out


def by_score(scored: pd.DataFrame) -> pd.DataFrame:
    """Rows per user, best score first (ties by content id)."""
    return scored.sort_values(["user_id", "score", "content_id"], ascending=[True, False, True], kind="stable")


def ranked_lists(scored: pd.DataFrame, k: int) -> dict[str, list[str]]:
    """Top ``k`` per user by ``score`` (ties by content id)."""
    order = by_score(scored)
    return {str(u): g["content_id"].head(k).tolist() for u, g in order.groupby("user_id", sort=False)}


# ---------------------------------------------------------------------------------------------
# Metrics


def beyond_accuracy(retr: Retriever, lists: Mapping[str, Sequence[str]], train: pd.DataFrame, k: int) -> dict[str, float | None]:
    top = {u: list(v)[:k] for u, v in lists.items()}
    pos = {c: i for i, c in enumerate(retr.index.content_ids[: retr.n_fit])}
    vec = retr.model.item_unified
    ild = [
        intra_list_diversity(items, {c: vec[pos[c]] for c in items if c in pos}) for items in top.values() if len(items) > 1
    ]
    tr = interaction_events(train)
    pop = tr.groupby(tr["content_id"].astype(str))["user_id"].nunique().to_dict()
    creator = dict(zip(retr.items["content_id"].astype(str), retr.items["creator_id"].astype(object), strict=True))
    creator = {c: v for c, v in creator.items() if v is not None and v == v and v != "unknown"}
    return {
        f"coverage@{k}": catalogue_coverage(top, retr.n_fit),
        f"ild@{k}": float(np.mean(ild)) if ild else 0.0,
        f"novelty@{k}": novelty(top, pop, int(tr["user_id"].nunique())),
        # None when the data set has no creators (KuaiRand subset, MovieLens)
        f"exposure_gini@{k}": exposure_gini(top, creator, set(creator.values())) if creator else None,
    }


def curves(lists: Mapping[str, Sequence[str]], truth: Mapping[str, set[str]], max_k: int) -> list[dict[str, float]]:
    out = []
    for k in range(1, max_k + 1):
        m = ranking_metrics(lists, truth, ks=(k,))
        out.append({"k": k, "precision": m[f"precision@{k}"], "recall": m[f"recall@{k}"], "ndcg": m[f"ndcg@{k}"]})
    return out


def head_metrics(model: RankerModel, scored: pd.DataFrame) -> dict[str, dict[str, float]]:
    """AUC and log-loss of each binary head on labelled test candidates."""
    margins = model.predict_heads(scored[model.feature_cols], output="margin")
    out: dict[str, dict[str, float]] = {}
    for head, m in margins.items():
        col = "label_engaged" if head == "engaged" else f"label_{head}"
        if head == "watch_ratio" or col not in scored:
            continue
        y = scored[col].to_numpy(dtype=float)
        if len(np.unique(y)) < 2:
            continue
        entry = {"auc": float(roc_auc_score(y, m)), "positive_rate": float(y.mean())}
        if model.heads[head].kind == "binary":
            entry["logloss"] = float(log_loss(y, 1.0 / (1.0 + np.exp(-np.asarray(m, dtype=float))), labels=[0, 1]))
        out[head] = entry
    return out


def model_metrics(
    retr: Retriever,
    lists: Mapping[str, Mapping[str, Sequence[str]]],
    truth: Mapping[str, set[str]],
    train: pd.DataFrame,
    *,
    ks: Sequence[int],
    beyond_k: int,
    curve_max_k: int,
) -> tuple[dict[str, dict[str, float | None]], pd.DataFrame]:
    """Every model's rounded metrics, and the curves of every model (one row per model and K)."""
    models: dict[str, dict[str, float | None]] = {}
    curve_rows = []
    for name, lst in lists.items():
        m: dict[str, float | None] = {**ranking_metrics(lst, truth, ks=ks), **beyond_accuracy(retr, lst, train, beyond_k)}
        models[name] = {k: (round(float(v), 6) if v is not None else None) for k, v in m.items()}
        curve_rows += [{"model": name, **{k: round(float(v), 6) for k, v in c.items()}} for c in curves(lst, truth, curve_max_k)]
    return models, pd.DataFrame(curve_rows)


def candidate_recall(cand: pd.DataFrame, truth: Mapping[str, set[str]]) -> float:
    """Mean share of a user's relevant items among the ranked candidates."""
    shares = [len(truth[str(u)] & set(g["content_id"])) / len(truth[str(u)]) for u, g in cand.groupby("user_id") if str(u) in truth]
    return round(float(np.mean(shares)), 6)


def ranker_summary(model: RankerModel, frame: pd.DataFrame) -> dict[str, Any]:
    """The ranker and the training set it was trained on (carved from train only)."""
    candidates = frame["in_candidates"] == 1
    return {
        "version": model.version,
        "backend": model.backend,
        "objective": model.objective,
        "training_rows": int(candidates.sum()),
        "training_groups": int(frame.loc[candidates, "group_id"].nunique()),
        "positives_missed_by_retrieval": int((frame["in_candidates"] == 0).sum()),
        "features": len(model.feature_cols),
        "validation": model.training_metrics.get("combined", {}),
        "blend": model.training_metrics.get("blend", {}),
    }


def comparison(models: Mapping[str, Mapping[str, float | None]], k0: int) -> dict[str, Any]:
    """The best baseline on NDCG@``k0`` and the pipeline's lift over it."""

    def ndcg_of(model: str) -> float:
        return float(models[model][f"ndcg@{k0}"] or 0.0)

    best_base = max((b for b in models if b not in (PIPELINE, RANKER_ALONE)), key=ndcg_of)
    best_val = ndcg_of(best_base)
    return {
        "best_baseline": best_base,
        f"ndcg@{k0}_lift_over_best_baseline": round(ndcg_of(PIPELINE) / best_val - 1.0, 6) if best_val > 0 else None,
    }


def user_ndcg(
    lists: Mapping[str, Mapping[str, Sequence[str]]], truth: Mapping[str, set[str]], k: int
) -> dict[str, dict[str, float]]:
    """NDCG@``k`` of every scored user, per model (a missing list scores 0)."""
    out: dict[str, dict[str, float]] = {}
    for name, lst in lists.items():
        out[name] = {}
        for u, rel in truth.items():
            m = user_metrics(lst.get(u, []), rel, k)
            if m is not None:
                out[name][u] = m.ndcg
    return out


def combine_repeats(
    summaries: Sequence[Mapping[str, Any]], per_user: Sequence[Mapping[str, Mapping[str, float]]], k0: int, seed: int
) -> dict[str, Any]:
    """One summary of the repeats: the first repeat's descriptive fields, every model's metrics
    as the mean over repeats with ``intervals`` (95 % t half-widths), the per-repeat NDCG@k0,
    and the lift over the best baseline (on the means) with its paired intervals
    (:mod:`components.evaluation.intervals`)."""
    means, halves = aggregate_models([sm["models"] for sm in summaries])
    out = {**summaries[0], "repeats": len(summaries), "seeds": [seed + r for r in range(len(summaries))]}
    out["models"], out["intervals"] = means, halves
    out.update(comparison(means, k0))
    best, metric = out["best_baseline"], f"ndcg@{k0}"
    out["per_repeat"] = {name: [sm["models"][name][metric] for sm in summaries] for name in means}
    units = [(pu[PIPELINE][u], pu[best].get(u, 0.0)) for pu in per_user if best in pu for u in pu[PIPELINE]]
    lift: dict[str, Any] = {**paired_lift(out["per_repeat"][PIPELINE], out["per_repeat"][best])}
    lift["bootstrap"] = bootstrap_lift([a for a, _ in units], [b for _, b in units], seed)
    out["lift"] = lift
    out["ranker_validation"] = [sm["ranker"]["validation"] for sm in summaries]
    out["ranker_validation_blend"] = [{"blend": sm["ranker"].get("blend", {})} for sm in summaries]
    out["ranker_loses_to_best_source"] = sum(
        1 for sm in summaries if sm["ranker"].get("blend", {}).get("ranker_beats_best_source") is False
    )
    return out


# ---------------------------------------------------------------------------------------------
# Report and files


def _model_table(
    models: Mapping[str, Mapping[str, float | None]], intervals: Mapping[str, Mapping[str, float]] | None = None
) -> tuple[list[int], list[str]]:
    """The K values and the Markdown rows of the side-by-side table (``mean ± half-width`` with
    ``intervals``)."""
    first = next(iter(models.values()))
    ks = sorted({int(k.split("@")[1]) for k in first if k.split("@")[0] in METRIC_ORDER})
    cols = [f"{m}@{k}" for k in ks for m in METRIC_ORDER]
    extra = [c for c in first if c.split("@")[0] in ("coverage", "ild", "novelty", "exposure_gini")]
    lines = ["| model | " + " | ".join(cols + extra) + " |", "|---" * (1 + len(cols) + len(extra)) + "|"]
    for name, m in models.items():
        label = f"**{name}**" if name == PIPELINE else name
        half = (intervals or {}).get(name, {})
        lines.append(f"| {label} | " + " | ".join(fmt(m[c], half.get(c)) for c in cols + extra) + " |")
    return ks, lines


def _ranker_section(summary: Mapping[str, Any]) -> list[str]:
    r = summary["ranker"]
    lines = [
        "## Ranker",
        "",
        f"`{r['version']}` ({r['backend']}, {r['objective']}), "
        f"{r['features']} features, {r['training_rows']} training rows in "
        f"{r['training_groups']} groups (carved from train only).",
        "",
        "| head | AUC | log-loss | positive rate |",
        "|---|---|---|---|",
    ]
    for h, d in summary["heads"].items():
        ll = d.get("logloss")
        lines.append(f"| {h} | {d['auc']:.4f} | {ll:.4f} | {d['positive_rate']:.4f} |" if ll is not None else f"| {h} | {d['auc']:.4f} | – | {d['positive_rate']:.4f} |")
    return lines + _blend_lines(summary)


def _blend_lines(summary: Mapping[str, Any]) -> list[str]:
    """The ranker against the best single source on its validation groups, per repeat."""
    blends = [v.get("blend", {}) for v in summary.get("ranker_validation_blend", [summary["ranker"].get("blend", {})])]
    blends = [b for b in blends if b.get("best_source")]
    if not blends:
        return []
    lines = [
        "",
        "## Ranker vs the best single source (validation carved from train)",
        "",
        f"`{RANKER_ALONE}` is the ranker's own ordering; `{PIPELINE}` serves the validation-tuned blend "
        "`(1 - α) · ranker + α · source` (α = 0: the ranker alone).",
        "",
        "| repeat | ranker NDCG | best source | source NDCG | ranker wins | α | served NDCG |",
        "|---|---|---|---|---|---|---|",
    ]
    for i, b in enumerate(blends):
        lines.append(
            f"| {i} | {b['ranker_ndcg']:.4f} | `{b['best_source']}` | {b['best_source_ndcg']:.4f} | "
            f"{'yes' if b['ranker_beats_best_source'] else '**no**'} | {b['alpha']:.1f} | {b['served_ndcg']:.4f} |"
        )
    return lines


def render_report(summary: Mapping[str, Any]) -> str:
    """Markdown: the side-by-side table of every model, then the heads and the protocol."""
    ks, table = _model_table(summary["models"], summary.get("intervals"))
    k0 = ks[0]
    lift = summary.get("lift") or {"mean": summary.get(f"ndcg@{k0}_lift_over_best_baseline")}
    n = summary.get("repeats", 1)
    lines = [
        f"# Offline evaluation: {summary['dataset']}",
        "",
        f"Protocol `{summary['protocol']}`; relevant = {summary['positive_types']}; "
        f"{summary['users_evaluated']} users, {summary['relevant_items']} relevant items, "
        f"catalogue {summary['catalogue']}; train {summary['train_events']} / test {summary['test_events']} events. "
        "Every list excludes contents the user interacted with in train.",
        "",
        f"Each figure: mean ± half-width of the 95 % t-interval over {n} repeats (seeds "
        f"{summary.get('seeds', [])}); no ± = the seed does not move it." if n > 1 else "One repeat (no interval).",
        "",
        *table,
        "",
        f"Best baseline on NDCG@{k0}: `{summary['best_baseline']}`; pipeline lift: " + lift_text(lift),
        f"Candidate recall (share of a user's relevant items among the ranked candidates): {summary['candidate_recall']:.3f}",
        "",
        *_ranker_section(summary),
    ]
    return "\n".join(lines) + "\n"


def write_outputs(result: EvalResult, paths: DataPaths, dataset: str | None = None) -> dict[str, Path]:
    """``metrics/evaluate[_<dataset>].json``, one curve CSV per model under
    ``metrics/plots/evaluate[_<dataset>]/`` (each a series in ``dvc plots``) and the report;
    without ``dataset`` the pipeline's own (``evaluate`` stage), else ``evaluate_real``'s."""
    if dataset is None:
        out = {k: paths.of(f"{k}_evaluate") for k in ("metrics", "plots", "report")}
    else:
        out = {k: paths.of(f"{k}_evaluate_dataset", dataset=dataset) for k in ("metrics", "plots", "report")}
    curves_dir = out["plots"]
    if curves_dir.exists():
        shutil.rmtree(curves_dir)
    curves_dir.mkdir(parents=True)
    out["report"].parent.mkdir(parents=True, exist_ok=True)
    write_metrics(out["metrics"], result.summary)
    for model, frame in result.curves.groupby("model", sort=False):
        frame.drop(columns="model").to_csv(curves_dir / f"{model}.csv", index=False)
    out["report"].write_text(result.report)
    return out
