"""Per-user serving state computed in batch: the fast path's candidates and pair normalisers.

Scoring every source over the whole catalogue per request (what
:meth:`components.retrieval.retriever.Retriever.retrieve` and ``pair_features`` do) costs time linear in
the catalogue: ~40 ms a request on 5,000 contents, seconds on a million. Serving instead reads,
for each known user, what the batch computed at the same cut:

* ``positions`` / ``sources`` / ``scores`` – the merged candidates of
  :func:`components.retrieval.retriever.candidate_table` (CSR rows: ``indptr[r]:indptr[r + 1]``);
* ``stats`` – :meth:`~components.retrieval.retriever.Retriever.pair_stats`, each pair source's mean and
  standard deviation over the user's catalogue, so that
  :meth:`~components.retrieval.retriever.Retriever.pair_features_at` gives the training features' exact
  values for any few contents (the candidates, and the real-time ANN neighbours added per
  request) without touching the rest of the catalogue;
* a ``cold`` row: the candidates and normalisers of a user nobody knows (trending, fresh,
  popular), shared by every unknown user without declared categories.

The export stage builds it (:func:`components.retrieval.export.build_snapshot`) into the serving
artefact set; the arrays are saved as ``.npy`` files and loaded memory-mapped, so several worker
processes on one machine share one copy through the page cache.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

#: the id under which the snapshot keeps the candidates of an unknown user
COLD_USER = "__cold__"
_ARRAYS = ("indptr", "positions", "sources", "scores", "stats")


@dataclass
class CandidateSnapshot:
    user_ids: pd.Index  # row r's user; the last row is COLD_USER
    indptr: np.ndarray  # int64 [n_users + 1]
    positions: np.ndarray  # int32 [n]: catalogue positions (the FAISS index's order)
    sources: np.ndarray  # int8 [n]: index into source_names
    scores: np.ndarray  # float32 [n]: the merge's per-source normalised retrieval score
    stats: np.ndarray  # float32 [n_users, n_pair_sources, 2]: mean, std
    source_names: list[str]
    n_items: int  # catalogue size the positions refer to

    def __post_init__(self) -> None:
        n = len(self.user_ids)
        if self.indptr.shape != (n + 1,) or self.stats.shape[0] != n:
            raise ValueError(
                f"snapshot arrays disagree: {n} users, indptr {self.indptr.shape}, stats {self.stats.shape}"
            )
        if not (len(self.positions) == len(self.sources) == len(self.scores) == int(self.indptr[-1])):
            raise ValueError("snapshot candidate arrays disagree in length")
        if n == 0 or self.user_ids[-1] != COLD_USER:
            raise ValueError(f"the snapshot's last row must be {COLD_USER!r}")
        self.cold_row = n - 1
        self._rows = {str(u): i for i, u in enumerate(self.user_ids[:-1])}

    def row(self, user_id: str) -> int:
        """The user's row, -1 when the batch did not know the user."""
        return self._rows.get(user_id, -1)

    def candidates(self, row: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(positions int64, source codes, scores) of a row."""
        a, b = int(self.indptr[row]), int(self.indptr[row + 1])
        return self.positions[a:b].astype(np.int64), self.sources[a:b], self.scores[a:b]

    @property
    def n_users(self) -> int:
        return len(self.user_ids) - 1

    # ---- construction

    @classmethod
    def from_table(
        cls,
        table: pd.DataFrame,
        content_ids: Sequence[str],
        stats: np.ndarray,
        user_ids: Sequence[str],
    ) -> CandidateSnapshot:
        """From a :func:`~components.retrieval.retriever.candidate_table` (``user_id, content_id, score,
        source, rank``) holding ``user_ids`` (the last one ``COLD_USER``) and their pair stats."""
        users = pd.Index([str(u) for u in user_ids])
        catalogue = pd.Index([str(c) for c in content_ids])
        t = table.assign(
            _row=users.get_indexer(pd.Index(table["user_id"].astype(str))),
            _pos=catalogue.get_indexer(pd.Index(table["content_id"].astype(str))),
        )
        bad = int(((t["_row"] < 0) | (t["_pos"] < 0)).sum())
        if bad:
            raise ValueError(f"{bad} candidate rows name a user or content outside the snapshot")
        t = t.sort_values(["_row", "rank"], kind="stable")
        names = sorted(t["source"].astype(str).unique().tolist())
        codes = pd.Categorical(t["source"].astype(str), categories=names).codes
        counts = np.bincount(t["_row"].to_numpy(), minlength=len(users))
        return cls(
            user_ids=users,
            indptr=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
            positions=t["_pos"].to_numpy(dtype=np.int32),
            sources=np.asarray(codes, dtype=np.int8),
            scores=t["score"].to_numpy(dtype=np.float32),
            stats=np.asarray(stats, dtype=np.float32),
            source_names=names,
            n_items=len(catalogue),
        )

    # ---- files

    def save(self, directory: Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        for name in _ARRAYS:
            np.save(directory / f"{name}.npy", getattr(self, name))
        meta = {
            "user_ids": [str(u) for u in self.user_ids],
            "source_names": self.source_names,
            "n_items": self.n_items,
        }
        (directory / "snapshot.json").write_text(json.dumps(meta))
        return directory

    @classmethod
    def load(cls, directory: Path, mmap: bool = True) -> CandidateSnapshot:
        directory = Path(directory)
        meta = json.loads((directory / "snapshot.json").read_text())
        arrays = {
            # plain ndarray views of the mapping: np.memmap's Python-level slicing costs per request
            name: np.load(directory / f"{name}.npy", mmap_mode="r" if mmap else None).view(np.ndarray)
            for name in _ARRAYS
        }
        return cls(
            user_ids=pd.Index(meta["user_ids"]),
            source_names=list(meta["source_names"]),
            n_items=int(meta["n_items"]),
            **arrays,
        )


__all__ = ["COLD_USER", "CandidateSnapshot"]
