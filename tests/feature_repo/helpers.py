"""Tiny hand-built event logs and the feature roots built from them (used by the Feast tests)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from components.core.catalog import DataPaths
from components.features.compute import compute_features, write_tables
from components.features.params import FeatureParams
from tests.fixtures import frames
from tests.fixtures.frames import NO_USERS
from tests.fixtures.params import project_settings


def events_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Clean events (preprocess output): views watched half-way unless a ``ratio`` is given, no
    category unless given, no watch durations."""
    return frames.events_frame(rows, view_ratio=0.5, category=None, watch_column=False)


CONTENT = [
    {
        "content": "c1",
        "creator": "k1",
        "category": "food",
        "upload": -120.0,
        "tags": ["#food", "noodles"],
        "description": "spicy noodles",
        "visual": [1.0, 0.0, 0.5],
    },
    {
        "content": "c2",
        "creator": "k1",
        "category": "pets",
        "upload": 26.0,
        "tags": ["#cats"],
        "description": "cat jumps #cats",
    },
    {
        "content": "c3",
        "creator": "k2",
        "category": "food",
        "upload": None,
        "tags": [],
        "description": "street food tour",
        "visual": [0.0, 1.0, 0.0],
    },
    {
        "content": "c4",
        "creator": "k2",
        "category": "music",
        "upload": -24.0,
        "tags": ["#live"],
        "description": "live set",
    },
]


def content_frame(rows: list[dict[str, Any]] = CONTENT) -> pd.DataFrame:
    """The contents of ``rows`` (default :data:`CONTENT`), 15 s long unless given."""
    return frames.content_frame(rows, duration_s=15.0)


def default_events() -> list[dict[str, Any]]:
    """Three users, four contents (c4 never seen), two creators, over four days."""
    rows: list[dict[str, Any]] = []
    plan = [
        (
            "u1",
            0,
            [(1, "view", "c1"), (1.1, "like", "c1"), (1.2, "view", "c3"), (1.3, "skip", "c1")],
        ),
        ("u2", 0, [(9, "view", "c1"), (9.2, "share", "c1"), (9.3, "follow", None)]),
        (
            "u1",
            1,
            [
                (10, "view", "c2"),
                (10.1, "like", "c2"),
                (10.2, "comment", "c2"),
                (22.5, "view", "c3"),
            ],
        ),
        ("u3", 1, [(3, "view", "c3"), (3.1, "hide", "c3")]),
        (
            "u2",
            2,
            [
                (12, "view", "c2"),
                (12.2, "save", "c2"),
                (12.4, "view", "c1"),
                (12.5, "unfollow", None),
            ],
        ),
        (
            "u1",
            3,
            [
                (8, "view", "c1"),
                (8.1, "complete_view", "c1"),
                (8.2, "like", "c1"),
                (23.9, "view", "c2"),
            ],
        ),
    ]
    for user, day, evs in plan:
        for hour, typ, content in evs:
            creator = "k1" if content is None else None
            cat = {"c1": "food", "c2": "pets", "c3": "food"}.get(content or "")
            rows.append(
                {
                    "t": day * 24 + hour,
                    "type": typ,
                    "user": user,
                    "content": content,
                    "creator": creator,
                    "category": cat,
                    "device": "android" if user == "u2" else "ios",
                    "os": "android" if user == "u2" else "ios",
                    "network": "4g" if user == "u3" else "wifi",
                }
            )
    return rows


def build_root(
    root: Path, rows: list[dict[str, Any]] | None = None, content: pd.DataFrame | None = None
) -> DataPaths:
    """Compute the feature tables for an event log and write them under ``root/data/features``."""
    paths = DataPaths(root)
    p = project_settings(FeatureParams, text_dim=4, last_n_viewed=5)
    ev = events_frame(rows if rows is not None else default_events())
    tables = compute_features(
        ev, content if content is not None else content_frame(), NO_USERS, p
    )
    write_tables(tables, p, paths.features)
    return paths
