"""Model registry: which ranker version is candidate, shadow, canary or production, and why.

Storage
    One folder (default ``data/registry/`` under the project root): ``registry.db``, a SQLite
    database, and ``models/<version>/``, a copy of every registered ranker artefact (so a
    ``dvc repro`` or a cleaned ``data/models`` never pulls a model from under serving). The
    copy goes to a ``.tmp-*`` folder next to it, each file fsynced, then ``os.rename`` puts it
    in place: a crash leaves the whole artefact or none. Stale ``.tmp-*`` folders are ignored
    and removed by :meth:`ModelRegistry.check` and the next :meth:`ModelRegistry.register`.

Transactions
    WAL mode (readers never block the writer: serving polls while the CLI promotes);
    every state change is ONE ``BEGIN IMMEDIATE`` … ``COMMIT`` transaction that also bumps
    ``meta.revision``, so a crash anywhere leaves the previous valid state, and serving notices
    a change with one cheap ``SELECT`` (:class:`ModelCache`).

Stages
    ``candidate → shadow → canary → production``, one step at a time; any stage but
    ``archived`` may go to ``archived`` (rejection or retirement, with a reason). Shadow,
    canary and production hold at most one version each (a partial unique index, plus the
    checks here): moving a version into an occupied slot archives the occupant ("superseded
    by …") in the same transaction, so promoting canary → production retires the old
    production version. ``archived`` is final except for :meth:`ModelRegistry.rollback`, which
    archives the production version and restores the one that was production immediately
    before it (like ``kubectl rollout undo``: a second rollback undoes the first).

Why not MLflow
    Its model registry needs a tracking server and a heavy dependency for what is here four
    small tables' worth of state; the standard library's :mod:`sqlite3` gives the
    transactions and the crash safety, so this module is written by hand on it. Artefact
    integrity (content hash = version) is :func:`components.ranking.ranker.load`'s.
"""

from __future__ import annotations

import argparse
import builtins
import getpass
import hashlib
import itertools
import json
import logging
import math
import os
import shutil
import sqlite3
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from components.core.catalog import DataPaths, artefact
from components.core.io import fsync_dir, fsync_file

if TYPE_CHECKING:
    from components.ranking.model import RankerModel

logger = logging.getLogger(__name__)

CANDIDATE, SHADOW, CANARY, PRODUCTION, ARCHIVED = (
    "candidate",
    "shadow",
    "canary",
    "production",
    "archived",
)
STAGES: tuple[str, ...] = (CANDIDATE, SHADOW, CANARY, PRODUCTION, ARCHIVED)
#: stages that hold at most one version
SLOT_STAGES: tuple[str, ...] = (SHADOW, CANARY, PRODUCTION)
#: the one forward step allowed from each stage (besides archiving)
PROMOTIONS: dict[str, str] = {CANDIDATE: SHADOW, SHADOW: CANARY, CANARY: PRODUCTION}
#: outputs of the data stages whose ``dvc.lock`` md5s make up :func:`data_version`
DATA_OUTPUTS: tuple[str, ...] = tuple(artefact(n).path for n in ("raw", "interim", "features"))
UNKNOWN = "unknown"
SCHEMA_VERSION = 1
DB_NAME = artefact("registry_db").relative().name
MODELS_DIR = "models"
TMP_PREFIX = ".tmp-"
MANIFEST = "manifest.json"  # components.ranking.ranker.MANIFEST, without importing the ranker


# --------------------------------------------------------------------------- errors


class RegistryError(Exception):
    """Anything the registry refuses; the state is unchanged."""


class NotFoundError(RegistryError):
    """The version is not registered."""


class TransitionError(RegistryError):
    """A stage change that the rules do not allow (or a rollback with nothing to restore)."""


class ArtefactError(RegistryError):
    """A model artefact that is missing, does not load, or does not match its version."""


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class ModelRecord:
    """One registered version."""

    version: str
    stage: str
    stage_changed_at: datetime
    registered_at: datetime
    artefact: str  # relative to the registry folder: models/<version>
    backend: str
    objective: str
    feature_service: str
    data_version: str
    metrics: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    notes: str = ""

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))


@dataclass(frozen=True)
class HistoryEntry:
    """One stage change (``from_stage`` is None for the registration)."""

    id: int
    version: str
    from_stage: str | None
    to_stage: str
    at: datetime
    reason: str
    actor: str

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))


@dataclass(frozen=True)
class Deployment:
    """What serving should run, as of ``revision``."""

    production: ModelRecord | None
    canary: ModelRecord | None
    shadow: ModelRecord | None
    revision: int

    def slots(self) -> dict[str, ModelRecord | None]:
        return {PRODUCTION: self.production, CANARY: self.canary, SHADOW: self.shadow}


@dataclass(frozen=True)
class RollbackResult:
    """The version taken out of production and the one restored, with the new revision."""

    archived: ModelRecord
    restored: ModelRecord
    revision: int


# --------------------------------------------------------------------------- pure core


def allowed_targets(stage: str) -> tuple[str, ...]:
    """The stages a version in ``stage`` may move to (rollback aside)."""
    if stage == ARCHIVED:
        return ()
    return (PROMOTIONS[stage], ARCHIVED) if stage in PROMOTIONS else (ARCHIVED,)


def check_transition(version: str, from_stage: str, to_stage: str) -> None:
    """Raise :class:`TransitionError` unless ``from_stage → to_stage`` is allowed."""
    if to_stage not in STAGES:
        raise TransitionError(f"unknown stage {to_stage!r}; stages: {', '.join(STAGES)}")
    if from_stage == to_stage:
        raise TransitionError(f"{version} is already {to_stage}")
    if to_stage not in allowed_targets(from_stage):
        allowed = " or ".join(allowed_targets(from_stage)) or "nothing (only rollback restores)"
        raise TransitionError(
            f"{version}: {from_stage} -> {to_stage} is not allowed; from {from_stage}: {allowed}"
        )


def data_version_from_lock(lock: Mapping[str, Any]) -> str:
    """A short stable id of the data a model was trained on: the ``dvc.lock`` md5s of
    :data:`DATA_OUTPUTS` (a producing stage's ``outs`` preferred over a consumer's ``deps``)."""
    found: dict[str, dict[str, set[str]]] = {"outs": {}, "deps": {}}
    for stage in (lock.get("stages") or {}).values():
        if not isinstance(stage, Mapping):
            continue
        for kind, seen in found.items():
            for entry in stage.get(kind) or []:
                path = str(entry.get("path", "")).rstrip("/")
                if path in DATA_OUTPUTS and entry.get("md5"):
                    seen.setdefault(path, set()).add(str(entry["md5"]))
    parts = []
    for path in DATA_OUTPUTS:
        md5s = found["outs"].get(path) or found["deps"].get(path)
        if md5s:
            parts.append(f"{path}={'+'.join(sorted(md5s))}")
    if not parts:
        return UNKNOWN
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:12]


def data_version(root: Path) -> str:
    """:func:`data_version_from_lock` of ``root/dvc.lock`` ("unknown" without one)."""
    lock = DataPaths(Path(root)).of("dvc_lock")
    if not lock.exists():
        return UNKNOWN
    with lock.open(encoding="utf-8") as fh:
        return data_version_from_lock(yaml.safe_load(fh) or {})


def find_problems(records: Sequence[ModelRecord], history: Sequence[HistoryEntry]) -> list[str]:
    """Invariant violations of a registry's rows (empty when valid): one version per slot, and
    every version's history a chain from its registration to its current stage."""
    problems: list[str] = []
    for stage in SLOT_STAGES:
        holders = sorted(r.version for r in records if r.stage == stage)
        if len(holders) > 1:
            problems.append(f"{len(holders)} versions in {stage}: {', '.join(holders)}")
    rows_of: dict[str, list[HistoryEntry]] = {}
    for h in sorted(history, key=lambda h: h.id):
        rows_of.setdefault(h.version, []).append(h)
    for r in sorted(records, key=lambda r: r.version):
        if r.stage not in STAGES:
            problems.append(f"{r.version}: unknown stage {r.stage!r}")
        rows = rows_of.get(r.version, [])
        if not rows:
            problems.append(f"{r.version}: no history")
            continue
        if rows[0].from_stage is not None or rows[0].to_stage != CANDIDATE:
            problems.append(f"{r.version}: history does not start with its registration")
        for prev, cur in itertools.pairwise(rows):
            if cur.from_stage != prev.to_stage:
                problems.append(
                    f"{r.version}: history row {cur.id} leaves {cur.from_stage} "
                    f"but the version was {prev.to_stage}"
                )
        if rows[-1].to_stage != r.stage:
            problems.append(
                f"{r.version}: stage is {r.stage} but its last history row says {rows[-1].to_stage}"
            )
    for v in sorted(set(rows_of) - {r.version for r in records}):
        problems.append(f"history rows of an unregistered version {v}")
    return problems


def _stamp(now: datetime) -> str:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware (UTC)")
    return now.astimezone(UTC).isoformat()


def _clean_json(obj: Any) -> Any:
    """JSON-safe copy: NaN / inf become None (metrics of a degenerate split)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Mapping):
        return {str(k): _clean_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean_json(v) for v in obj]
    return obj


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, datetime):
        return obj.isoformat()
    if isinstance(obj, Mapping):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    return obj


def _dumps(obj: Any) -> str:
    try:
        return json.dumps(_clean_json(obj), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise RegistryError(f"not JSON-serialisable: {exc}") from exc


# --------------------------------------------------------------------------- file helpers


def _copy_file(src: Path, dst: Path) -> None:
    """Copy one file and fsync it (a step of the artefact copy)."""
    with src.open("rb") as fi, dst.open("wb") as fo:
        shutil.copyfileobj(fi, fo, 1 << 20)
    fsync_file(dst)


def _manifest_version(directory: Path) -> str:
    try:
        manifest = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
        return str(manifest["version"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ArtefactError(f"{directory}: not a ranker artefact ({exc})") from exc


def resolve_model_dir(model_dir: Path) -> Path:
    """``model_dir`` itself, or ``model_dir/<LATEST>`` for the train stage's output folder."""
    model_dir = Path(model_dir)
    latest = model_dir / "LATEST"
    if not (model_dir / MANIFEST).exists() and latest.exists():
        return model_dir / latest.read_text(encoding="utf-8").strip()
    return model_dir


# --------------------------------------------------------------------------- the registry

_SCHEMA: tuple[str, ...] = (
    f"""CREATE TABLE IF NOT EXISTS versions (
        version TEXT PRIMARY KEY,
        registered_at TEXT NOT NULL,
        artefact TEXT NOT NULL,
        backend TEXT NOT NULL,
        objective TEXT NOT NULL,
        feature_service TEXT NOT NULL,
        data_version TEXT NOT NULL,
        metrics TEXT NOT NULL CHECK (json_valid(metrics)),
        params TEXT NOT NULL CHECK (json_valid(params)),
        notes TEXT NOT NULL DEFAULT '',
        stage TEXT NOT NULL CHECK (stage IN {STAGES!r}),
        stage_changed_at TEXT NOT NULL
    ) STRICT""",
    f"""CREATE UNIQUE INDEX IF NOT EXISTS versions_one_per_slot
        ON versions(stage) WHERE stage IN {SLOT_STAGES!r}""",
    f"""CREATE TABLE IF NOT EXISTS history (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        version TEXT NOT NULL REFERENCES versions(version) ON DELETE RESTRICT,
        from_stage TEXT CHECK (from_stage IS NULL OR from_stage IN {STAGES!r}),
        to_stage TEXT NOT NULL CHECK (to_stage IN {STAGES!r}),
        at TEXT NOT NULL,
        reason TEXT NOT NULL DEFAULT '',
        actor TEXT NOT NULL DEFAULT ''
    ) STRICT""",
    "CREATE INDEX IF NOT EXISTS history_by_version ON history(version, id)",
    "CREATE INDEX IF NOT EXISTS history_by_stage ON history(to_stage, id)",
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) STRICT",
    "INSERT OR IGNORE INTO meta (key, value) VALUES ('revision', 0)",
    f"INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', {SCHEMA_VERSION})",
)


def _record(row: sqlite3.Row) -> ModelRecord:
    return ModelRecord(
        version=row["version"],
        stage=row["stage"],
        stage_changed_at=datetime.fromisoformat(row["stage_changed_at"]),
        registered_at=datetime.fromisoformat(row["registered_at"]),
        artefact=row["artefact"],
        backend=row["backend"],
        objective=row["objective"],
        feature_service=row["feature_service"],
        data_version=row["data_version"],
        metrics=json.loads(row["metrics"]),
        params=json.loads(row["params"]),
        notes=row["notes"],
    )


def _entry(row: sqlite3.Row) -> HistoryEntry:
    return HistoryEntry(
        id=row["id"],
        version=row["version"],
        from_stage=row["from_stage"],
        to_stage=row["to_stage"],
        at=datetime.fromisoformat(row["at"]),
        reason=row["reason"],
        actor=row["actor"],
    )


class ModelRegistry:
    """The registry in ``directory`` (default ``<root>/data/registry``); safe to share between
    threads (one connection behind a lock) and processes (SQLite locking, WAL)."""

    def __init__(
        self,
        paths: DataPaths | None = None,
        *,
        directory: Path | None = None,
        actor: str = "api",
        timeout_s: float = 30.0,
    ) -> None:
        self.paths = paths if paths is not None else DataPaths()
        self.directory = Path(directory) if directory is not None else self.paths.of("registry")
        self.db_path = self.directory / DB_NAME
        self.models_dir = self.directory / MODELS_DIR
        self.actor = actor
        self._lock = threading.RLock()
        self.models_dir.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(
            str(self.db_path), timeout=timeout_s, isolation_level=None, check_same_thread=False
        )
        self._conn.row_factory = sqlite3.Row
        self._conn.execute(f"PRAGMA busy_timeout = {int(timeout_s * 1000)}")
        mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            logger.warning("registry %s: journal mode %s, not WAL", self.db_path, mode)
        self._conn.execute("PRAGMA synchronous = FULL")
        self._conn.execute("PRAGMA foreign_keys = ON")
        self._init_schema()

    # ---- connection and transactions

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> ModelRegistry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _init_schema(self) -> None:
        with self._lock:
            have = self._conn.execute(
                "SELECT count(*) FROM sqlite_master WHERE name IN ('versions', 'history', 'meta')"
            ).fetchone()[0]
            if have < 3:
                with self._write() as conn:
                    for statement in _SCHEMA:
                        conn.execute(statement)
            schema = self._conn.execute(
                "SELECT value FROM meta WHERE key = 'schema_version'"
            ).fetchone()
            if schema is None or int(schema[0]) > SCHEMA_VERSION:
                raise RegistryError(
                    f"{self.db_path}: schema version {None if schema is None else schema[0]}, "
                    f"this code knows {SCHEMA_VERSION}"
                )

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: ``BEGIN IMMEDIATE`` takes the database's write lock up front."""
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """One read snapshot (several SELECTs that see the same committed state)."""
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                if conn.in_transaction:
                    conn.execute("COMMIT")

    # ---- internal steps (each runs inside a caller's transaction)

    @staticmethod
    def _row(conn: sqlite3.Connection, version: str) -> ModelRecord | None:
        row = conn.execute("SELECT * FROM versions WHERE version = ?", (version,)).fetchone()
        return None if row is None else _record(row)

    def _require(self, conn: sqlite3.Connection, version: str) -> ModelRecord:
        rec = self._row(conn, version)
        if rec is None:
            raise NotFoundError(f"version {version} is not registered")
        return rec

    @staticmethod
    def _occupant(conn: sqlite3.Connection, stage: str) -> ModelRecord | None:
        row = conn.execute("SELECT * FROM versions WHERE stage = ?", (stage,)).fetchone()
        return None if row is None else _record(row)

    @staticmethod
    def _revision(conn: sqlite3.Connection) -> int:
        return int(conn.execute("SELECT value FROM meta WHERE key = 'revision'").fetchone()[0])

    def _bump_revision(self, conn: sqlite3.Connection) -> int:
        conn.execute("UPDATE meta SET value = value + 1 WHERE key = 'revision'")
        return self._revision(conn)

    @staticmethod
    def _insert_history(
        conn: sqlite3.Connection,
        version: str,
        from_stage: str | None,
        to_stage: str,
        at: str,
        reason: str,
        actor: str,
    ) -> None:
        conn.execute(
            "INSERT INTO history (version, from_stage, to_stage, at, reason, actor) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (version, from_stage, to_stage, at, reason, actor),
        )

    def _set_stage(
        self,
        conn: sqlite3.Connection,
        rec: ModelRecord,
        to_stage: str,
        at: str,
        reason: str,
        actor: str,
    ) -> None:
        cur = conn.execute(
            "UPDATE versions SET stage = ?, stage_changed_at = ? WHERE version = ? AND stage = ?",
            (to_stage, at, rec.version, rec.stage),
        )
        if cur.rowcount != 1:
            raise RegistryError(f"{rec.version} changed stage concurrently")
        self._insert_history(conn, rec.version, rec.stage, to_stage, at, reason, actor)

    def _archive_occupant(
        self, conn: sqlite3.Connection, stage: str, incoming: str, at: str, actor: str
    ) -> ModelRecord | None:
        """Free ``stage``'s slot for ``incoming``: its current holder goes to archived."""
        old = self._occupant(conn, stage)
        if old is None or old.version == incoming:
            return None
        self._set_stage(conn, old, ARCHIVED, at, f"superseded by {incoming} in {stage}", actor)
        logger.info("archived %s: superseded by %s in %s", old.version, incoming, stage)
        return old

    def _require_artefact(self, rec: ModelRecord) -> None:
        folder = self.directory / rec.artefact
        if not (folder / MANIFEST).exists():
            raise ArtefactError(f"{rec.version}: artefact {folder} is missing")

    def _clean_tmp(self) -> None:
        """Remove ``.tmp-*`` folders left by crashed copies (call holding the write lock:
        copies only run inside a write transaction, so none is in progress)."""
        for p in self.models_dir.glob(f"{TMP_PREFIX}*"):
            logger.info("removing stale temporary folder %s", p)
            shutil.rmtree(p, ignore_errors=True)

    def _store_artefact(self, src: Path, version: str) -> RankerModel:
        """Copy ``src`` to ``models/<version>`` (temporary folder + fsync + rename) and load the
        copy, refusing one that does not load or is another version."""
        from components.ranking import artefact as ranker

        final = self.models_dir / version
        if final.exists():  # a complete copy left by a register that crashed before its commit
            aside = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}orphan-", dir=self.models_dir))
            os.rename(final, aside / version)
            shutil.rmtree(aside, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{version}-", dir=self.models_dir))
        try:
            os.chmod(tmp, 0o755)
            for f in sorted(src.iterdir()):
                if f.is_file():
                    _copy_file(f, tmp / f.name)
                else:
                    logger.warning("artefact %s: %s is not a file, not copied", src, f.name)
            fsync_dir(tmp)
            try:
                model = ranker.load(tmp)
            except Exception as exc:
                raise ArtefactError(f"{src}: the artefact does not load: {exc}") from exc
            if model.version != version:
                raise ArtefactError(f"{src}: manifest says {version}, content is {model.version}")
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        fsync_dir(self.models_dir)
        return model

    # ---- state changes

    def register(
        self,
        model_dir: Path,
        *,
        metrics: Mapping[str, Any],
        data_version: str,
        now: datetime,
        reason: str = "",
        actor: str | None = None,
    ) -> ModelRecord:
        """Register the ranker artefact in ``model_dir`` as a candidate and return its record;
        a version already registered is returned as it is (no new history)."""
        at = _stamp(now)
        src = resolve_model_dir(Path(model_dir))
        version = _manifest_version(src)
        metrics_json = _dumps(dict(metrics))
        with self._write() as conn:
            existing = self._row(conn, version)
            if existing is not None:
                logger.info("%s is already registered (%s)", version, existing.stage)
                return existing
            self._clean_tmp()
            model = self._store_artefact(src, version)
            params = {
                "ranker": asdict(model.params),
                "heads": {h: s.weight for h, s in model.heads.items()},
                "feature_cols": model.feature_cols,
                "created_from": model.created_from,
                "library_version": model.library_version,
            }
            conn.execute(
                "INSERT INTO versions (version, registered_at, artefact, backend, objective, "
                "feature_service, data_version, metrics, params, notes, stage, stage_changed_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    version,
                    at,
                    f"{MODELS_DIR}/{version}",
                    model.backend,
                    model.objective,
                    model.feature_service,
                    data_version,
                    metrics_json,
                    _dumps(params),
                    reason,
                    CANDIDATE,
                    at,
                ),
            )
            self._insert_history(
                conn, version, None, CANDIDATE, at, reason or "registered", actor or self.actor
            )
            revision = self._bump_revision(conn)
            rec = self._require(conn, version)
        logger.info("registered %s from %s as candidate (revision %d)", version, src, revision)
        return rec

    def promote(
        self,
        version: str,
        to_stage: str,
        *,
        now: datetime,
        reason: str = "",
        actor: str | None = None,
    ) -> ModelRecord:
        """Move ``version`` one step forward (or to archived), archiving the slot's previous
        holder in the same transaction; :class:`TransitionError` when the rules refuse."""
        at = _stamp(now)
        who = actor or self.actor
        with self._write() as conn:
            rec = self._require(conn, version)
            check_transition(version, rec.stage, to_stage)
            if to_stage == ARCHIVED:
                if not reason.strip():
                    raise TransitionError(f"archiving {version} needs a reason")
            else:
                if to_stage in SLOT_STAGES:
                    self._require_artefact(rec)
                    self._archive_occupant(conn, to_stage, version, at, who)
            self._set_stage(conn, rec, to_stage, at, reason, who)
            revision = self._bump_revision(conn)
            new = self._require(conn, version)
        logger.info("%s: %s -> %s (revision %d) %s", version, rec.stage, to_stage, revision, reason)
        return new

    def archive(
        self, version: str, *, reason: str, now: datetime, actor: str | None = None
    ) -> ModelRecord:
        """Reject or retire ``version`` (any stage but archived); a reason is required."""
        return self.promote(version, ARCHIVED, now=now, reason=reason, actor=actor)

    def rollback(
        self, reason: str = "", *, now: datetime, actor: str | None = None
    ) -> RollbackResult:
        """Archive the production version and restore the one that was production immediately
        before it, in one transaction."""
        at = _stamp(now)
        who = actor or self.actor
        with self._write() as conn:
            current = self._occupant(conn, PRODUCTION)
            if current is None:
                raise TransitionError("rollback refused: no version is in production")
            row = conn.execute(
                "SELECT version FROM history WHERE to_stage = ? AND version != ? AND id < "
                "(SELECT max(id) FROM history WHERE version = ? AND to_stage = ?) "
                "ORDER BY id DESC LIMIT 1",
                (PRODUCTION, current.version, current.version, PRODUCTION),
            ).fetchone()
            if row is None:
                raise TransitionError(
                    f"rollback refused: no production version before {current.version}"
                )
            previous = self._require(conn, row["version"])
            if previous.stage != ARCHIVED:  # cannot happen: production is only left to archived
                raise RegistryError(
                    f"rollback refused: previous production {previous.version} is {previous.stage}"
                )
            self._require_artefact(previous)
            why = reason or "rollback"
            self._set_stage(conn, current, ARCHIVED, at, f"rolled back: {why}", who)
            self._set_stage(
                conn,
                previous,
                PRODUCTION,
                at,
                f"restored by rollback from {current.version}: {why}",
                who,
            )
            revision = self._bump_revision(conn)
            result = RollbackResult(
                archived=self._require(conn, current.version),
                restored=self._require(conn, previous.version),
                revision=revision,
            )
        logger.warning(
            "rollback: %s archived, %s restored to production (revision %d): %s",
            current.version,
            previous.version,
            revision,
            why,
        )
        return result

    # ---- queries

    def revision(self) -> int:
        """The state's revision: it grows with every committed change (cheap to poll)."""
        with self._lock:
            return self._revision(self._conn)

    def get(self, version: str) -> ModelRecord:
        """The record of ``version`` (:class:`NotFoundError` if it is not registered)."""
        with self._lock:
            return self._require(self._conn, version)

    def find(self, version: str) -> ModelRecord | None:
        """The record of ``version``, or None if it is not registered."""
        with self._lock:
            return self._row(self._conn, version)

    def history(self, version: str | None = None) -> builtins.list[HistoryEntry]:
        """Stage changes, oldest first (of one version, or all)."""
        with self._read() as conn:
            if version is None:
                rows = conn.execute("SELECT * FROM history ORDER BY id").fetchall()
            else:
                self._require(conn, version)
                rows = conn.execute(
                    "SELECT * FROM history WHERE version = ? ORDER BY id", (version,)
                ).fetchall()
        return [_entry(r) for r in rows]

    def deployment(self) -> Deployment:
        """The production, canary and shadow versions and the revision, from one snapshot."""
        with self._read() as conn:
            return Deployment(
                production=self._occupant(conn, PRODUCTION),
                canary=self._occupant(conn, CANARY),
                shadow=self._occupant(conn, SHADOW),
                revision=self._revision(conn),
            )

    def latest(self, stage: str) -> ModelRecord | None:
        """The version that entered ``stage`` last among those in it now (None if empty)."""
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; stages: {', '.join(STAGES)}")
        with self._lock:
            row = self._conn.execute(
                "SELECT v.* FROM versions v WHERE v.stage = ? ORDER BY "
                "(SELECT max(h.id) FROM history h WHERE h.version = v.version) DESC LIMIT 1",
                (stage,),
            ).fetchone()
        return None if row is None else _record(row)

    def artefact_dir(self, version: str) -> Path:
        """The registered copy of ``version``'s artefact (``models/<version>``)."""
        return self.directory / self.get(version).artefact

    artefact_path = artefact_dir

    def load(self, version: str, *, predict_threads: int = 1) -> RankerModel:
        """The registered copy of ``version``, loaded (and so verified against its hash)."""
        from components.ranking import artefact as ranker

        path = self.artefact_dir(version)
        try:
            return ranker.load(path, predict_threads=predict_threads)
        except (OSError, ValueError, KeyError) as exc:
            raise ArtefactError(f"{version}: {exc}") from exc

    def check(self, *, verify_models: bool = False) -> builtins.list[str]:
        """Problems with the registry (empty when valid); removes stale ``.tmp-*`` folders.

        Invariants: at most one version per slot, each version's stage equal to its last
        history row's, artefact folders present and holding their version (``verify_models``
        also loads each, checking the content hash). A complete folder without a row (a
        register that crashed between its rename and its commit) is no problem: nothing refers
        to it, and registering that version again replaces it."""
        problems: list[str] = []
        with self._write() as conn:  # the write lock: no copy is in progress while cleaning
            self._clean_tmp()
            quick = [r[0] for r in conn.execute("PRAGMA quick_check").fetchall()]
            if quick != ["ok"]:
                problems.append(f"sqlite quick_check: {'; '.join(map(str, quick))}")
            index = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = 'versions_one_per_slot'"
            ).fetchone()
            if index is None:
                problems.append("the one-version-per-slot index is missing")
            records = [_record(r) for r in conn.execute("SELECT * FROM versions ORDER BY version")]
            history = [_entry(r) for r in conn.execute("SELECT * FROM history ORDER BY id")]
        problems += find_problems(records, history)
        for rec in records:
            folder = self.directory / rec.artefact
            if rec.artefact != f"{MODELS_DIR}/{rec.version}":
                problems.append(f"{rec.version}: artefact path {rec.artefact!r} is not its own")
            if not folder.is_dir():
                problems.append(f"{rec.version}: artefact folder {folder} is missing")
                continue
            try:
                found = _manifest_version(folder)
            except ArtefactError as exc:
                problems.append(f"{rec.version}: {exc}")
                continue
            if found != rec.version:
                problems.append(f"{rec.version}: artefact manifest says version {found}")
            elif verify_models:
                try:
                    self.load(rec.version)
                except RegistryError as exc:
                    problems.append(str(exc))
        for p in problems:
            logger.warning("registry check: %s", p)
        return problems

    def list(self, stage: str | None = None) -> builtins.list[ModelRecord]:
        """Registered versions (in ``stage``, or all), oldest registration first."""
        if stage is not None and stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; stages: {', '.join(STAGES)}")
        with self._lock:
            if stage is None:
                rows = self._conn.execute(
                    "SELECT * FROM versions ORDER BY registered_at, version"
                ).fetchall()
            else:
                rows = self._conn.execute(
                    "SELECT * FROM versions WHERE stage = ? ORDER BY registered_at, version",
                    (stage,),
                ).fetchall()
        return [_record(r) for r in rows]


# --------------------------------------------------------------------------- stage entry


def training_metrics(model_dir: Path) -> dict[str, Any]:
    """The artefact's combined validation metrics (the default metrics of a registration)."""
    manifest = json.loads((resolve_model_dir(model_dir) / MANIFEST).read_text(encoding="utf-8"))
    return {"training": (manifest.get("training_metrics") or {}).get("combined") or {}}


def pipeline_metrics(paths: DataPaths) -> dict[str, Any]:
    """What the train and evaluate stages measured for the pipeline's latest ranker: the end
    of its training data (``trained_until``, read by the offline gate's drift check) and the
    offline evaluation of the whole pipeline."""

    def read(name: str) -> dict[str, Any]:
        path = paths.of(name)
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}

    ranking, evaluation = read("metrics_ranking"), read("metrics_evaluate")
    out: dict[str, Any] = {}
    if ranking.get("cuts"):
        out["trained_until"] = max(ranking["cuts"])
    if (evaluation.get("models") or {}).get("pipeline"):
        out["evaluation"] = evaluation["models"]["pipeline"]
    return out


def run(
    paths: DataPaths,
    *,
    now: datetime,
    model_dir: Path | None = None,
    metrics: Mapping[str, Any] | None = None,
    directory: Path | None = None,
    reason: str = "",
    actor: str = "api",
) -> ModelRecord:
    """Register the train stage's latest ranker (``data/models/ranker/LATEST``, or
    ``model_dir``) as a candidate, with the data version of ``paths.root``'s ``dvc.lock`` and
    its training metrics unless ``metrics`` are given."""
    if model_dir is None:
        model_dir = paths.of("ranker")
        if metrics is None:
            metrics = {**training_metrics(model_dir), **pipeline_metrics(paths)}
    with ModelRegistry(paths, directory=directory, actor=actor) as reg:
        return reg.register(
            model_dir,
            metrics=training_metrics(model_dir) if metrics is None else metrics,
            data_version=data_version(paths.root),
            now=now,
            reason=reason,
        )


# --------------------------------------------------------------------------- serving cache


@dataclass(frozen=True)
class _CacheState:
    deployment: Deployment
    models: dict[str, RankerModel]  # slot stage -> model


class ModelCache:
    """The loaded models of the deployment's production / canary / shadow versions, reloaded
    only when the registry's revision changes: serving calls :meth:`refresh` (one cheap
    ``SELECT``) per request or on a timer and so follows a promotion or rollback without a
    restart. A model whose version stays deployed is not reloaded."""

    def __init__(
        self,
        registry: ModelRegistry,
        *,
        predict_threads: int = 1,
        prepare: Callable[[RankerModel], Any] | None = None,
    ) -> None:
        self._registry = registry
        self._predict_threads = predict_threads
        self._prepare = prepare  # run on each newly loaded model before it serves (e.g. compile)
        self._lock = threading.Lock()
        self._state: _CacheState | None = None

    def refresh(self) -> bool:
        """Reload if the registry changed since the last load; True when it did. On a load
        failure the previous models stay in service and the error is raised."""
        with self._lock:
            old = self._state
            if old is not None and self._registry.revision() == old.deployment.revision:
                return False
            dep = self._registry.deployment()
            loaded = {m.version: m for m in old.models.values()} if old is not None else {}
            models: dict[str, RankerModel] = {}
            for stage, rec in dep.slots().items():
                if rec is None:
                    continue
                model = loaded.get(rec.version)
                if model is None:
                    model = self._registry.load(rec.version, predict_threads=self._predict_threads)
                    if self._prepare is not None:
                        self._prepare(model)
                models[stage] = model
            self._state = _CacheState(dep, models)
        logger.info(
            "model cache at revision %d: %s",
            dep.revision,
            {s: (r.version if r else None) for s, r in dep.slots().items()},
        )
        return True

    def _current(self) -> _CacheState:
        state = self._state
        if state is None:
            self.refresh()
            state = self._state
        assert state is not None
        return state

    @property
    def deployment(self) -> Deployment:
        return self._current().deployment

    @property
    def revision(self) -> int:
        return self._current().deployment.revision

    def model(self, stage: str) -> RankerModel | None:
        if stage not in SLOT_STAGES:
            raise ValueError(f"stage must be one of {SLOT_STAGES}, got {stage!r}")
        return self._current().models.get(stage)

    def production(self) -> RankerModel:
        model = self.model(PRODUCTION)
        if model is None:
            raise RegistryError("no version is in production")
        return model

    def canary(self) -> RankerModel | None:
        return self.model(CANARY)

    def shadow(self) -> RankerModel | None:
        return self.model(SHADOW)


# --------------------------------------------------------------------------- CLI


def _actor() -> str:
    try:
        user = os.environ.get("USER") or getpass.getuser()
    except Exception:  # no passwd entry in some containers
        user = "unknown"
    return f"cli:{user}"


def _table(records: Sequence[ModelRecord]) -> str:
    header = ("VERSION", "STAGE", "SINCE", "DATA", "MODEL", "FEATURES", "REGISTERED")
    rows = [header] + [
        (
            r.version,
            r.stage,
            r.stage_changed_at.strftime("%Y-%m-%d %H:%M:%S"),
            r.data_version,
            f"{r.backend}/{r.objective}",
            r.feature_service,
            r.registered_at.strftime("%Y-%m-%d %H:%M:%S"),
        )
        for r in records
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m components.deploy.registry",
        description="Model registry: register, promote, archive and roll back ranker versions.",
    )
    parser.add_argument("--root", default=None, help="project root (default: this project)")
    parser.add_argument(
        "--registry-dir", default=None, help="registry folder (default: <root>/data/registry)"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("list", help="registered versions")
    p.add_argument("--stage", choices=STAGES)
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("show", help="one version's record and history (JSON)")
    p.add_argument("version")
    sub.add_parser("deployment", help="production / canary / shadow and the revision (JSON)")
    p = sub.add_parser("register", help="register an artefact as a candidate")
    p.add_argument(
        "--model-dir",
        default=None,
        help="artefact folder, or a folder with LATEST (default: <root>/data/models/ranker)",
    )
    p.add_argument("--metrics", default=None, help="JSON file of metrics (default: training's)")
    p.add_argument("--reason", default="")
    p = sub.add_parser("promote", help="move a version one stage forward (or to archived)")
    p.add_argument("version")
    p.add_argument("--to", required=True, choices=STAGES, dest="to_stage")
    p.add_argument("--reason", default="")
    p = sub.add_parser("archive", help="reject or retire a version")
    p.add_argument("version")
    p.add_argument("--reason", required=True)
    p = sub.add_parser("rollback", help="restore the previous production version")
    p.add_argument("--reason", default="manual rollback")
    p = sub.add_parser("check", help="verify the invariants (exit 1 on problems)")
    p.add_argument("--verify-models", action="store_true", help="also load every artefact")
    return parser


def _run_command(args: argparse.Namespace, reg: ModelRegistry) -> int:
    now = datetime.now(UTC)
    out = sys.stdout
    if args.command == "list":
        records = reg.list(args.stage)
        if args.json:
            out.write(json.dumps([r.to_dict() for r in records], indent=2) + "\n")
        else:
            out.write(_table(records) + "\n")
    elif args.command == "show":
        payload = {
            "record": reg.get(args.version).to_dict(),
            "history": [h.to_dict() for h in reg.history(args.version)],
        }
        out.write(json.dumps(payload, indent=2) + "\n")
    elif args.command == "deployment":
        dep = reg.deployment()
        slots = {s: (r.version if r else None) for s, r in dep.slots().items()}
        out.write(json.dumps({**slots, "revision": dep.revision}, indent=2) + "\n")
    elif args.command == "register":
        metrics = (
            json.loads(Path(args.metrics).read_text(encoding="utf-8")) if args.metrics else None
        )
        rec = run(
            reg.paths,
            now=now,
            model_dir=Path(args.model_dir) if args.model_dir else None,
            metrics=metrics,
            directory=reg.directory,
            reason=args.reason,
            actor=reg.actor,
        )
        out.write(f"{rec.version}: {rec.stage} (data {rec.data_version})\n")
    elif args.command in {"promote", "archive"}:
        before = reg.get(args.version).stage
        to_stage = args.to_stage if args.command == "promote" else ARCHIVED
        rec = reg.promote(args.version, to_stage, now=now, reason=args.reason)
        out.write(f"{rec.version}: {before} -> {rec.stage} (revision {reg.revision()})\n")
    elif args.command == "rollback":
        res = reg.rollback(args.reason, now=now)
        out.write(
            f"rollback: {res.archived.version} archived, {res.restored.version} in production "
            f"(revision {res.revision})\n"
        )
    elif args.command == "check":
        problems = reg.check(verify_models=args.verify_models)
        out.write("\n".join(problems) + "\n" if problems else "ok\n")
        return 1 if problems else 0
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    paths = DataPaths(Path(args.root)) if args.root else DataPaths()
    try:
        reg = ModelRegistry(
            paths,
            directory=Path(args.registry_dir) if args.registry_dir else None,
            actor=_actor(),
        )
    except (RegistryError, sqlite3.Error) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        return _run_command(args, reg)
    except TransitionError as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 2
    except (RegistryError, ValueError, OSError) as exc:
        print(f"error: {exc}".splitlines()[0], file=sys.stderr)
        return 1
    finally:
        reg.close()


if __name__ == "__main__":
    raise SystemExit(main())
