"""Typed loading of ``params.yaml``: one ``base`` section plus one section per stage."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from components.core.paths import PROJECT_ROOT, DataPaths

DEFAULT_PARAMS = PROJECT_ROOT / "params.yaml"


def load_params(path: str | Path | None = None) -> dict[str, Any]:
    """Read the params file (default: the project's ``params.yaml``)."""
    p = Path(path) if path is not None else DEFAULT_PARAMS
    with p.open(encoding="utf-8") as fh:
        params = yaml.safe_load(fh) or {}
    if not isinstance(params, dict) or "base" not in params:
        raise ValueError(f"{p}: expected a mapping with a 'base' section")
    return params


def deep_merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``top`` laid over it, nested mappings merged key by key (per-data-set
    ``overrides`` sections of params.yaml)."""
    out = dict(base)
    for k, v in top.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


def demo_mode() -> bool:
    """True when running the embedded demo (``RECO_DEMO=1``), which allows a built-in HMAC key."""
    return os.environ.get("RECO_DEMO", "").strip().lower() in {"1", "true", "yes"}


def stage_parser(doc: str | None) -> argparse.ArgumentParser:
    """The arguments every stage CLI shares: ``--params`` and ``--root``."""
    parser = argparse.ArgumentParser(description=(doc or "").strip().splitlines()[0] if doc else None)
    parser.add_argument("--params", default=None, help="params.yaml (default: the project's)")
    parser.add_argument("--root", default=None, help="project root for inputs/outputs (default: this project)")
    return parser


def stage_context(args: argparse.Namespace) -> tuple[dict[str, Any], DataPaths]:
    """Set up logging for a stage CLI and return its params and paths."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    paths = DataPaths(Path(args.root)) if args.root else DataPaths()
    return load_params(args.params), paths
