"""The OPE stage on a real registry and an impression log written the way serving writes it:
production (a weak ranker) logs ε-greedy slates with their propensities and feature rows;
the candidate (a ranker that reads the engagement feature) is estimated better than
production's own engagement rate, before any canary."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from components.core.catalog import DataPaths
from components.deploy.registry import ModelRegistry
from components.evaluation.ope import run
from components.ranking.artefact import save
from components.retrieval.exploration import ExplorationParams, explore_slate
from components.serving.impressions import ImpressionLog
from tests.fixtures.params import project_config, project_params

SEED = project_config().base.seed
NOW = datetime(2026, 3, 1, tzinfo=UTC)


def test_ope_stage_estimates_the_candidate_on_the_impression_log(tmp_path: Path) -> None:
    from tests.unit.deploy.test_promote import _train, make_rows

    train = make_rows(n_users=200, seed=1)
    good = _train(train, ["f_eng", "f_neg", "noise"], 1)
    weak = _train(train.assign(f_eng=0.0, f_neg=0.0), ["f_eng", "f_neg", "noise"], 2)
    paths = DataPaths(tmp_path)
    with ModelRegistry(paths) as reg:
        prod = reg.register(
            save(weak, paths.data / "m" / "weak"), metrics={}, data_version="d", now=NOW
        ).version
        for stage in ("shadow", "canary", "production"):
            reg.promote(prod, stage, now=NOW, reason="setup")
        cand = reg.register(
            save(good, paths.data / "m" / "good"), metrics={}, data_version="d", now=NOW
        ).version

    rng = np.random.default_rng(SEED)
    explo = ExplorationParams(epsilon=0.3, strategy="uniform", ucb_c=1.0, dpp_theta=0.5)
    log = ImpressionLog(paths.of("impressions"), flush_every=10_000)
    events = []
    t0 = pd.Timestamp("2026-03-01T00:00:00Z")
    for r in range(400):
        X = rng.normal(size=(20, 3))
        ranked = [
            f"c{r}-{i}"
            for i in np.argsort(-weak.predict(pd.DataFrame(X, columns=weak.feature_cols)))
        ]
        shown = explore_slate(ranked, 5, explo, rng)
        ts = t0 + pd.Timedelta(minutes=r)
        rows = []
        for imp in shown:
            x = X[int(imp.content_id.split("-")[1])]
            engaged = rng.random() < 1 / (1 + np.exp(-(2.5 * x[0] - 2.0)))
            rows.append({
                "request_id": f"r{r}", "user_id": f"u{r % 50}", "content_id": imp.content_id,
                "position": imp.position, "model_version": prod, "arm": "production",
                "propensity": imp.propensity, "degraded": False, "timestamp": ts, "features": x.astype(np.float32),
            })  # fmt: skip
            kind = "like" if engaged else "view"
            events.append(
                (
                    f"u{r % 50}",
                    imp.content_id,
                    kind,
                    ts + pd.Timedelta(seconds=10),
                    f"e{r}-{imp.position}",
                )
            )
        log.add(rows)
    log.flush()
    stream = paths.of("stream_events") / "event_date=2026-03-01"
    stream.mkdir(parents=True)
    pd.DataFrame(
        events, columns=["user_id", "content_id", "event_type", "timestamp", "event_id"]
    ).to_parquet(stream / "part-0.parquet")

    out = run(project_params(experiments={"ope_bootstrap": 100}), paths)
    record = json.loads(paths.of("metrics_ope").read_text())
    assert (
        record["candidate"] == cand
        and record["production"] == prod
        and record["impressions"] == 2000
    )
    base = out["production_engagement_rate"]
    for name in ("ips", "snips", "dr"):
        e = out["estimates"][name]
        assert e["ci_low"] <= e["value"] <= e["ci_high"]
    # the candidate puts the engaging rows first: SNIPS clears production's own rate with its whole
    # interval; DR's point estimate does too (its interval is wide: explored slots have
    # propensities of 0.3 / 15 and weights up to ~45, see effective_sample_size)
    assert out["estimates"]["snips"]["ci_low"] > base
    assert out["estimates"]["dr"]["value"] > base
    assert 0 < out["effective_sample_size"] < out["impressions"]
