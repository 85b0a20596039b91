"""A request's candidates (:class:`CandidateAssembler`): the user's row of the exported
candidate snapshot (or the cold row), plus the FAISS neighbours of the user's real-time interest
(source ``realtime``) and the uploads since the export closest to the user (source ``fresh``,
:class:`~components.serving.uploads.Uploads`), minus the contents seen since load and the
moderated ones."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from components.serving.artifacts import ArtifactSet
from components.serving.catalogue import Catalogue
from components.serving.stream import StreamState
from components.serving.uploads import Uploads


@dataclass(frozen=True)
class Candidates:
    """One request's candidates, row-aligned: catalogue positions, content ids, source names;
    the user's pair-feature normalisers (``stats``) and whether the batch had no events of the
    user (``cold``)."""

    positions: np.ndarray
    content_ids: np.ndarray
    sources: np.ndarray
    stats: np.ndarray
    cold: bool


@dataclass
class CandidateAssembler:
    """Snapshot rows and real-time neighbours (``realtime_candidates`` of them, searched under
    ``index_lock``), filtered by the stream state."""

    artifacts: ArtifactSet
    catalogue: Catalogue
    stream: StreamState
    realtime_candidates: int
    index_lock: threading.Lock
    uploads: Uploads | None = None
    fresh_candidates: int = 0

    def __post_init__(self) -> None:
        self.snapshot = self.artifacts.snapshot
        self._source_names = np.asarray(self.snapshot.source_names, dtype=object)

    def row(self, user_id: str) -> int:
        """The user's snapshot row; the cold row for a user the export did not know."""
        row = self.snapshot.row(user_id)
        return row if row >= 0 else self.snapshot.cold_row

    def stats(self, user_id: str) -> np.ndarray:
        """The user's pair-feature normalisers (those of the user's snapshot row)."""
        return np.asarray(self.snapshot.stats[self.row(user_id)])

    def snapshot_candidates(self, user_id: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
        """(catalogue positions, source names, pair stats, cold) of the user's candidates: the
        snapshot's row (the batch's users, and users with declared categories but no events,
        both exported), else the cold row; cold: the batch had no events of the user."""
        r = self.row(user_id)
        pos, codes, _ = self.snapshot.candidates(r)
        return pos, self._source_names[codes], np.asarray(self.snapshot.stats[r]), not bool(self.artifacts.known[r])

    def realtime(self, vector: np.ndarray) -> np.ndarray:
        """Catalogue positions of the fresh interest's nearest contents in the FAISS index
        (source ``realtime``)."""
        with self.index_lock:
            _, ids = self.artifacts.index.search(vector.reshape(1, -1), self.realtime_candidates)
        return ids[0][ids[0] >= 0].astype(np.int64)

    def assemble(self, user_id: str, fresh: tuple[np.ndarray, float] | None) -> Candidates:
        """The snapshot's candidates minus those seen since load and the moderated ones, plus
        the unseen, unmoderated neighbours of the fresh interest (when there is one)."""
        pos, sources, stats, cold = self.snapshot_candidates(user_id)
        noted = self.catalogue.to_positions(self.stream.noted_of(user_id))
        drop = np.concatenate([noted, self.stream.moderated_pos])
        if len(drop):
            keep = ~np.isin(pos, drop)
            pos, sources = pos[keep], sources[keep]
        excluded: frozenset[str] | None = None
        extras = []
        if fresh is not None:
            extras.append(("realtime", self.realtime(fresh[0])))
        if self.uploads is not None and self.fresh_candidates > 0 and len(self.uploads):
            query = np.asarray(self.artifacts.queries[self.row(user_id)], dtype=np.float64)
            if fresh is not None:
                norm = float(np.linalg.norm(query))
                query = (query / norm if norm > 0 else query) + fresh[0]
            extras.append(("fresh", self.uploads.candidates(query, self.fresh_candidates)))
        ids = self.catalogue.ids
        for name, extra in extras:
            extra = extra[~np.isin(extra, pos)]
            if excluded is None:
                excluded = self.stream.seen(user_id) | self.stream.moderated
            extra = np.asarray([p for p in extra if ids[p] not in excluded], dtype=np.int64)
            pos = np.concatenate([pos, extra])
            sources = np.concatenate([sources, np.full(len(extra), name, dtype=object)])
        if len(pos) == 0:
            raise LookupError("no candidates left after seen / moderated filters")
        return Candidates(pos, ids[pos], sources, stats, cold)
