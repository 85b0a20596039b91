"""The memory-growth diagnostic (RECO_TRACEMALLOC_S): what grows is named by its source line."""

from __future__ import annotations

import tracemalloc

from components.core.settings import Settings
from components.serving import memtrace


def test_the_line_holding_new_memory_is_reported_first() -> None:
    stop = memtrace.start(3600.0)
    try:
        held = [bytes(1024) for _ in range(20_000)]  # ~20 MB allocated on this line
        report = memtrace.report()
        first = report.split(" | ")[1]
        assert __file__ in first and "MB in" in first
        assert float(first.split(" MB")[0]) >= 19.0
        del held
    finally:
        stop.set()
        tracemalloc.stop()


def test_it_is_off_unless_the_environment_asks() -> None:
    assert Settings.from_env({}).tracemalloc_s is None
    assert Settings.from_env({"RECO_TRACEMALLOC_S": "300"}).tracemalloc_s == 300.0
