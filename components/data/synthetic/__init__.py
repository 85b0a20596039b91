"""The synthetic data generator's core: a latent world, a session plan and the simulated event log.

The generator plays the producer side of the pipeline: it writes a drop folder in the format
described at the bottom of :mod:`components.core.schema` (``events/part-NNNNN.parquet``,
``users.parquet``, ``content.parquet``) plus ``truth.parquet``, the latent per-user category
interests, so later stages can be evaluated against true preferences.

Latent world
    Users have Dirichlet interests over categories (concentrated on a few), a few favourite
    creators, a heavy-tailed activity level, a preferred device (with matching OS) and a usual
    network. Creators have a main category; items inherit it (mostly), and have a latent quality,
    a lognormal duration (5-180 s), an upload time (60 % before ``start``, the rest spread over
    the period), tags, a description, an audio id and, for about half of them, a 16-d visual
    embedding clustered by category.

Sessions and impressions
    Each user gets sessions whose starts follow an hourly intensity (evening peak, weekend lift)
    and are at least 3 h apart, so a 30-minute inactivity gap always separates them; a session
    never lasts longer than 2 h. Inside a session impressions follow each other after the watch
    time plus a few seconds. The item of an impression is interest-driven (category from the
    user's interests, item by popularity x trend at that hour among items already uploaded), from
    a favourite creator, or - with probability ``exploration_share`` - uniform over uploaded items.

Outcome
    ``p = sigmoid(0.8 log-interest + 0.5 quality + favourite creator + night - 3g - web)`` shapes a
    Beta watch ratio (``view``; ``complete_view`` at >= 0.95; ``replay`` when it exceeds 1;
    ``skip`` under 0.1) and the odds of ``like``/``share``/``comment``/``save``/``follow``
    (high p) and ``hide``/``report``/``unfollow`` (low p). In-period uploads emit
    ``content_upload`` events from a pseudo user ``user_<creator_id>``.

Exactly ``n_events`` rows are written: sessions are planned with a margin (every impression
yields at least its ``view``), visited in a seeded random order and the stream is cut at
``n_events``, which thins sessions uniformly instead of cutting off the end of the period.
Each part is sorted by timestamp. A share ``bad_event_rate`` of rows is then made invalid in one
of five ways (negative watch time, far-future timestamp, duplicate ``event_id`` of an earlier
row, event type ``zap``, unknown content id) while keeping the Parquet types valid.

Hand-written on NumPy: no maintained library simulates short-video sessions with latent
interests (Faker and SDV model tabular marginals, not behaviour). Everything per event is
vectorised; Python loops run only over event types, digits, and items (upload metadata JSON).
Memory is bounded by ``chunk_events`` plus the session plan (about 35 bytes per planned session).
"""
