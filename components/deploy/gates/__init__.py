"""The promotion gates, one per module (``offline``, ``shadow``, ``canary``), on the shared
helpers of ``common``. Each returns a :class:`components.core.verdict.Verdict`; the stage
wiring (registry moves, files, CLI) is :mod:`components.deploy.promote`."""
