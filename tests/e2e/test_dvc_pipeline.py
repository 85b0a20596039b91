"""`dvc repro` on a tiny synthetic data set, in a throw-away copy of the project.

Checks the DVC contract of the first stages: everything runs once, a second `dvc repro`
does nothing, changing `session_gap_minutes` re-runs only preprocessing, and a forced
re-run gives identical metrics.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.fixtures.tiny_project import FIRST_REPRO_LOG, TINY, copy_project, dvc

pytestmark = pytest.mark.slow

#: the synthetic pipeline; the real-data evaluations (``evaluate_real@*``) are left to `dvc repro`
#: and `make evaluate-real` (minutes each)
MAIN = ("materialize", "candidates", "ranking", "evaluate")
_dvc = dvc


def _stages(root: Path) -> set[str]:
    return set(yaml.safe_load((root / "dvc.yaml").read_text())["stages"])


def _ran(stdout: str) -> set[str]:
    return {line.split("'")[1] for line in stdout.splitlines() if line.startswith("Running stage '")}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, tiny_pipeline: Path) -> Path:
    """A copy of the session's pipeline project, which the tests below change."""
    return copy_project(tiny_pipeline, tmp_path_factory.mktemp("proj"))


def test_repro_runs_all_then_nothing_then_only_what_changed(project: Path) -> None:
    # the session project's first `dvc repro` ran every stage of the pipeline
    first = (project / FIRST_REPRO_LOG).read_text()
    assert {"generate", "ingest", "preprocess", "features", "feast_apply", "materialize", "embeddings", "candidates", "ranking", "evaluate", "export"} <= _ran(first)

    ingest = json.loads((project / "metrics/ingest.json").read_text())
    assert ingest["reconciled"] and ingest["n_in"] == TINY["n_events"]
    assert ingest["n_in"] == ingest["stored"] + ingest["quarantined"] + ingest["duplicates"]
    assert ingest["quarantined"] > 0 and ingest["duplicates"] > 0  # the generator's bad events
    pre = json.loads((project / "metrics/preprocess.json").read_text())
    assert pre["events_out"] == ingest["stored"] and pre["sessions"] > 0
    assert (project / "data/interim/sessions.parquet").exists()
    assert any((project / "data/raw/events").glob("event_date=*/*.parquet"))

    assert _ran(_dvc(project, "repro", *MAIN)) == set()

    params_path = project / "params.yaml"
    params = yaml.safe_load(params_path.read_text())
    params["preprocess"]["session_gap_minutes"] = 10
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))
    # preprocessing re-runs, then the stages downstream of it whose inputs changed; nothing upstream
    ran = _ran(_dvc(project, "repro", "features"))
    assert "preprocess" in ran
    assert ran <= {"preprocess", "features"}
    pre10 = json.loads((project / "metrics/preprocess.json").read_text())
    assert pre10["sessions"] > pre["sessions"]  # a shorter gap splits more sessions
    status = _dvc(project, "status", *MAIN)
    assert "ranking" in status and "generate" not in status  # the rest waits for the next repro


def test_forced_rerun_gives_identical_metrics(project: Path) -> None:
    _dvc(project, "repro", "features")

    def deterministic() -> dict[str, str]:
        # timings differ by nature; materialisation records an incremental window by design
        skip = ("throughput", "materialize")
        return {p.name: p.read_text() for p in (project / "metrics").glob("*.json") if not any(s in p.name for s in skip)}

    before = deterministic()
    _dvc(project, "repro", "-f", "generate", "ingest", "preprocess", "features")
    after = deterministic()
    assert before == after
    assert {"ingest.json", "preprocess.json"} <= set(before)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, tiny_pipeline: Path) -> Path:
    """A copy of the session's pipeline project: the tests below read the finished pipeline
    and need not re-run it after the parameter change above."""
    return copy_project(tiny_pipeline, tmp_path_factory.mktemp("built"))


def test_evaluation_outputs_and_determinism(built: Path) -> None:
    project = built
    assert _ran(_dvc(project, "repro", *MAIN)) == set()  # the copy is up to date as it is
    summary = json.loads((project / "metrics/evaluate.json").read_text())
    assert summary["protocol"] == "global_time" and summary["users_evaluated"] > 20
    assert {"pipeline", "ranker_alone", "popularity", "recent", "item_knn", "mf", "ease", "candidates"} == set(summary["models"])
    assert summary["repeats"] == 2 and set(summary["intervals"]) == set(summary["models"])
    assert summary["ranker"]["features"] > 30  # pair features plus the FeatureService's
    for model in summary["models"]:
        curve = (project / "metrics/plots/evaluate" / f"{model}.csv").read_text().splitlines()
        assert curve[0] == "k,precision,recall,ndcg" and len(curve) == 51
    report = (project / "reports/evaluation.md").read_text()
    assert "| **pipeline** |" in report and "| popularity |" in report
    shown = _dvc(project, "metrics", "show", "--json")
    assert "metrics/evaluate.json" in shown

    _dvc(project, "repro", "-f", "-s", "evaluate")
    assert json.loads((project / "metrics/evaluate.json").read_text()) == summary


def test_batch_feed_excludes_what_users_saw(built: Path) -> None:
    project = built
    import pandas as pd

    from components.data.ingestion.pseudonyms import pseudonym

    raw = pd.read_parquet(project / "data/drops/synthetic/events")
    wanted = sorted(raw["user_id"].dropna().astype(str).unique())[:5]
    (project / "users.txt").write_text("\n".join(wanted) + "\n")
    env = {**os.environ, "RECO_HMAC_KEY": "e2e-test-key"}
    env.pop("RECO_DEMO", None)
    out = subprocess.run(
        [sys.executable, "-m", "components.evaluation.stage", "--root", str(project), "--params", str(project / "params.yaml"),
         "--feed-users", str(project / "users.txt"), "--k", "7", "--out", str(project / "feed.csv")],
        cwd=project, env=env, capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    feed = pd.read_csv(project / "feed.csv", dtype={"user_id": str, "content_id": str})
    assert list(feed.columns) == ["user_id", "rank", "content_id", "score", "source"]
    assert sorted(feed["user_id"].unique()) == wanted
    assert (feed.groupby("user_id").size() == 7).all()
    events = pd.read_parquet(project / "data/interim/events.parquet", columns=["user_id", "content_id"])
    for u, g in feed.groupby("user_id"):
        seen = set(events.loc[events["user_id"] == pseudonym(u, b"e2e-test-key"), "content_id"])
        assert seen and not seen & set(g["content_id"])


def test_production_stages_build_with_the_tuned_values(tmp_path: Path, tiny_pipeline: Path) -> None:
    """With ``tuning.apply`` the tune stage's chosen values are what the production stages use
    (as the evaluation does); without, params.yaml's; changing the chosen values makes DVC
    rebuild the stages that read them."""
    from components.core.catalog import DataPaths
    from components.core.config import load_params
    from components.retrieval.embeddings import run as embeddings

    project = copy_project(tiny_pipeline, tmp_path / "proj")
    params = load_params(project / "params.yaml")
    assert params["tuning"]["apply"] is False  # the tiny project's setting (tests/fixtures/tiny_project.py)
    built = json.loads((project / "metrics/embeddings.json").read_text())
    assert built["mf_dim"] == params["embeddings"]["factors"]

    # chosen values with a dimension no study would pick, so only the file can have set it
    chosen_path = project / "data/tuning/pipeline.json"
    chosen = json.loads(chosen_path.read_text())
    chosen["overrides"].setdefault("embeddings", {})["factors"] = 7
    chosen_path.write_text(json.dumps(chosen))
    status = _dvc(project, "status", "embeddings", "candidates", "ranking", "export")
    assert "data/tuning/pipeline.json" in status
    paths = DataPaths(project)
    params["tuning"]["apply"] = True
    assert embeddings(params, paths).metrics["mf_dim"] == 7
    params["tuning"]["apply"] = False
    assert embeddings(params, paths).metrics["mf_dim"] == params["embeddings"]["factors"]
