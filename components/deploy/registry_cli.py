"""The registry's command line (``python -m components.deploy.registry``): list, show,
deployment, register, promote, archive, rollback, check."""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
import sqlite3
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from components.core.catalog import DataPaths
from components.deploy.records import ModelRecord
from components.deploy.registry import ModelRegistry, run
from components.deploy.transitions import ARCHIVED, STAGES, RegistryError, TransitionError


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
