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

It also pins OpenBLAS (NumPy's and SciPy's) for the processes it starts in, before they load it,
so that a stage computes the same floats on any x86-64 machine. OpenBLAS picks its kernels by
CPU and splits a product by thread count, and both change the order of float sums: on the
same machine and code, the embeddings stage gave four different versions: AVX-512 kernels on 2
threads or on 1, AVX2 kernels on 2 threads or on 1 (OpenBLAS caps its threads at the CPUs the
process may use, so a 1-core machine differs from a 2-core one whatever the setting above 1).
Those last digits move the candidate lists, and with them the ranker and every evaluation
figure (MovieLens NDCG@10 0.4009 in one session, 0.4057 in the next on a faster machine, same
code). The kernels are pinned to ``Haswell`` (AVX2, on every x86-64 CPU of the last decade; not
set where ``/proc/cpuinfo`` shows no AVX2) and the threads to 1. Both are defaults: set
``OPENBLAS_CORETYPE`` / ``OPENBLAS_NUM_THREADS`` to trade reproducibility for speed on a large
machine. LightGBM and XGBoost are pinned by their own params (``ranking.n_threads``,
``deterministic``).
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


def _reproducible_blas() -> None:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    if "OPENBLAS_CORETYPE" in os.environ:
        return
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            flags = next((line for line in f if line.startswith("flags")), "")
    except OSError:  # not Linux: OpenBLAS chooses
        return
    if " avx2" in flags:
        os.environ["OPENBLAS_CORETYPE"] = "Haswell"


_without_typeguard_instrumentation()
_reproducible_blas()
