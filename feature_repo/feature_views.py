"""Batch feature views (one per feature table) with their time-to-live.

TTL is how old a snapshot may be and still be joined to a training row. Feast's online stores
return the latest value regardless of age; the serving fetcher
(``components.features.online.ServingFeatureFetcher``) applies the same TTLs at request time, so
training and serving agree on what has expired.
"""

from datetime import timedelta

from data_sources import (
    content_profile_source,
    content_source,
    creator_source,
    user_realtime_push,
    user_source,
)
from entities import content, creator, user
from feast import FeatureView

from components.features.columns import (
    CONTENT_PROFILE_COLUMNS,
    CONTENT_STATS_COLUMNS,
    CREATOR_COLUMNS,
    USER_ACTIVITY_COLUMNS,
    USER_REALTIME_COLUMNS,
)
from components.features.feast_repo import feast_fields

user_activity = FeatureView(
    name="user_activity",
    entities=[user],
    ttl=timedelta(days=30),
    schema=feast_fields(USER_ACTIVITY_COLUMNS),
    source=user_source,
    online=True,
    description="Engagement by type and window, decayed engagement, rates, sessions, devices, categories.",
    tags={"entity": "user", "refresh": "daily"},
)

user_realtime = FeatureView(
    name="user_realtime",
    entities=[user],
    ttl=timedelta(days=2),
    schema=feast_fields(USER_REALTIME_COLUMNS),
    source=user_realtime_push,
    online=True,
    description="Last-hour activity, last event time, last viewed contents; updated by push.",
    tags={"entity": "user", "refresh": "push"},
)

content_stats = FeatureView(
    name="content_stats",
    entities=[content],
    ttl=timedelta(days=30),
    schema=feast_fields(CONTENT_STATS_COLUMNS),
    source=content_source,
    online=True,
    description="Engagement totals, rates, growth and age of a content.",
    tags={"entity": "content", "refresh": "daily"},
)

content_profile = FeatureView(
    name="content_profile",
    entities=[content],
    ttl=timedelta(0),  # static attributes never expire
    schema=feast_fields(CONTENT_PROFILE_COLUMNS),
    source=content_profile_source,
    online=True,
    description="Category, duration, text vector, hashtag frequencies, visual/audio vectors.",
    tags={"entity": "content", "refresh": "on upload"},
)

creator_stats = FeatureView(
    name="creator_stats",
    entities=[creator],
    ttl=timedelta(days=90),
    schema=feast_fields(CREATOR_COLUMNS),
    source=creator_source,
    online=True,
    description="Followers, follow/unfollow rates, content count, average engagement.",
    tags={"entity": "creator", "refresh": "daily"},
)
