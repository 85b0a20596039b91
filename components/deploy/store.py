"""The registry's SQLite database: its schema and the statements of each state change.

WAL mode (readers never block the writer: serving polls while the CLI promotes); every state
change is ONE ``BEGIN IMMEDIATE`` … ``COMMIT`` transaction (opened by the registry) that also
bumps ``meta.revision``, so a crash anywhere leaves the previous valid state and serving notices a
change with one cheap ``SELECT``. The step functions here run inside the caller's transaction.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from datetime import datetime
from pathlib import Path

from components.deploy.records import HistoryEntry, ModelRecord
from components.deploy.transitions import (
    ARCHIVED,
    CANDIDATE,
    SLOT_STAGES,
    STAGES,
    NotFoundError,
    RegistryError,
)

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1

SCHEMA: tuple[str, ...] = (
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


def record_of(row: sqlite3.Row) -> ModelRecord:
    """A ``versions`` row as a record."""
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


def entry_of(row: sqlite3.Row) -> HistoryEntry:
    """A ``history`` row as an entry."""
    return HistoryEntry(
        id=row["id"],
        version=row["version"],
        from_stage=row["from_stage"],
        to_stage=row["to_stage"],
        at=datetime.fromisoformat(row["at"]),
        reason=row["reason"],
        actor=row["actor"],
    )


def connect(db_path: Path, timeout_s: float) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), WAL, full sync, foreign keys."""
    conn = sqlite3.connect(
        str(db_path), timeout=timeout_s, isolation_level=None, check_same_thread=False
    )
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {int(timeout_s * 1000)}")
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        logger.warning("registry %s: journal mode %s, not WAL", db_path, mode)
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def row(conn: sqlite3.Connection, version: str) -> ModelRecord | None:
    """The record of ``version`` (None if it is not registered)."""
    found = conn.execute("SELECT * FROM versions WHERE version = ?", (version,)).fetchone()
    return None if found is None else record_of(found)


def require(conn: sqlite3.Connection, version: str) -> ModelRecord:
    """The record of ``version``; :class:`NotFoundError` if it is not registered."""
    rec = row(conn, version)
    if rec is None:
        raise NotFoundError(f"version {version} is not registered")
    return rec


def occupant(conn: sqlite3.Connection, stage: str) -> ModelRecord | None:
    """The version in ``stage`` now (None if empty)."""
    found = conn.execute("SELECT * FROM versions WHERE stage = ?", (stage,)).fetchone()
    return None if found is None else record_of(found)


def revision(conn: sqlite3.Connection) -> int:
    """The state's revision (grows with every committed change)."""
    return int(conn.execute("SELECT value FROM meta WHERE key = 'revision'").fetchone()[0])


def bump_revision(conn: sqlite3.Connection) -> int:
    """Count one more committed change; returns the new revision."""
    conn.execute("UPDATE meta SET value = value + 1 WHERE key = 'revision'")
    return revision(conn)


def insert_history(
    conn: sqlite3.Connection,
    version: str,
    from_stage: str | None,
    to_stage: str,
    at: str,
    reason: str,
    actor: str,
) -> None:
    """Append one stage change to the history."""
    conn.execute(
        "INSERT INTO history (version, from_stage, to_stage, at, reason, actor) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (version, from_stage, to_stage, at, reason, actor),
    )


def set_stage(
    conn: sqlite3.Connection,
    rec: ModelRecord,
    to_stage: str,
    at: str,
    reason: str,
    actor: str,
) -> None:
    """Move ``rec`` to ``to_stage`` (refused if it changed stage meanwhile) and record it."""
    cur = conn.execute(
        "UPDATE versions SET stage = ?, stage_changed_at = ? WHERE version = ? AND stage = ?",
        (to_stage, at, rec.version, rec.stage),
    )
    if cur.rowcount != 1:
        raise RegistryError(f"{rec.version} changed stage concurrently")
    insert_history(conn, rec.version, rec.stage, to_stage, at, reason, actor)


def archive_occupant(
    conn: sqlite3.Connection, stage: str, incoming: str, at: str, actor: str
) -> ModelRecord | None:
    """Free ``stage``'s slot for ``incoming``: its current holder goes to archived."""
    old = occupant(conn, stage)
    if old is None or old.version == incoming:
        return None
    set_stage(conn, old, ARCHIVED, at, f"superseded by {incoming} in {stage}", actor)
    logger.info("archived %s: superseded by %s in %s", old.version, incoming, stage)
    return old


def insert_version(
    conn: sqlite3.Connection,
    *,
    version: str,
    at: str,
    artefact: str,
    backend: str,
    objective: str,
    feature_service: str,
    data_version: str,
    metrics_json: str,
    params_json: str,
    notes: str,
) -> None:
    """Insert a newly registered version's row, as a candidate since ``at``."""
    conn.execute(
        "INSERT INTO versions (version, registered_at, artefact, backend, objective, "
        "feature_service, data_version, metrics, params, notes, stage, stage_changed_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            version,
            at,
            artefact,
            backend,
            objective,
            feature_service,
            data_version,
            metrics_json,
            params_json,
            notes,
            CANDIDATE,
            at,
        ),
    )
