"""Model registry: which ranker version is candidate, shadow, canary or production, and why.

Storage
    One folder (default ``data/registry/`` under the project root): ``registry.db``, a SQLite
    database (:mod:`components.deploy.store`), and ``models/<version>/``, a copy of every
    registered ranker artefact (:mod:`components.deploy.artefacts`), so a ``dvc repro`` or a
    cleaned ``data/models`` never pulls a model from under serving.

Transactions
    Every state change is ONE ``BEGIN IMMEDIATE`` … ``COMMIT`` transaction that also bumps
    ``meta.revision``, so a crash anywhere leaves the previous valid state, and serving notices
    a change with one cheap ``SELECT`` (:class:`~components.deploy.model_cache.ModelCache`).

Stages
    The rules are :mod:`components.deploy.transitions`'. Moving a version into an occupied slot
    archives the occupant ("superseded by …") in the same transaction, so promoting canary →
    production retires the old production version. :meth:`ModelRegistry.rollback` archives the
    production version and restores the one that was production immediately before it (like
    ``kubectl rollout undo``: a second rollback undoes the first).

Why not MLflow
    Its model registry needs a tracking server and a heavy dependency for what is here four
    small tables' worth of state; the standard library's :mod:`sqlite3` gives the
    transactions and the crash safety, so this module is written by hand on it. Artefact
    integrity (content hash = version) is :func:`components.ranking.artefact.load`'s.

The command line is :mod:`components.deploy.registry_cli` (``python -m components.deploy.registry``).
"""

from __future__ import annotations

import builtins
import logging
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from components.core.catalog import DataPaths, artefact
from components.deploy import store
from components.deploy.artefacts import (
    MODELS_DIR,
    clean_tmp,
    manifest_version,
    require_artefact,
    resolve_model_dir,
    store_artefact,
)
from components.deploy.lineage import data_version, pipeline_metrics, training_metrics
from components.deploy.records import (
    Deployment,
    HistoryEntry,
    ModelRecord,
    RollbackResult,
    dumps,
    stamp,
)
from components.deploy.transitions import (
    ARCHIVED,
    CANARY,
    CANDIDATE,
    PRODUCTION,
    SHADOW,
    SLOT_STAGES,
    STAGES,
    ArtefactError,
    RegistryError,
    TransitionError,
    check_transition,
    find_problems,
)
from components.ranking.artefact import load
from components.ranking.model import RankerModel

logger = logging.getLogger(__name__)

DB_NAME = artefact("registry_db").relative().name


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
        self._conn = store.connect(self.db_path, timeout_s)
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
                    for statement in store.SCHEMA:
                        conn.execute(statement)
            schema = self._conn.execute(
                "SELECT value FROM meta WHERE key = 'schema_version'"
            ).fetchone()
            if schema is None or int(schema[0]) > store.SCHEMA_VERSION:
                raise RegistryError(
                    f"{self.db_path}: schema version {None if schema is None else schema[0]}, "
                    f"this code knows {store.SCHEMA_VERSION}"
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
        at = stamp(now)
        src = resolve_model_dir(Path(model_dir))
        version = manifest_version(src)
        metrics_json = dumps(dict(metrics))
        with self._write() as conn:
            existing = store.row(conn, version)
            if existing is not None:
                logger.info("%s is already registered (%s)", version, existing.stage)
                return existing
            clean_tmp(self.models_dir)
            model = store_artefact(self.models_dir, src, version)
            params = {
                "ranker": model.params.model_dump(),
                "heads": {h: s.weight for h, s in model.heads.items()},
                "feature_cols": model.feature_cols,
                "created_from": model.created_from,
                "library_version": model.library_version,
            }
            store.insert_version(
                conn,
                version=version,
                at=at,
                artefact=f"{MODELS_DIR}/{version}",
                backend=model.backend,
                objective=model.objective,
                feature_service=model.feature_service,
                data_version=data_version,
                metrics_json=metrics_json,
                params_json=dumps(params),
                notes=reason,
            )
            store.insert_history(
                conn, version, None, CANDIDATE, at, reason or "registered", actor or self.actor
            )
            revision = store.bump_revision(conn)
            rec = store.require(conn, version)
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
        at = stamp(now)
        who = actor or self.actor
        with self._write() as conn:
            rec = store.require(conn, version)
            check_transition(version, rec.stage, to_stage)
            if to_stage == ARCHIVED:
                if not reason.strip():
                    raise TransitionError(f"archiving {version} needs a reason")
            else:
                if to_stage in SLOT_STAGES:
                    require_artefact(self.directory, rec)
                    store.archive_occupant(conn, to_stage, version, at, who)
            store.set_stage(conn, rec, to_stage, at, reason, who)
            revision = store.bump_revision(conn)
            new = store.require(conn, version)
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
        at = stamp(now)
        who = actor or self.actor
        with self._write() as conn:
            current = store.occupant(conn, PRODUCTION)
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
            previous = store.require(conn, row["version"])
            if previous.stage != ARCHIVED:  # cannot happen: production is only left to archived
                raise RegistryError(
                    f"rollback refused: previous production {previous.version} is {previous.stage}"
                )
            require_artefact(self.directory, previous)
            why = reason or "rollback"
            store.set_stage(conn, current, ARCHIVED, at, f"rolled back: {why}", who)
            store.set_stage(
                conn,
                previous,
                PRODUCTION,
                at,
                f"restored by rollback from {current.version}: {why}",
                who,
            )
            revision = store.bump_revision(conn)
            result = RollbackResult(
                archived=store.require(conn, current.version),
                restored=store.require(conn, previous.version),
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
            return store.revision(self._conn)

    def get(self, version: str) -> ModelRecord:
        """The record of ``version`` (:class:`NotFoundError` if it is not registered)."""
        with self._lock:
            return store.require(self._conn, version)

    def find(self, version: str) -> ModelRecord | None:
        """The record of ``version``, or None if it is not registered."""
        with self._lock:
            return store.row(self._conn, version)

    def history(self, version: str | None = None) -> builtins.list[HistoryEntry]:
        """Stage changes, oldest first (of one version, or all)."""
        with self._read() as conn:
            if version is None:
                rows = conn.execute("SELECT * FROM history ORDER BY id").fetchall()
            else:
                store.require(conn, version)
                rows = conn.execute(
                    "SELECT * FROM history WHERE version = ? ORDER BY id", (version,)
                ).fetchall()
        return [store.entry_of(r) for r in rows]

    def deployment(self) -> Deployment:
        """The production, canary and shadow versions and the revision, from one snapshot."""
        with self._read() as conn:
            return Deployment(
                production=store.occupant(conn, PRODUCTION),
                canary=store.occupant(conn, CANARY),
                shadow=store.occupant(conn, SHADOW),
                revision=store.revision(conn),
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
        return None if row is None else store.record_of(row)

    def artefact_dir(self, version: str) -> Path:
        """The registered copy of ``version``'s artefact (``models/<version>``)."""
        return self.directory / self.get(version).artefact

    artefact_path = artefact_dir

    def load(self, version: str, *, predict_threads: int = 1) -> RankerModel:
        """The registered copy of ``version``, loaded (and so verified against its hash)."""
        path = self.artefact_dir(version)
        try:
            model = load(path, predict_threads=predict_threads)
        except (OSError, ValueError, KeyError) as exc:
            raise ArtefactError(f"{version}: {exc}") from exc
        if model.version != version:  # the folder holds another (complete) artefact
            raise ArtefactError(f"{path}: holds version {model.version}, the registry record says {version}")
        return model

    def check(self, *, verify_models: bool = False) -> builtins.list[str]:
        """Problems with the registry (empty when valid); removes stale ``.tmp-*`` folders.

        Invariants: at most one version per slot, each version's stage equal to its last
        history row's, artefact folders present and holding their version (``verify_models``
        also loads each, checking the content hash). A complete folder without a row (a
        register that crashed between its rename and its commit) is no problem: nothing refers
        to it, and registering that version again replaces it."""
        problems: list[str] = []
        with self._write() as conn:  # the write lock: no copy is in progress while cleaning
            clean_tmp(self.models_dir)
            quick = [r[0] for r in conn.execute("PRAGMA quick_check").fetchall()]
            if quick != ["ok"]:
                problems.append(f"sqlite quick_check: {'; '.join(map(str, quick))}")
            index = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = 'versions_one_per_slot'"
            ).fetchone()
            if index is None:
                problems.append("the one-version-per-slot index is missing")
            records = [store.record_of(r) for r in conn.execute("SELECT * FROM versions ORDER BY version")]
            history = [store.entry_of(r) for r in conn.execute("SELECT * FROM history ORDER BY id")]
        problems += find_problems(records, history)
        for rec in records:
            folder = self.directory / rec.artefact
            if rec.artefact != f"{MODELS_DIR}/{rec.version}":
                problems.append(f"{rec.version}: artefact path {rec.artefact!r} is not its own")
            if not folder.is_dir():
                problems.append(f"{rec.version}: artefact folder {folder} is missing")
                continue
            try:
                found = manifest_version(folder)
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
        return [store.record_of(r) for r in rows]



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


if __name__ == "__main__":
    from components.deploy.registry_cli import main

    raise SystemExit(main())
