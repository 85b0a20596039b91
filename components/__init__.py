"""The recommender's components (stages, serving, deployment), one package per part of the loop.

Importing this package switches off typeguard's ``@typechecked`` before Feast is imported.
Feast decorates its definition classes (``FeatureView``, ``DataSource``, ``OnDemandFeatureView``
and others) with it, and the decorator re-reads, re-parses and recompiles each decorated class's
source on every import, with no cache. That is 6.5 s of a 10 s ``import feast`` on a 2-core
machine, paid by every stage, Airflow task, server worker and CLI call that touches the feature
store, and dozens of times by the test suite. Typeguard's own off switch is ``python -O``
(``__debug__`` false), which would also strip every ``assert`` in the process, so only the
decorator is switched off here; the checks it adds are argument-type checks of Feast's
constructors, which the project's feature repository passes (its tests build every definition).
``RECO_TYPECHECK_FEAST=1`` keeps them (e.g. while editing ``feature_repo/``).
"""

from __future__ import annotations

import os
import sys


def _without_typeguard_instrumentation() -> None:
    if os.environ.get("RECO_TYPECHECK_FEAST") == "1" or "feast" in sys.modules:
        return  # asked for, or too late: Feast's classes are already instrumented
    try:
        import typeguard
    except ImportError:  # Feast without typeguard: nothing to switch off
        return

    def typechecked(target=None, **_options):  # type: ignore[no-untyped-def]
        return (lambda decorated: decorated) if target is None else target

    typeguard.typechecked = typechecked


_without_typeguard_instrumentation()
