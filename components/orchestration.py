"""What the Airflow DAGs call: thin, idempotent wrappers over the DVC stages and stage CLIs.

DAG files hold wiring only (schedules, retries, dependencies); every task body is one call into
this module, so a DAG run and ``dvc repro`` run exactly the same commands:

* :func:`run_stage` runs ``dvc repro --single-item <stage>`` in the project. DVC skips a stage
  whose deps, params and outs are unchanged, so re-running a task for the same data interval is
  a no-op, and the artefacts are the ones ``dvc repro`` would produce.
* :func:`register_candidate` registers the ranker the ``train`` stage produced as a *candidate*
  in :mod:`components.deploy.registry` (idempotent: the same artefact is the same version).
* :func:`materialize_until`, :func:`drift_report` and :func:`run_gate` wrap the Feast
  materialisation, the Evidently drift check and the promotion gates.

The project folder is ``RECO_PROJECT_ROOT`` (default: this checkout); the DVC executable is the
one next to the running Python, so Airflow's workers need no PATH set-up. Nothing here imports
Airflow: assets live in :data:`MODEL_ASSET_NAME` / :data:`RETRAIN_ASSET_NAME` for the DAG files.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from components.core.catalog import PROJECT_ROOT, DataPaths
from components.core.config import Params, load_config, load_params
from components.core.settings import Settings

log = logging.getLogger(__name__)

#: Asset updated when train_recommender registers a new candidate model (schedules promote_model)
MODEL_ASSET_NAME = "reco_ranker_candidate"
#: Asset updated when monitor_drift finds significant drift (schedules train_recommender)
RETRAIN_ASSET_NAME = "reco_retrain_request"

#: what every DAG's tasks share: the owner and their retries
DAG_DEFAULT_ARGS: dict[str, Any] = {"owner": "reco-platform", "retries": 2, "retry_delay": timedelta(minutes=1)}

#: the DVC stages of the training DAG, in order; "drop" is the data source's landing stage
TRAIN_STAGES: tuple[str, ...] = (
    "drop",
    "ingest",
    "preprocess",
    "features",
    "feast_apply",
    "materialize",
    "tune",  # the chosen hyper-parameters (data/tuning/pipeline.json) the next stages and the evaluation apply
    "embeddings",
    "candidates",
    "ranking",
    "evaluate",
    "drift",  # the drift verdict: evidence the offline gate requires
)


def project_root() -> Path:
    """The project the DAGs operate on: ``RECO_PROJECT_ROOT`` or this checkout."""
    value = Settings.from_env().project_root
    return value.resolve() if value else PROJECT_ROOT


def drop_stage(params: Mapping[str, Any]) -> str:
    """The DVC stage that lands the configured data source's drop."""
    source = Params.of(params).data.source
    return "generate" if source == "synthetic" else f"import_{source}"


def _tool_env() -> dict[str, str]:
    bindir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"}


def _run(cmd: Sequence[str], root: Path, what: str) -> str:
    log.info("%s: %s (in %s)", what, " ".join(cmd), root)
    out = subprocess.run(list(cmd), cwd=root, env=_tool_env(), capture_output=True, text=True)
    for line in (out.stdout + out.stderr).splitlines():
        log.info("%s | %s", what, line)
    if out.returncode != 0:
        tail = "\n".join((out.stdout + out.stderr).strip().splitlines()[-15:])
        raise RuntimeError(f"{what} failed with exit code {out.returncode}:\n{tail}")
    return out.stdout


@dataclass(frozen=True)
class StageRun:
    stage: str
    ran: bool  # False when DVC found the stage up to date


def run_stage(stage: str, root: Path | None = None) -> StageRun:
    """``dvc repro --single-item <stage>``; ``drop`` resolves to the data source's stage. The
    ingest stage is forced when the API's event stream holds events (the stream is an input
    DVC does not track, see dvc.yaml): unchanged traffic gives the same raw store, so the
    later stages are still skipped."""
    root = root or project_root()
    name = drop_stage(load_params(root / "params.yaml")) if stage == "drop" else stage
    dvc = str(Path(sys.executable).parent / "dvc")
    force = ["--force"] if name == "ingest" and stream_has_events(root) else []
    stdout = _run([dvc, "repro", "--single-item", *force, name], root, f"dvc {name}")
    ran = f"Running stage '{name}'" in stdout
    log.info("stage %s %s", name, "ran" if ran else "was up to date")
    return StageRun(stage=name, ran=ran)


def stream_has_events(root: Path) -> bool:
    """Whether the API's event stream (``data/stream/events``) holds a committed batch file."""
    folder = DataPaths(root).of("stream_events")
    return folder.is_dir() and next(folder.glob("*/event_date=*/*.parquet"), None) is not None


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


@dataclass(frozen=True)
class Registration:
    version: str
    new: bool
    stage: str


def register_candidate(root: Path | None = None, now: datetime | None = None) -> Registration:
    """Register ``data/models/ranker/LATEST`` as a candidate with its metrics and data version."""
    from components.deploy.registry import ModelRegistry
    from components.deploy.registry import run as register

    paths = DataPaths(root or project_root())
    version = paths.of("ranker_latest").read_text(encoding="utf-8").strip()
    with ModelRegistry(paths) as registry:
        known = registry.find(version)
    record = register(
        paths, now=now or datetime.now(UTC), reason="trained by train_recommender", actor="airflow"
    )
    return Registration(version=record.version, new=known is None, stage=record.stage)


def materialize_until(end: datetime, root: Path | None = None) -> str:
    """Incremental Feast materialisation up to ``end`` (the overlap comes from params)."""
    root = root or project_root()
    return _run(
        [sys.executable, "-m", "components.features.store", "materialize",
         "--params", str(root / "params.yaml"), "--root", str(root), "--end", end.isoformat()],
        root,
        "materialize",
    )


def newest_event_time(root: Path) -> datetime | None:
    """The newest clean event's time (``None`` before the first preprocessing run)."""
    import pyarrow.parquet as pq

    path = DataPaths(root).of("interim_events")
    if not path.exists():
        return None
    ts = pq.read_table(path, columns=["timestamp"]).column(0)
    import pyarrow.compute as pc

    value = pc.max(ts).as_py()
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def production_reference(root: Path, current_start: datetime) -> tuple[datetime, datetime] | None:
    """The production model's training window as the drift reference: the ``drift.reference_days``
    before the end of its training data, when that ends before the current window (a model
    trained on the current window has nothing older to be compared with)."""
    from datetime import timedelta

    from components.deploy.registry import ModelRegistry

    paths = DataPaths(root)
    if not paths.of("registry_db").exists():
        return None
    with ModelRegistry(paths) as registry:
        production = registry.deployment().production
    until = str(((production.metrics or {}) if production else {}).get("trained_until") or "")
    if not until:
        return None
    ref_end = datetime.fromisoformat(until)
    ref_end = ref_end if ref_end.tzinfo else ref_end.replace(tzinfo=UTC)
    if ref_end > current_start:
        return None
    days = load_config(root / "params.yaml").drift.reference_days
    return ref_end - timedelta(days=days), ref_end


def kpis(root: Path | None = None) -> int:
    """The KPIs of served traffic (``metrics/kpis.json``, plots and gauges); returns the
    (day, arm) rows. Run directly, not through DVC: the impression log and the stream it reads
    are written by serving, not by a stage."""
    from components.monitoring.kpis_stage import format_table
    from components.monitoring.kpis_stage import run as run_kpis

    root = root or project_root()
    frame = run_kpis(load_params(root / "params.yaml"), DataPaths(root))
    log.info("KPIs per day and arm:\n%s", format_table(frame))
    return len(frame)


def drift_report(end: datetime, root: Path | None = None) -> dict[str, Any]:
    """Run the drift check for the window ending at ``end`` and return the verdict.

    A data interval past the newest event (a replayed or historic data set) falls back to the
    end of the newest event's day, so the current window is not empty just because the data
    stopped; an empty current window otherwise fails the task. The reference window is the
    production model's training window when it ends before the current window, else the days
    just before the current window.
    """
    from datetime import timedelta

    from components.monitoring.drift import default_end

    root = root or project_root()
    newest = newest_event_time(root)
    if newest is not None and end > newest:
        log.info("data ends at %s, before the interval end %s: using the data's last day", newest, end)
        end = default_end(newest).to_pydatetime()
    cmd = [sys.executable, "-m", "components.monitoring.drift", "--params", str(root / "params.yaml"),
           "--root", str(root), "--end", end.isoformat()]
    days = load_config(root / "params.yaml").drift.current_days
    reference = production_reference(root, end - timedelta(days=days))
    if reference is not None:
        log.info("reference window: the production model's training data %s .. %s", *reference)
        cmd += ["--reference-start", reference[0].isoformat(), "--reference-end", reference[1].isoformat()]
    _run(cmd, root, "drift")
    return _read_json(DataPaths(root).of("metrics_drift"))


def run_gate(gate: str, version: str | None, root: Path | None = None) -> dict[str, Any]:
    """Run one promotion gate for ``version`` (default: the model the gate applies to); the
    verdict's JSON record (what ``metrics/gate_<gate>.json`` holds)."""
    from components.deploy.promote import run_gate as _run_gate

    root = root or project_root()
    params = load_params(root / "params.yaml")
    verdict = _run_gate(gate, params, DataPaths(root), version=version, now=datetime.now(UTC))
    record = verdict.to_dict()
    log.info("%s gate for %s: %s (%s)", gate, record.get("candidate"), verdict.decision, verdict.reason)
    log.info("verdict: %s", json.dumps(record, default=str, sort_keys=True))
    return record
