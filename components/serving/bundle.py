"""The serving state a process loads: retriever, candidate snapshot, seen contents, reports.

:meth:`ServingBundle.fit` computes it from the project's artefacts (interim events, embeddings,
the FAISS index, the candidates table), which is what ``make serve`` does at start-up on the
default data. :meth:`ServingBundle.save` writes it to a directory and :meth:`ServingBundle.load`
reads it back without touching the events: for catalogues where fitting at start-up is too slow,
for several worker processes, and for the 1M-item load benchmark, whose synthetic catalogue is
written as a bundle (``benchmarks/synthetic_catalogue.py``).

Layout: ``bundle.json`` (what it holds), ``index/`` (:meth:`ContentIndex.save`), ``snapshot/``
(:meth:`CandidateSnapshot.save`, memory-mapped at load), ``state.pkl`` (the retriever without
its FAISS index, seen contents, reporters, the optional item feature matrix).
"""

from __future__ import annotations

import json
import logging
import pickle
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from components.core.catalog import DataPaths
from components.core.config import Params
from components.serving.snapshot import CandidateSnapshot

if TYPE_CHECKING:
    from components.features.item_cache import ItemFeatureCache
    from components.retrieval.candidates import Retriever

log = logging.getLogger(__name__)

FORMAT = 1


def seen_by_user(events: pd.DataFrame) -> dict[str, frozenset[str]]:
    """Contents each user interacted with (any event with a content but an upload)."""
    from components.retrieval.embeddings import interaction_events

    ev = interaction_events(events)
    frame = pd.DataFrame(
        {"u": ev["user_id"].astype(str).to_numpy(), "c": ev["content_id"].astype(str).to_numpy()}
    ).drop_duplicates()
    return {str(u): frozenset(g.tolist()) for u, g in frame.groupby("u", sort=False)["c"]}


def reporters_by_content(events: pd.DataFrame) -> dict[str, set[str]]:
    """The distinct users who reported each content."""
    rep = events[(events["event_type"].astype(str) == "report") & events["content_id"].notna()]
    return {
        str(c): set(g.astype(str))
        for c, g in rep.groupby(rep["content_id"].astype(str), sort=False)["user_id"]
    }


@dataclass
class ServingBundle:
    retriever: Retriever
    snapshot: CandidateSnapshot
    seen: dict[str, frozenset[str]]
    reporters: dict[str, set[str]]
    items: ItemFeatureCache | None = None  # None: read from the feature store's offline sources
    description: str = "fitted from the project's artefacts"

    @property
    def now(self) -> pd.Timestamp:
        return pd.Timestamp(self.retriever.now)

    @classmethod
    def fit(cls, params: Mapping[str, Any], paths: DataPaths) -> ServingBundle:
        """Everything from the project's artefacts at the end of its events (the candidates
        stage's cut): the saved FAISS index (rebuilt if it does not match the embeddings), the
        retriever's sources, the candidates stage's table (recomputed if it does not match)."""
        from components.retrieval.candidates import (
            CandidateParams,
            ContentIndex,
            Retriever,
        )
        from components.retrieval.embeddings import (
            EmbeddingParams,
            interaction_events,
            load_model,
            read_interim,
        )

        dataset = Params.of(params).data.source
        cp = CandidateParams.from_params(params, dataset)
        events, content, users = read_interim(paths)
        emb = load_model(paths.of("embeddings"))
        index = None
        try:
            index = ContentIndex.load(paths.of("faiss_index"))
            if index.content_ids != [str(c) for c in emb.item_ids]:
                log.warning("FAISS index does not match the embeddings' catalogue: rebuilding")
                index = None
        except (OSError, ValueError, KeyError) as exc:
            log.warning("no usable FAISS index under %s (%s): building one", paths.of("faiss_index"), exc)
        now = pd.Timestamp(interaction_events(events)["timestamp"].max()) + pd.Timedelta(milliseconds=1)
        retr = Retriever.fit(emb, events, content, users, now, cp, EmbeddingParams.from_params(params), index=index)
        who = [str(u) for u in retr.model.user_ids]
        table = None
        path = paths.of("candidates_table")
        if path.exists():
            table = pd.read_parquet(path, columns=["user_id", "content_id", "score", "source", "rank"])
        try:
            snapshot = CandidateSnapshot.build(retr, who, cp.per_user, table=table)
        except (ValueError, KeyError) as exc:
            log.warning("candidates table %s unusable (%s): recomputing", path, exc)
            snapshot = CandidateSnapshot.build(retr, who, cp.per_user)
        return cls(retr, snapshot, seen_by_user(events), reporters_by_content(events))

    def save(self, directory: Path) -> Path:
        """Write the bundle (replacing one already there, atomically by directory rename)."""
        directory = Path(directory)
        tmp = directory.with_name(f".{directory.name}.tmp")
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        index = self.retriever.index
        index.save(tmp / "index")
        self.snapshot.save(tmp / "snapshot")
        state = {
            "retriever": replace(self.retriever, index=None),  # type: ignore[arg-type]  # saved apart
            "seen": self.seen,
            "reporters": self.reporters,
            "items": self.items,
        }
        with open(tmp / "state.pkl", "wb") as fh:
            pickle.dump(state, fh, protocol=pickle.HIGHEST_PROTOCOL)
        meta = {
            "format": FORMAT,
            "description": self.description,
            "now": self.now.isoformat(),
            "contents": index.ntotal,
            "users": self.snapshot.n_users,
            "item_features": self.items is not None,
        }
        (tmp / "bundle.json").write_text(json.dumps(meta, indent=2) + "\n")
        if directory.exists():
            shutil.rmtree(directory)
        tmp.rename(directory)
        return directory

    @classmethod
    def load(cls, directory: Path) -> ServingBundle:
        from components.retrieval.candidates import ContentIndex

        t0 = time.perf_counter()
        directory = Path(directory)
        meta = json.loads((directory / "bundle.json").read_text())
        if meta.get("format") != FORMAT:
            raise ValueError(f"bundle {directory} has format {meta.get('format')}, expected {FORMAT}")
        with open(directory / "state.pkl", "rb") as fh:
            state = pickle.load(fh)  # our own artefact, written by save()
        retr = state["retriever"]
        retr.index = ContentIndex.load(directory / "index")
        snapshot = CandidateSnapshot.load(directory / "snapshot")
        if retr.index.ntotal != snapshot.n_items:
            raise ValueError(f"bundle {directory}: index holds {retr.index.ntotal} contents, snapshot {snapshot.n_items}")
        log.info("serving bundle %s loaded in %.1f s: %s", directory, time.perf_counter() - t0, meta)
        return cls(
            retr,
            snapshot,
            state["seen"],
            state["reporters"],
            state.get("items"),
            str(meta.get("description", "")),
        )


__all__ = ["ServingBundle", "reporters_by_content", "seen_by_user"]
