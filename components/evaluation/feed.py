"""The batch feed: the top-K lists of given users from the pipeline's trained artefacts.

The same composition as the evaluation's scoring (:meth:`components.pipeline.Pipeline.score`),
but from the stage outputs rather than a refit: the saved embeddings, the latest ranker and the
project's feature store, as of the end of ``data/interim``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from components.core.catalog import DataPaths
from components.core.frames import arrow_string_mapper
from components.data.ingestion.pseudonyms import pseudonym
from components.evaluation.protocols import cut_of
from components.evaluation.report import by_score
from components.features.feast_repo import StoreSettings, open_store
from components.pipeline import Pipeline
from components.ranking.artefact import load
from components.retrieval.embedding_model import load_model
from components.retrieval.interactions import read_interim

FEED_COLUMNS = ["user_id", "rank", "content_id", "score", "source"]


def read_tables(paths: DataPaths) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Clean events with every column (the feature stage needs them all), content and users."""
    _, content, users = read_interim(paths)
    events = pq.read_table(paths.of("interim_events")).to_pandas(types_mapper=arrow_string_mapper)
    return events, content, users


def batch_feed(
    params: Mapping[str, Any], paths: DataPaths, user_ids: Sequence[str], k: int, key: bytes | None = None
) -> pd.DataFrame:
    """The top-``k`` feed of ``user_ids`` from the pipeline's trained artefacts (embeddings, the
    latest ranker, the project's feature store), as of the end of ``data/interim``: candidates
    from every source, ranked, contents the user already interacted with excluded.

    Ids may be raw (pseudonymised here with ``key``, as ingestion does) or pseudonyms already.
    Returns ``user_id`` (as given), ``rank``, ``content_id``, ``score``, ``source``.
    """
    pipe = Pipeline.of(params)
    events, content, users = read_tables(paths)
    model = load(paths.of("ranker") / paths.of("ranker_latest").read_text().strip())
    fitted = pipe.fit(events, content, users, cut_of(events), embeddings=load_model(paths.of("embeddings")))
    if model.feature_service:
        fitted.store = open_store(paths, StoreSettings.from_params(params))
    known = set(fitted.retriever.model.user_ids.astype(str))
    given = {(u if u in known or key is None else pseudonym(u, key)): u for u in (str(x) for x in user_ids)}
    scored = pipe.score(fitted, model, sorted(given))
    top = by_score(scored).groupby("user_id", sort=False).head(k).copy()
    top["rank"] = top.groupby("user_id", sort=False).cumcount() + 1
    top["user_id"] = top["user_id"].map(given)
    return top[FEED_COLUMNS].reset_index(drop=True)
