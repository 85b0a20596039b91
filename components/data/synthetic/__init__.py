"""The synthetic data generator's core: a latent world, a session plan and the simulated event log.

The modules, in the order a drop is drawn:

* :mod:`~components.data.synthetic.world` (with :mod:`~components.data.synthetic.tables`):
  users with Dirichlet category interests and favourite creators, creators, items with latent
  quality, duration, upload time and popularity; the observable users/content/truth tables;
* :mod:`~components.data.synthetic.plan`: sessions per user, their starts (hourly intensity,
  weekend lift, >= 3 h apart) and their device and network;
* :mod:`~components.data.synthetic.simulate`: the impressions of each session, the item each
  shows and what the user did with it;
* :mod:`~components.data.synthetic.parts`: the log cut at exactly ``n_events``, in parts of
  ``chunk_events`` rows, with a share ``bad_event_rate`` of deliberately invalid rows.

Hand-written on NumPy: no maintained library simulates short-video sessions with latent
interests (Faker and SDV model tabular marginals, not behaviour). Everything per event is
vectorised; Python loops run only over event types, digits, and items (upload metadata JSON).
Memory is bounded by ``chunk_events`` plus the session plan (about 35 bytes per planned session).
Every draw comes from a stream seeded by ``base.seed`` and a purpose key, so a drop is the same
byte for byte on every run.
"""
