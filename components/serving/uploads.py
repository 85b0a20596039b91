"""Contents uploaded after the artefact set was exported (:class:`Uploads`): served within
seconds of their ``content_upload`` event, before any retraining.

A ``content_upload`` accepted by ``POST /v1/events`` (or read from the stream on restart, or
committed by another worker: every path reaches :meth:`Uploads.observe` through the event
sink's listeners) gets its cold-start vector from its metadata with the export's content
encoder: the vector the batch pipeline would give it (:meth:`ContentEncoder.embed`, the ridge
map from side features to the collaborative space included). The content is then appended to
the catalogue, to the item vectors (real-time interest, DPP, the ``content`` pair score) and to
the ANN index's overlay of added contents, so

* the real-time neighbours of a user's fresh interest (source ``realtime``) can be uploads;
* every request scores the most recent ``serving.fresh_uploads_kept`` uploads against the
  user's content profile (plus the fresh interest) and adds the best
  ``serving.fresh_candidates`` (source ``fresh``: the batch pipeline's source of that name,
  between exports). The ranker sees their ``content`` score; their other pair and item features
  are unknown (NaN) until the next export, so exploration and the ``content`` score carry them.

The next export puts them in the catalogue for good; an upload the loaded catalogue already
holds is ignored. Memory: the first upload copies the exported item vectors (memory-mapped and
shared by the workers) into each worker's own buffer; past a few million contents, the overlay
would rather hold the added rows alone. Why hand-written: it is bookkeeping over the set's own arrays (a handful of
appends); the embedding is the project's encoder and the search is FAISS.
"""

from __future__ import annotations

import logging
import pickle
import threading
import time
from collections import deque
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from components.core.integrity import verified_bytes
from components.serving.artifacts import ArtifactSet
from components.serving.catalogue import Catalogue

log = logging.getLogger(__name__)

UPLOAD = "content_upload"


class Uploads:
    """The uploads since the export: their vectors joined to the set's arrays and index."""

    def __init__(self, artifacts: ArtifactSet, catalogue: Catalogue, lock: threading.Lock, kept: int) -> None:
        self.artifacts = artifacts
        self.catalogue = catalogue
        self.lock = lock  # the engine's retrieval lock (FAISS searches, item-vector reads)
        self.recent: deque[int] = deque(maxlen=kept)  # catalogue positions, oldest first
        self.added = 0
        self.seconds = 0.0  # spent embedding and indexing, in all
        self._encoder: Any = None
        self._buffer: np.ndarray | None = None  # item vectors with spare rows (see _grown)
        self._write = threading.Lock()  # one writer at a time (request threads only read)

    def __len__(self) -> int:
        return len(self.recent)

    def encoder(self) -> Any:
        """The export's content encoder, read (and checked against the manifest's SHA-256)
        the first time an upload arrives."""
        if self._encoder is None:
            path = self.artifacts.encoder_file
            if path is None:
                raise FileNotFoundError("the artefact set has no encoder.pkl: run `dvc repro export`")
            data = verified_bytes(
                path, self.artifacts.manifest.get("files", {}).get(path.name), recorded_in="the artefact set's manifest.json"
            )
            self._encoder = pickle.loads(data)  # its SHA-256 is the one the export recorded
        return self._encoder

    def observe(self, events: pd.DataFrame) -> int:
        """Event-sink listener: embed and add the batch's uploads the catalogue does not hold;
        returns how many were added. A failure is logged: the events are stored all the same,
        and the uploads reach serving with the next export."""
        if events is None or len(events) == 0 or "event_type" not in events:
            return 0
        ups = events[events["event_type"].astype(str) == UPLOAD]
        if ups.empty:
            return 0
        try:
            return self._add(ups)
        except Exception:
            log.exception("%d uploads not added to the serving index (they will be with the next export)", len(ups))
            return 0

    def _add(self, ups: pd.DataFrame) -> int:
        from components.data.ingestion.stream import upload_content

        t0 = time.perf_counter()
        cols = [c for c in ("event_type", "content_id", "creator_id", "timestamp", "metadata") if c in ups]
        rows = upload_content([pa.Table.from_pandas(ups[cols], preserve_index=False)])
        with self._write:
            rows = rows[self.catalogue.lookup(rows["content_id"].astype(str).tolist()) < 0].reset_index(drop=True)
            if rows.empty:
                return 0
            vectors = np.asarray(self.encoder().embed(rows), dtype=np.float32)
            art = self.artifacts
            with self.lock:
                # every array a position indexes grows before the position can be found
                art.item_vectors = self._grown(vectors)
                art.pair = replace(art.pair, item_unified=art.item_vectors)
                art.content_ids = [*art.content_ids, *rows["content_id"].astype(str)]
                positions = self.catalogue.extend(rows["content_id"].astype(str).tolist())
                art.index.add(vectors, positions)
            self.recent.extend(int(p) for p in positions)
            self.added += len(positions)
        self.seconds += time.perf_counter() - t0
        log.info("%d uploads added to the serving index in %.0f ms", len(positions), 1000 * (time.perf_counter() - t0))
        return len(positions)

    def _grown(self, vectors: np.ndarray) -> np.ndarray:
        """The item vectors with ``vectors`` appended, as a view of a buffer with spare rows
        (the first upload copies the exported, memory-mapped array once, with room for an
        eighth more; later uploads fill the room, so a batch costs O(its size), not
        O(catalogue)). Rows already published are never written again, so readers holding the
        previous view stay consistent."""
        current = self.artifacts.item_vectors
        n, m = len(current), len(vectors)
        buf = self._buffer
        if buf is None or n + m > len(buf) or current.base is not buf:
            buf = np.empty((n + m + max(1024, n // 8), current.shape[1]), dtype=np.float32)
            buf[:n] = current
            self._buffer = buf
        buf[n : n + m] = vectors
        return buf[: n + m]

    def candidates(self, query: np.ndarray, k: int) -> np.ndarray:
        """Catalogue positions of the ``k`` recent uploads closest to ``query`` (the newest
        first when the query is empty)."""
        recent = np.fromiter(self.recent, dtype=np.int64, count=len(self.recent))
        if k <= 0 or len(recent) == 0:
            return np.zeros(0, dtype=np.int64)
        q = np.asarray(query, dtype=np.float64)
        if not np.any(q):
            return recent[::-1][:k]
        scores = np.asarray(self.artifacts.item_vectors[recent], dtype=np.float64) @ q
        order = np.argsort(-scores, kind="stable")[:k]
        return recent[order]
