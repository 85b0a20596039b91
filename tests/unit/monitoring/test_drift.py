"""Drift monitoring with Evidently (run for real) on frames built here: crafted shifts are found,
unshifted windows are not, thin windows are skipped with a reason, outputs are deterministic."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from components.core.catalog import DataPaths
from components.core.config import deep_merge, load_params
from components.monitoring import drift as D
from components.monitoring.detect import detect_drift
from components.monitoring.drift_config import FAMILIES, FEATURE_TS, DriftConfig, EmptyWindowError
from components.monitoring.report import DriftReport, DriftResult
from components.monitoring.tables import numeric_feature_columns
from components.monitoring.windows import Windows, default_end, split_windows
from tests.fixtures.params import project_settings

END = pd.Timestamp("2026-01-15T00:00:00Z")
DAY = pd.Timedelta(days=1)
CFG = project_settings(DriftConfig, min_rows=100, max_rows=5000, seed=7)
WINDOWS = Windows.ending_at(END, CFG.current_days, CFG.reference_days)

BASE_MIX = {
    "view": 0.55,
    "like": 0.1,
    "skip": 0.15,
    "complete_view": 0.1,
    "share": 0.05,
    "comment": 0.04,
    "content_upload": 0.01,
}
SKIPPY_MIX = {
    "view": 0.2,
    "like": 0.02,
    "skip": 0.7,
    "complete_view": 0.03,
    "share": 0.02,
    "comment": 0.02,
    "content_upload": 0.01,
}


def _stamps(days: int) -> list[pd.Timestamp]:
    """Daily snapshot stamps: ``days`` reference snapshots then the current one (at END)."""
    return [END - DAY * (days - i) for i in range(days + 1)]


def snapshots(
    prefix: str,
    key: str,
    seed: int,
    n: int = 300,
    current_seed: int | None = None,
    current_scale: dict[str, float] | None = None,
    current_n: int | None = None,
) -> pd.DataFrame:
    """A feature table: one row per entity per daily snapshot, 3 numeric features plus columns that
    must never be tested (an id, a category code, a clock, a list). The current snapshot (stamped
    END) is drawn with ``current_seed`` and its columns multiplied by ``current_scale``."""
    frames = []
    for i, ts in enumerate(_stamps(7)):
        is_current = ts == END
        rng = np.random.default_rng(
            (current_seed if is_current and current_seed is not None else seed) * 100 + i
        )
        m = (current_n or n) if is_current else n
        f = pd.DataFrame(
            {
                key: [f"{prefix}{j:04d}" for j in range(m)],
                FEATURE_TS: ts,
                f"{prefix}_a": rng.normal(10.0, 2.0, m),
                f"{prefix}_b": rng.poisson(6.0, m).astype("int64"),
                f"{prefix}_c": rng.beta(2.0, 5.0, m),
                f"{prefix}_top_category_idx": rng.integers(0, 20, m),
                f"{prefix}_last_event_ts_s": np.full(m, int(ts.timestamp()) - 60),
                f"{prefix}_category_share": [[0.5, 0.5]] * m,
            }
        )
        if is_current:
            for col, k in (current_scale or {}).items():
                f[col] = f[col] * k
        frames.append(f)
    out = pd.concat(frames, ignore_index=True)
    out[FEATURE_TS] = pd.to_datetime(out[FEATURE_TS], utc=True).astype("datetime64[ms, UTC]")
    return out


def features(seed: int = 1, current_seed: int = 2, **kw: Any) -> dict[str, pd.DataFrame]:
    return {
        "user_features": snapshots("u", "user_id", seed, current_seed=current_seed, **kw),
        "content_features": snapshots("c", "content_id", seed + 50, current_seed=current_seed + 50),
    }


def events(
    seed: int = 3, current_mix: dict[str, float] | None = None, per_day: int = 2500
) -> pd.DataFrame:
    """Clean events over the 8 days before END, ``current_mix`` of event types on the last day."""
    rng = np.random.default_rng(seed)
    frames = []
    for d in range(8):
        start = END - DAY * (8 - d)
        mix = current_mix if (d == 7 and current_mix) else BASE_MIX
        types = rng.choice(
            list(mix), size=per_day, p=np.array(list(mix.values())) / sum(mix.values())
        )
        frames.append(
            pd.DataFrame(
                {
                    "user_id": [f"u{j:04d}" for j in rng.integers(0, 250, per_day)],
                    "event_type": types,
                    "timestamp": start
                    + pd.to_timedelta(np.sort(rng.uniform(0, 86_399, per_day)), unit="s"),
                    "watch_ratio": np.where(
                        types == "view", rng.beta(2.0, 2.0, per_day) * 1.2, np.nan
                    ),
                }
            )
        )
    out = pd.concat(frames, ignore_index=True)
    out["event_type"] = out["event_type"].astype("string[pyarrow]")
    out["timestamp"] = out["timestamp"].astype("datetime64[ms, UTC]")
    return out


def scores(seed: int = 4, current_shift: float = 0.0, per_day: int = 400) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frames = []
    for d in range(8):
        start = END - DAY * (8 - d)
        current = d == 7
        frames.append(
            pd.DataFrame(
                {
                    "timestamp": start + pd.to_timedelta(rng.uniform(0, 86_399, per_day), unit="s"),
                    "model_version": "v2" if current else "v1",
                    "score": rng.normal(current_shift if current else 0.0, 1.0, per_day),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def drifted(v: DriftReport, family: str) -> list[str]:
    return [f"{c.table}.{c.column}" for c in v.family(family).drifted_columns]


@pytest.fixture(scope="module")
def calm() -> DriftResult:
    """Same generating distributions in both windows (the current window drawn with other seeds)."""
    return detect_drift(features(), events(), scores(), WINDOWS, CFG)


# --------------------------------------------------------------------------- windows and columns


def test_windows_and_boundaries() -> None:
    w = Windows.ending_at("2026-01-15T00:00:00", 1, 7)
    assert (w.current_start, w.current_end) == (END - DAY, END)
    assert (w.reference_start, w.reference_end) == (END - 8 * DAY, END - DAY)
    given = Windows.ending_at(END, 1, 7, "2026-01-01", "2026-01-05T12:00:00+01:00")
    assert given.reference_given and given.reference_end == pd.Timestamp("2026-01-05T11:00:00Z")
    with pytest.raises(ValueError, match="both"):
        Windows.ending_at(END, 1, 7, "2026-01-01", None)
    with pytest.raises(ValueError, match="empty reference"):
        Windows.ending_at(END, 1, 7, "2026-01-05", "2026-01-01")
    # events: [start, end); snapshots: (start, end] (a snapshot stamped T describes the time before T)
    f = pd.DataFrame({"ts": [END - DAY, END - DAY + pd.Timedelta(milliseconds=1), END]})
    ref, cur = split_windows(f, "ts", w)
    assert list(ref["ts"]) == [] and list(cur["ts"]) == [
        END - DAY,
        END - DAY + pd.Timedelta(milliseconds=1),
    ]
    ref, cur = split_windows(f, "ts", w, snapshot=True)
    assert list(ref["ts"]) == [END - DAY] and list(cur["ts"]) == [
        END - DAY + pd.Timedelta(milliseconds=1),
        END,
    ]
    assert default_end(pd.Timestamp("2026-01-14T23:59:54Z")) == END
    assert default_end(pd.Timestamp("2026-01-15T00:00:00Z")) == END + DAY


def test_feature_columns_skip_ids_clocks_lists_and_cap_with_seed() -> None:
    f = features()["user_features"]
    cols, skipped = numeric_feature_columns(f, CFG.exclude_columns, 0, seed=7)
    assert cols == ["u_a", "u_b", "u_c"]
    assert set(skipped) == {"u_top_category_idx", "u_last_event_ts_s"}
    two, skipped2 = numeric_feature_columns(f, CFG.exclude_columns, 2, seed=7)
    assert len(two) == 2 and set(two) < {"u_a", "u_b", "u_c"}
    assert two == numeric_feature_columns(f, CFG.exclude_columns, 2, seed=7)[0]
    assert "not sampled" in next(v for k, v in skipped2.items() if k not in skipped)


def test_config_from_params_validates() -> None:
    params = load_params(None)
    cfg = DriftConfig.from_params(params)
    assert cfg.seed == params["base"]["seed"] and cfg.retrain_on == ("feature", "target")
    with pytest.raises(ValueError, match=r"drift\.drift_shar: unknown key"):
        DriftConfig.from_params(deep_merge(params, {"drift": {"drift_shar": 0.2}}))
    with pytest.raises(ValueError, match="retrain_on"):
        DriftConfig.from_params(deep_merge(params, {"drift": {"retrain_on": ["features"]}}))


# --------------------------------------------------------------------------- verdicts


def test_unshifted_windows_do_not_drift(calm: DriftResult) -> None:
    v = calm.report
    assert v.passed and not v.drift_detected and not v.retrain_requested and not v.inconclusive
    assert v.reason.startswith("No drift")
    for family in FAMILIES:
        fam = v.family(family)
        assert not fam.skipped and not fam.drifted and fam.share_drifted == 0.0, fam.reason
    feat = v.family("feature")
    assert feat.columns_tested == [
        "user_features.u_a",
        "user_features.u_b",
        "user_features.u_c",
        "content_features.c_a",
        "content_features.c_b",
        "content_features.c_c",
    ]
    assert v.family("target").columns_tested == [
        "event_types.event_type",
        "views.watch_ratio",
        "users.engagement_rate",
    ]
    user = feat.tables[0]
    assert (user.reference_rows, user.current_rows) == (7 * 300, 300)
    # 2100 reference rows > 1000: Evidently's default for a numeric column is the normed Wasserstein distance
    a = next(c for c in user.columns if c.column == "u_a")
    assert (a.stattest, a.score_kind, a.threshold) == (
        "Wasserstein distance (normed)",
        "distance",
        0.1,
    )
    assert a.score is not None and 0.0 <= a.score < 0.1
    assert v.family("prediction").info["model_versions"] == {"reference": ["v1"], "current": ["v2"]}


def test_feature_shift_is_detected_and_requests_retraining() -> None:
    shifted = features(current_scale={"u_a": 3.0})
    # one drifted column of six (0.17) is below the default share 0.3: the column drifts, the family not
    v = detect_drift(shifted, events(), None, WINDOWS, CFG).report
    assert drifted(v, "feature") == ["user_features.u_a"]
    col = v.family("feature").drifted_columns[0]
    assert col.score is not None and col.score > 1.0  # mean 10 -> 30 with sd 2: far beyond 0.1
    assert not v.family("feature").drifted and not v.retrain_requested
    assert v.family("feature").share_drifted == pytest.approx(1 / 6)
    # with a share threshold of 0.15 the same shift flags the family and asks for retraining
    cfg = CFG.replace(drift_share=0.15)
    v = detect_drift(shifted, events(), None, WINDOWS, cfg).report
    assert v.family("feature").drifted and v.drift_detected and v.retrain_requested and not v.passed
    assert v.reason.startswith("Drift detected in feature; retraining requested")
    assert "user_features.u_a" in v.reason
    assert v.family("prediction").skipped and v.family("prediction").reason == "no score log"


def test_engagement_shift_to_skips_is_detected() -> None:
    v = detect_drift(features(), events(current_mix=SKIPPY_MIX), None, WINDOWS, CFG).report
    target = v.family("target")
    assert target.drifted and v.retrain_requested and not v.family("feature").drifted
    assert drifted(v, "target") == ["event_types.event_type", "users.engagement_rate"]
    et = target.drifted_columns[0]
    assert et.column_type == "categorical" and et.stattest == "Jensen-Shannon distance"
    assert et.score is not None and et.score > 0.3
    assert target.share_drifted == pytest.approx(2 / 3)


def test_score_shift_flags_prediction_drift_without_retraining() -> None:
    v = detect_drift(features(), events(), scores(current_shift=2.0), WINDOWS, CFG).report
    pred = v.family("prediction")
    assert pred.drifted and drifted(v, "prediction") == ["scores.score"]
    assert v.drift_detected and not v.passed
    assert not v.retrain_requested  # prediction is not in retrain_on
    assert "no retraining" in v.reason


def test_custom_stattest_from_params() -> None:
    cfg = CFG.replace(num_stattest="ks", stattest_threshold=0.01)
    v = detect_drift(features(current_scale={"u_a": 3.0}), None, None, WINDOWS, cfg).report
    a = v.family("feature").drifted_columns[0]
    assert (a.column, a.stattest, a.score_kind, a.threshold) == (
        "u_a",
        "K-S p_value",
        "p_value",
        0.01,
    )
    assert a.score is not None and a.score < 1e-10
    assert v.family("target").skipped and v.family("target").reason == "no events"


def test_too_few_rows_are_skipped_with_a_reason() -> None:
    thin = {"user_features": snapshots("u", "user_id", 1, current_seed=2, current_n=40)}
    v = detect_drift(thin, None, scores(per_day=30), WINDOWS, CFG).report
    feat = v.family("feature")
    assert feat.skipped and not feat.drifted and feat.share_drifted is None
    assert (
        "user_features: too few rows (2100 reference, 40 current; drift.min_rows=100)"
        in feat.reason
    )
    assert "content_features: feature table not found" in feat.reason
    pred = v.family("prediction")
    assert pred.skipped and "too few rows (210 reference, 30 current" in pred.reason
    assert v.inconclusive and not v.drift_detected and v.reason.startswith("Inconclusive")


def test_verdict_fails_closed_on_untested_families(calm: DriftResult) -> None:
    verdict = calm.report.verdict
    assert verdict.gate == "drift" and verdict.passed
    assert [c.name for c in verdict.checks] == [
        f"{f}{s}" for f in FAMILIES for s in ("_tested", "_no_drift")
    ]
    # prediction is not in drift.retrain_on: untested, it is named but does not fail the verdict
    no_scores = detect_drift(features(), events(), None, WINDOWS, CFG).report
    assert no_scores.verdict.passed and "prediction skipped (no score log)" in no_scores.reason
    # target is: without events the verdict fails, saying what is missing and what to run
    no_events = detect_drift(
        features(), None, None, WINDOWS, CFG, events_note="data/interim/events.parquet not found"
    ).report
    v = no_events.verdict
    assert not v.passed and not no_events.drift_detected and not no_events.inconclusive
    assert [c.name for c in v.failed_checks] == ["target_tested"]
    assert "data/interim/events.parquet not found" in v.failed_checks[0].reason
    assert "dvc repro preprocess" in v.failed_checks[0].reason
    assert no_events.reason.startswith("Incomplete, no drift found but target could not be tested")


def test_inconclusive_is_not_a_pass() -> None:
    thin = {"user_features": snapshots("u", "user_id", 1, current_seed=2, current_n=40)}
    report = detect_drift(thin, None, scores(per_day=30), WINDOWS, CFG).report
    assert report.inconclusive and not report.passed
    d = json.loads(report.to_json())
    assert d["passed"] is False and d["decision"] == "fail"
    assert {c["name"] for c in d["checks"] if not c["passed"]} == {
        "feature_tested",
        "target_tested",
        "any_family_tested",
    }


def test_empty_current_window_is_an_error() -> None:
    late = Windows.ending_at(END + 30 * DAY, 1, 7)
    with pytest.raises(EmptyWindowError, match="current window"):
        detect_drift(features(), events(), scores(), late, CFG)


def test_verdict_json_is_deterministic(calm: DriftResult) -> None:
    again = detect_drift(features(), events(), scores(), WINDOWS, CFG)
    assert again.report.to_json() == calm.report.to_json()
    d = json.loads(calm.report.to_json())
    assert set(d) >= {
        "gate",
        "checks",
        "metrics",
        "thresholds",
        "passed",
        "drift_detected",
        "retrain_requested",
        "reason",
        "windows",
        "families",
    }
    assert d["windows"]["current"] == {
        "start": "2026-01-14T00:00:00+00:00",
        "end": "2026-01-15T00:00:00+00:00",
    }
    assert d["families"]["feature"]["tables"][0]["skipped_columns"][
        "u_top_category_idx"
    ].startswith("excluded")


# --------------------------------------------------------------------------- run() and the CLI


def _write_inputs(
    root: Path, feats: dict[str, pd.DataFrame], ev: pd.DataFrame, sc: pd.DataFrame
) -> DataPaths:
    paths = DataPaths(root)
    paths.features.mkdir(parents=True)
    for name, f in feats.items():
        f.to_parquet(paths.features / f"{name}.parquet", index=False)
    paths.interim.mkdir(parents=True)
    ev.to_parquet(paths.interim / "events.parquet", index=False)
    (root / "data/logs/scores").mkdir(parents=True)
    sc.iloc[:1000].to_parquet(root / "data/logs/scores/part-0.parquet", index=False)
    sc.iloc[1000:].to_parquet(root / "data/logs/scores/part-1.parquet", index=False)
    return paths


def _params(**drift: Any) -> dict[str, Any]:
    params = load_params(None)
    params["drift"] = {**params["drift"], "min_rows": 100, "max_rows": 5000, **drift}
    return params


def test_run_writes_verdict_and_html(tmp_path: Path) -> None:
    paths = _write_inputs(
        tmp_path, features(current_scale={"u_b": 4.0}), events(), scores(current_shift=2.0)
    )
    out = D.run(
        _params(drift_share=0.15), paths
    )  # end from the data: the end of the newest event's day
    assert (
        out.metrics_path == tmp_path / "metrics/drift.json"
        and out.report_path == tmp_path / "reports/drift.html"
    )
    written = json.loads(out.metrics_path.read_text())
    assert written == out.verdict.to_dict()
    assert written["windows"]["end"] == "2026-01-15T00:00:00+00:00"
    assert written["retrain_requested"] is True
    assert [c["column"] for c in written["families"]["feature"]["drifted_columns"]] == ["u_b"]
    assert [c["column"] for c in written["families"]["prediction"]["drifted_columns"]] == ["score"]
    html = out.report_path.read_text(encoding="utf-8")
    assert html.lstrip().lower().startswith("<html") or "<!doctype html" in html[:200].lower()
    for text in (
        "Drift verdict",
        "feature drift: user_features",
        "prediction drift: scores",
        "u_b",
        "engagement_rate",
    ):
        assert text in html
    assert not list(tmp_path.rglob("*.tmp"))
    # same inputs, same verdict file
    first = out.metrics_path.read_bytes()
    D.run(_params(drift_share=0.15), paths, end=END)
    assert out.metrics_path.read_bytes() == first


def test_cli_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _write_inputs(tmp_path, features(), events(), scores())
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(_params()))
    base = ["--params", str(params), "--root", str(tmp_path)]
    assert (
        D.main(
            [
                *base,
                "--end",
                "2026-01-15T00:00:00Z",
                "--reference-start",
                "2026-01-08",
                "--reference-end",
                "2026-01-14",
            ]
        )
        == 0
    )
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("drift: no drift (retrain_requested=False)") and "drift.json" in line
    assert (
        json.loads((tmp_path / "metrics/drift.json").read_text())["windows"]["reference_given"]
        is True
    )
    assert D.main([*base, "--end", "2026-03-01"]) == 2
    assert "no feature row, event or score in the current window" in capsys.readouterr().err
