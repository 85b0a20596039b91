"""On-demand feature views: computed from the request, identically offline and online.

The bodies import the pure functions from ``components.features.context`` (Feast stores the source text
and re-executes it), so training rows, Feast online lookups and the serving fast path all run the
same code.
"""

import pandas as pd
from data_sources import request_context
from feast.on_demand_feature_view import on_demand_feature_view
from feature_views import user_realtime

from components.features.columns import CONTEXT_COLUMNS, RECENCY_COLUMNS
from components.features.feast_repo import feast_fields


@on_demand_feature_view(
    sources=[request_context],
    schema=feast_fields(CONTEXT_COLUMNS),
    mode="pandas",
    description="Hour of day as sin/cos(2*pi*hour/24), weekday, device type, network speed.",
)
def context(inputs: pd.DataFrame) -> pd.DataFrame:
    from components.features.context import context_frame

    return context_frame(inputs)


@on_demand_feature_view(
    sources=[user_realtime[["rt_last_event_ts_s"]], request_context],
    schema=feast_fields(RECENCY_COLUMNS),
    mode="pandas",
    description="Hours between the user's last event and the request.",
)
def user_recency(inputs: pd.DataFrame) -> pd.DataFrame:
    from components.features.context import recency_frame

    return recency_frame(inputs)
