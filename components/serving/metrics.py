"""The serving app's Prometheus series (:class:`Metrics`), exact with several worker processes.

With one process the series live in the app's own registry. With ``RECO_WORKERS`` > 1 the
launcher (:mod:`components.serving.workers`) points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh
folder before any worker starts; prometheus_client then keeps every worker's values in
memory-mapped files there, and ``/metrics`` answers with a
:class:`~prometheus_client.multiprocess.MultiProcessCollector` over all of them, so whichever
worker a scrape reaches counts every worker's requests. The launcher calls
:func:`mark_dead` for a worker that exits.

Only counters and histograms are kept this way (they sum over processes). The serving model
versions are not a gauge (a multiprocess gauge keeps a dead label's last value in its file);
they are read from the registry at scrape time by :class:`ModelInfo`, a collector, the same in
both modes.

Feast's own ``feast.metrics`` (imported lazily by its online reads) sets
``PROMETHEUS_MULTIPROC_DIR`` to a temporary folder of its own when the variable is unset, so
the mode is read from prometheus_client when the app's metrics are created, never from the
variable at scrape time; the launcher sets both spellings (``PROMETHEUS_MULTIPROCESS_DIR`` too,
feast's) to its folder, for one worker as for several, so feast never picks a folder of its own.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: the older spelling, which feast.metrics reads and sets
FEAST_MULTIPROC_ENV = "PROMETHEUS_MULTIPROCESS_DIR"


def multiprocess_dir() -> str | None:
    """The multiprocess folder of this process, None in single-process mode. prometheus_client
    chooses its mode once, when first imported (in-memory values, or memory-mapped files in the
    folder the variable names then); the variable alone can mislead, since feast.metrics may set
    it later, so the mode is read from prometheus_client itself."""
    from prometheus_client import values

    if values.ValueClass is values.MutexValue:
        return None
    path = os.environ.get(MULTIPROC_ENV)
    return path if path and os.path.isdir(path) else None


class ModelInfo:
    """``reco_model_info{arm, version} 1`` for each model in service, read at scrape time."""

    def __init__(self, versions: Callable[[], Mapping[str, str | None]]) -> None:
        self._versions = versions

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        fam = GaugeMetricFamily("reco_model_info", "Serving model versions (value 1)", labels=["arm", "version"])
        for arm, version in self._versions().items():
            if version:
                fam.add_metric([arm, version], 1.0)
        yield fam


class KpiGauges:
    """``reco_kpi{kpi, arm}`` from the kpis stage's ``metrics/kpis.json`` (its ``last_day``
    block: arm -> kpi -> value), read at scrape time; nothing when the file is missing or
    unreadable (a file, not a multiprocess gauge: every worker shows the same figures)."""

    def __init__(self, path: Any) -> None:
        self._path = path

    def collect(self) -> Iterator[Any]:
        import logging
        from pathlib import Path

        import orjson
        from prometheus_client.core import GaugeMetricFamily

        fam = GaugeMetricFamily(
            "reco_kpi", "The kpis stage's figures of the last logged day (metrics/kpis.json)", labels=["kpi", "arm"]
        )
        last: Any = {}
        if self._path is not None and Path(self._path).is_file():
            try:
                last = orjson.loads(Path(self._path).read_bytes()).get("last_day", {}).get("arms", {})
            except (OSError, orjson.JSONDecodeError, AttributeError):
                logging.getLogger(__name__).warning("unreadable KPI file %s", self._path)
        for arm, kpis in (last or {}).items():
            for name, value in (kpis or {}).items():
                if isinstance(value, int | float) and value == value:  # numbers, not NaN
                    fam.add_metric([name, arm], float(value))
        yield fam


@dataclass
class Metrics:
    """Prometheus series of one app (its own registry, so tests can run several apps)."""

    registry: Any
    requests: Any
    latency: Any
    errors: Any
    degraded: Any
    events: Any
    multiproc_dir: str | None = None  # set: values in shared files, scraped over all workers

    @classmethod
    def create(cls) -> Metrics:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        reg = CollectorRegistry()
        return cls(
            registry=reg,
            requests=Counter("reco_requests_total", "Requests by endpoint and status", ["endpoint", "status"], registry=reg),
            latency=Histogram(
                "reco_request_seconds", "Request latency by endpoint", ["endpoint"], registry=reg,
                buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            ),
            errors=Counter("reco_errors_total", "Internal errors by endpoint", ["endpoint"], registry=reg),
            degraded=Counter("reco_degraded_total", "Feeds answered by the fallback, by reason", ["reason"], registry=reg),
            events=Counter("reco_events_total", "Posted events by outcome", ["outcome"], registry=reg),
            multiproc_dir=multiprocess_dir(),
        )

    def scrape(self, versions: Callable[[], Mapping[str, str | None]], kpi_file: Any = None) -> bytes:
        """The exposition text: this process's registry, or every worker's files, plus the model
        versions and the KPI gauges (read at scrape time, the same in both modes)."""
        from prometheus_client import CollectorRegistry, generate_latest

        if self.multiproc_dir is None:
            reg = CollectorRegistry()
            reg.register(_Forward(self.registry))
        else:
            from prometheus_client.multiprocess import MultiProcessCollector

            reg = CollectorRegistry()
            MultiProcessCollector(reg, path=self.multiproc_dir)
        reg.register(ModelInfo(versions))
        reg.register(KpiGauges(kpi_file))
        return generate_latest(reg)


class _Forward:
    """A registry's series as one collector of another registry."""

    def __init__(self, registry: Any) -> None:
        self._registry = registry

    def collect(self) -> Iterator[Any]:
        yield from self._registry.collect()


def mark_dead(pid: int) -> None:
    """Tell the multiprocess files that worker ``pid`` is gone (its live gauges are dropped;
    its counters keep counting in the totals)."""
    path = multiprocess_dir()
    if path is not None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, path)
