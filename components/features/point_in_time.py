"""Point-in-time training data: a FeatureService's features as of each label row, never after.

:func:`training_frame` / :func:`historical_features` take the FeatureService's views and run
Feast's point-in-time join (``get_historical_features``) once per feature view, then apply the
service's on-demand views (Feast's ``transform_arrow``). One call per view works around two
behaviours of Feast 0.67's file (Dask) offline store that lose training rows: an entity row is
dropped when the entity has feature rows but none inside ``[t - ttl, t]`` (e.g. every label on a
user's first day), and rows sharing join keys and timestamp are collapsed (feast-dev/feast#6787).
Here every label row comes back, with nulls where nothing was known.
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
from feast import FeatureService, FeatureStore
from feast.on_demand_feature_view import OnDemandFeatureView

from components.features.feast_repo import odfv_names, service_of


def _as_utc_ns(s: pd.Series) -> pd.Series:
    return pd.to_datetime(s, utc=True).astype("datetime64[ns, UTC]")


def _wanted_features(
    store: FeatureStore, svc: FeatureService, odfvs: set[str]
) -> tuple[dict[str, list[str]], list[str]]:
    """Per batch view, the features to join: the service's own, plus what its on-demand views
    read but it does not list (returned second, to drop after the on-demand views ran)."""
    wanted: dict[str, list[str]] = {}
    for proj in svc.feature_view_projections:
        if proj.name not in odfvs:
            wanted.setdefault(proj.name, []).extend(f.name for f in proj.features)
    helpers: list[str] = []
    for proj in svc.feature_view_projections:
        if proj.name in odfvs:
            for src in store.get_on_demand_feature_view(
                proj.name
            ).source_feature_view_projections.values():
                have = wanted.setdefault(src.name, [])
                extra = [f.name for f in src.features if f.name not in have]
                have.extend(extra)
                helpers.extend(extra)
    return wanted, helpers


def _join_view(
    store: FeatureStore, frame: pd.DataFrame, view: str, names: list[str], timestamp_col: str
) -> pd.DataFrame:
    """``frame`` with one batch view's features as of each row (a left join: nulls when none)."""
    fv = store.get_feature_view(view)
    keys = list(fv.join_keys)
    need = [*keys, timestamp_col]
    missing = [k for k in keys if k not in frame]
    if missing:
        raise KeyError(f"{view} needs entity columns {missing}")
    unique = (
        frame[need]
        .dropna()
        .drop_duplicates()
        .rename(columns={timestamp_col: "event_timestamp"})
    )
    unique = unique.astype({k: "string" for k in keys})  # the Parquet sources' key dtype
    if len(unique):
        got = store.get_historical_features(
            entity_df=unique, features=[f"{view}:{n}" for n in names]
        ).to_df()
        got = got.rename(columns={"event_timestamp": timestamp_col})
        got[timestamp_col] = _as_utc_ns(got[timestamp_col])
        got = (
            got[[*need, *names]]
            .drop_duplicates(subset=need, keep="last")
            .astype({k: object for k in keys})
        )
    else:
        got = pd.DataFrame(
            {c: pd.Series(dtype=frame[c].dtype) for c in need} | {n: [] for n in names}
        )
    frame = frame.drop(columns=[n for n in names if n in frame])
    return frame.astype({k: object for k in keys}).merge(got, on=need, how="left")


def _apply_on_demand(
    store: FeatureStore, svc: FeatureService, odfvs: set[str], frame: pd.DataFrame
) -> pd.DataFrame:
    """Add the service's on-demand features, computed by the views' own transformations."""
    for proj in svc.feature_view_projections:
        if proj.name not in odfvs:
            continue
        odfv: OnDemandFeatureView = store.get_on_demand_feature_view(proj.name)
        inputs = {f.name for src in odfv.source_request_sources.values() for f in src.schema}
        inputs |= {
            f.name for src in odfv.source_feature_view_projections.values() for f in src.features
        }
        table = pa.Table.from_pandas(
            frame[[c for c in frame.columns if c in inputs]], preserve_index=False
        )
        out = odfv.transform_arrow(table, full_feature_names=False)
        for f in proj.features:
            frame[f.name] = out.column(f.name).to_pandas()
    return frame


def historical_features(
    store: FeatureStore,
    entity_df: pd.DataFrame,
    service: str | FeatureService,
    *,
    timestamp_col: str = "event_timestamp",
) -> pd.DataFrame:
    """Point-in-time features of a FeatureService for each entity row, in the input order.

    Features are the latest row with ``event_timestamp <= row time`` (within the view's TTL);
    rows with no such feature row get nulls. See the module docstring for why each view is its
    own ``get_historical_features`` call.
    """
    svc = service_of(store, service)
    odfvs = odfv_names(store)
    frame = entity_df.reset_index(drop=True).copy()
    frame[timestamp_col] = _as_utc_ns(frame[timestamp_col])
    wanted, helpers = _wanted_features(store, svc, odfvs)
    for view, names in wanted.items():
        frame = _join_view(store, frame, view, names, timestamp_col)
    frame = _apply_on_demand(store, svc, odfvs, frame)
    return frame.drop(columns=[h for h in helpers if h in frame and h not in entity_df])


def request_columns(timestamps: pd.Series, frame: pd.DataFrame | None = None) -> pd.DataFrame:
    """The request-source columns for rows at ``timestamps`` (device / network / offset taken
    from ``frame`` when it has them)."""
    ts = pd.to_datetime(timestamps, utc=True)
    n = len(ts)
    src = frame if frame is not None else pd.DataFrame(index=range(n))
    out = pd.DataFrame(index=src.index)
    out["request_ts_s"] = (
        ts.astype("datetime64[ns, UTC]").astype("int64") // 1_000_000_000
    ).to_numpy()
    out["utc_offset_min"] = (
        src["utc_offset_min"].fillna(0).astype("int64") if "utc_offset_min" in src else 0
    )
    for col in ("device_type", "network"):
        out[col] = src[col].astype(object).where(src[col].notna(), None) if col in src else None
    return out


def training_frame(
    store: FeatureStore,
    labels: pd.DataFrame,
    service: str | FeatureService = "ranker_v2",
    *,
    timestamp_col: str = "timestamp",
) -> pd.DataFrame:
    """Training rows: the label frame (user_id, content_id, timestamp, labels...) with the
    service's features as of each label's timestamp, never after. ``creator_id`` is taken from the
    content profile as of that time when the labels do not carry it."""
    for col in ("user_id", "content_id", timestamp_col):
        if col not in labels:
            raise KeyError(f"labels need a {col!r} column")
    svc = service_of(store, service)
    frame = labels.reset_index(drop=True).copy()
    frame["event_timestamp"] = _as_utc_ns(frame[timestamp_col])
    req = request_columns(frame["event_timestamp"], frame)
    for col in req.columns:
        frame[col] = req[col]
    needs_creator = any(
        "creator_id" in store.get_feature_view(p.name).join_keys
        for p in svc.feature_view_projections
        if p.name not in odfv_names(store)
    )
    if needs_creator and "creator_id" not in frame:
        lookup = FeatureService(
            name="_creator_lookup",
            features=[store.get_feature_view("content_profile")[["c_creator_id"]]],
        )
        owners = historical_features(store, frame[["content_id", "event_timestamp"]], lookup)
        frame["creator_id"] = owners["c_creator_id"].to_numpy()
    return historical_features(store, frame, svc)
