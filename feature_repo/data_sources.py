"""Data sources: the feature Parquet files, the push source and the request source.

File paths are relative to the repository folder (Feast resolves them against the
``repo_path`` of the store's configuration), so the same registry works from the project root
and from a temporary copy laid out as ``<root>/feature_repo`` + ``<root>/data/features``.
"""

import posixpath

from feast import FileSource, PushSource, RequestSource

from components.core.catalog import artefact
from components.features.columns import FILES, REQUEST_COLUMNS
from components.features.feast_repo import feast_fields

#: The features folder relative to this repository folder (``../data/features``).
FEATURES_DIR = posixpath.relpath(artefact("features").path, artefact("feature_repo").path)

user_source = FileSource(
    name="user_features_source",
    path=f"{FEATURES_DIR}/{FILES['user']}",
    timestamp_field="event_timestamp",
    description="Daily user snapshots (components.features.compute).",
)

content_source = FileSource(
    name="content_features_source",
    path=f"{FEATURES_DIR}/{FILES['content']}",
    timestamp_field="event_timestamp",
    description="Daily content engagement snapshots.",
)

content_profile_source = FileSource(
    name="content_profile_source",
    path=f"{FEATURES_DIR}/{FILES['content_profile']}",
    timestamp_field="event_timestamp",
    description="Static content attributes, stamped when the content became available.",
)

creator_source = FileSource(
    name="creator_features_source",
    path=f"{FEATURES_DIR}/{FILES['creator']}",
    timestamp_field="event_timestamp",
    description="Daily creator snapshots.",
)

#: Real-time user updates from the serving side (event stream); offline rows come from the
#: daily snapshots in the user file.
user_realtime_push = PushSource(
    name="user_realtime_push",
    batch_source=user_source,
    description="Fresh rt_* user features pushed by the event consumer.",
)

#: Fields that come with a ranking request (and, for training rows, with the label).
request_context = RequestSource(
    name="request_context",
    schema=feast_fields(REQUEST_COLUMNS),
    description="request_ts_s (epoch s), utc_offset_min, device_type, network.",
)
