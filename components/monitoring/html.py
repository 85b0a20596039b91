"""The drift report page: a summary of the verdict, then Evidently's report of every table."""

from __future__ import annotations

from components.monitoring.report import DriftResult


def render_html(result: DriftResult) -> str:
    """One standalone page: a summary of the verdict, then Evidently's report of every tested
    table (its widgets and test results), rendered with Evidently's page template."""
    from evidently.core.metric_types import render_widgets
    from evidently.legacy.renderers.html_widgets import (
        CounterData,
        counter,
        group_widget,
        text_widget,
    )

    v = result.report
    failed = v.verdict.failed_checks
    w = v.windows
    lines = [
        f"**{v.reason}**",
        "",
        f"Current window: {w.current_start.isoformat()} to {w.current_end.isoformat()}; "
        f"reference window: {w.reference_start.isoformat()} to {w.reference_end.isoformat()}"
        + (" (given)" if w.reference_given else "")
        + ".",
        "",
        *([f"Failed checks: {'; '.join(c.reason for c in failed)}.", ""] if failed else []),
        "| family | status | columns drifted | share | threshold |",
        "|---|---|---|---|---|",
    ]
    for f in v.families:
        status = "skipped" if f.skipped else ("DRIFT" if f.drifted else "no drift")
        share = "" if f.share_drifted is None else f"{f.share_drifted:.2f}"
        lines.append(
            f"| {f.family} | {status} | {len(f.drifted_columns)}/{len(f.columns_tested)} | "
            f"{share} | {f.threshold:.2f} |"
        )
    widgets = [
        counter(
            title="Drift verdict",
            counters=[
                CounterData("drift detected", str(v.drift_detected)),
                CounterData("retrain requested", str(v.retrain_requested)),
                CounterData("passed", str(v.passed)),
            ],
        ),
        text_widget(title="Summary", text="\n".join(lines)),
    ]
    for f in v.families:
        if f.skipped:
            widgets.append(text_widget(title=f"{f.family} drift: skipped", text=f.reason))
    for family, table, snapshot in result.snapshots:
        model = snapshot.to_snapshot_model()
        fv = v.family(family)
        td = next(t for t in fv.tables if t.table == table)
        title = (
            f"{family} drift: {table} ({td.reference_rows} reference rows, "
            f"{td.current_rows} current rows; {td.reason})"
        )
        # laid out as Evidently's own page: the metrics' group, then its tests at the top level
        widgets.append(group_widget(title=title, widgets=list(model.widgets)))
        widgets.extend(model.tests_widgets)
    return str(render_widgets(widgets, as_iframe=False))
