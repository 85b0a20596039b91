"""The Prometheus alert rules: valid YAML of the rule-file shape, every expression parses
(promql-parser, the PromQL grammar of the Rust crate) and reads only series the feed API
exports (with labels they carry) or the KPI gauges ``reco_kpi{kpi, arm}``."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.serving.metrics import Metrics, ModelInfo

RULES = Path(__file__).parents[3] / "components" / "monitoring" / "alerts.yml"
#: written by the kpis stage (components/monitoring/kpis_stage.py, ``reco_kpi{kpi, arm}``)
KPI_METRIC, KPI_LABELS = "reco_kpi", {"kpi", "arm"}
KPI_NAMES = {
    "dau", "d1_retention", "d7_retention", "sessions_per_user", "session_length_s", "time_spent_s",
    "ctr", "engagement_rate", "negative_rate", "coverage", "creator_gini", "impressions",
}  # fmt: skip


def exported() -> dict[str, set[str]]:
    """Sample name -> label names of every series the app's metrics expose (a labelled metric
    has no sample before its first child, so the names come from each metric's own record:
    prometheus_client keeps them in ``_name``, ``_type`` and ``_labelnames``)."""
    m = Metrics.create()
    out: dict[str, set[str]] = {}
    metrics = [getattr(m, f.name) for f in dataclasses.fields(m)]
    for metric in (x for x in metrics if hasattr(x, "_type")):
        suffixes = {
            "counter": ["_total"],
            "histogram": ["_bucket", "_sum", "_count"],
            "gauge": [""],
        }
        for suf in suffixes[metric._type]:
            out.setdefault(metric._name + suf, set()).update(metric._labelnames)
    assert set(out) >= {f.name + "_total" for f in m.registry.collect() if f.type == "counter"}
    for fam in ModelInfo(lambda: {"production": "v1"}).collect():  # read at scrape time
        out.setdefault(fam.name, set()).update(fam.samples[0].labels)
    return out


def selectors(node: Any) -> list[tuple[str | None, set[str], list[tuple[str, str]]]]:
    """(metric name, matched label names, equality matchers) of every vector selector."""
    import promql_parser as pp

    found = []
    if isinstance(node, pp.VectorSelector):
        ms = node.matchers.matchers
        found.append(
            (
                node.name,
                {m.name for m in ms},
                [(m.name, m.value) for m in ms if str(m.op) == "MatchOp.Equal"],
            )
        )
    for attr in ("lhs", "rhs", "expr", "param", "vector_selector"):
        child = getattr(node, attr, None)
        if child is not None and type(child).__module__ == "promql_parser":
            found += selectors(child)
    for child in getattr(node, "args", None) or []:
        found += selectors(child)
    return found


def rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return [r for g in doc["groups"] for r in g["rules"]]


def test_rule_file_shape() -> None:
    doc = yaml.safe_load(RULES.read_text())
    assert set(doc) == {"groups"} and {g["name"] for g in doc["groups"]} == {
        "reco-serving",
        "reco-kpis",
    }
    names = [r["alert"] for r in rules()]
    assert len(names) == len(set(names)) >= 10
    for r in rules():
        assert set(r) <= {"alert", "expr", "for", "labels", "annotations"}, r
        assert r["labels"]["severity"] in {"page", "ticket"} and r["annotations"]["summary"]


@pytest.mark.parametrize("rule", rules(), ids=lambda r: r["alert"])
def test_expression_parses_and_reads_real_series(rule: dict[str, Any]) -> None:
    import promql_parser as pp

    series = exported()
    found = selectors(pp.parse(rule["expr"]))
    assert found, "an alert must read at least one series"
    for name, labels, equal in found:
        if name == KPI_METRIC:
            assert labels <= KPI_LABELS
            assert all(v in KPI_NAMES for k, v in equal if k == "kpi"), equal
            continue
        assert name in series, f"{name} is not exported by the feed API: {sorted(series)}"
        assert labels <= series[name], (
            f"{name} has labels {series[name]}, the rule matches {labels}"
        )


def test_the_checker_catches_a_wrong_series() -> None:
    import promql_parser as pp

    (name, _, _), *_ = selectors(pp.parse('rate(reco_request_total{endpoint="recommend"}[5m])'))
    assert name not in exported()
    with pytest.raises(ValueError):
        pp.parse("sum(rate(reco_errors_total[5m])")
