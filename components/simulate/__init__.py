"""The user simulator: a population of the synthetic world's users playing against the running API.

Like KuaiSim (Zhao et al., 2023), three models drive each simulated user, all from the latent
truth of the synthetic generator (:mod:`components.data.synthetic`: the users' category
interests and favourite creators, the items' quality, category and duration, and its outcome
model), so that what a user does follows the same law as the data the models were trained on:

* the **instant-feedback model** (:mod:`~components.simulate.models`): what the user does with
  each content a feed shows (view and watch time, complete view, replay, skip, like, share,
  comment, save, follow / unfollow, hide, report): the generator's own outcome model;
* the **leave model**: after each feed page the session ends with a probability that falls as
  the page's satisfaction (the latent engagement probability of what was shown) rises;
* the **return model**: the gap to the user's next session shortens as the user's mood (an
  exponential average of session satisfaction) rises, so retention, DAU and time spent depend
  on how well the feeds served them.

:mod:`~components.simulate.run` plays the population over HTTP against ``127.0.0.1`` only
(``GET /v1/recommend`` with a simulated request time, ``POST /v1/events`` in batches), on a
simulated clock that starts at the synthetic data's end, with new uploads arriving during the
run; it records every event it sent and the server's answer (``data/simulate/sent.parquet``) so
that each accepted event can be reconciled with the stream. Every draw comes from a stream
seeded by ``base.seed``, the user and the session, so a run is the same for the same answers.
:mod:`~components.simulate.loop` (``make simulate``) closes the loop: traffic, retraining on the
stream, live shadow and canary, promotion or rollback, KPIs.

Hand-written: KuaiSim and RecSim NG are research code bases that train their own user models
inside a Python environment loop (no HTTP), are not maintained as pip libraries, and would not
reuse this project's world; what is needed here is a thin client of this project's own API.
"""
