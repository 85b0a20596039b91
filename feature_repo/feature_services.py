"""One FeatureService per ranking-model version: training and serving read the same list."""

from feast import FeatureService
from feature_views import (
    content_profile,
    content_stats,
    creator_stats,
    user_activity,
    user_realtime,
)
from on_demand_feature_views import context, user_recency

PROFILE_SCALARS = [
    "c_category_idx",
    "c_duration_s",
    "c_duration_imputed",
    "c_n_tags",
    "c_n_hashtags",
    "c_hashtag_freq_mean",
    "c_hashtag_freq_max",
    "c_has_visual",
    "c_has_audio",
]

ranker_v1 = FeatureService(
    name="ranker_v1",
    features=[
        user_activity,
        content_stats,
        content_profile[PROFILE_SCALARS],
        creator_stats,
        context,
    ],
    description="Ranker v1: batch user, content and creator snapshots plus request context.",
    tags={"model": "ranker", "version": "1"},
)

ranker_v2 = FeatureService(
    name="ranker_v2",
    features=[
        user_activity,
        user_realtime[
            [
                "rt_events_1h",
                "rt_engagements_1h",
                "rt_views_1h",
                "rt_skips_1h",
            ]
        ],
        user_recency,
        content_stats,
        content_profile[[*PROFILE_SCALARS, "c_text_vec", "c_visual_vec"]],
        creator_stats,
        context,
    ],
    description="Ranker v2: v1 plus pushed real-time user activity, recency and text/visual vectors.",
    tags={"model": "ranker", "version": "2"},
)
