"""The HTML report from known figures: self-contained, every chart drawn, headline figures summed exactly, and the
figures readable back from the page."""

from __future__ import annotations

import re
from datetime import datetime

import pytest

from sagaz_lakehouse import report
from sagaz_lakehouse.queries import Result

NOW = datetime(2026, 3, 1, 12, 0)


def results() -> dict[str, Result]:
    def r(name: str, columns: str, *rows: tuple) -> Result:
        return Result(name, "trino", columns.split(), list(rows))

    t0, t1 = datetime(2026, 3, 1, 11, 58), datetime(2026, 3, 1, 11, 59)
    return {
        "sla_compliance": r("sla_compliance", "saga_name sagas completed failed finished_within finished_within_pct "
                            "completed_within completed_within_pct p50_ms p95_ms p99_ms max_ms",
                            ("fulfilment", 30, 20, 10, 28, 93.33, 19, 63.33, 40, 70, 90, 95),
                            ("order", 70, 60, 10, 70, 100.0, 60, 85.71, 30, 50, 60, 61)),
        "throughput": r("throughput", "bucket_start saga_name started completed failed events",
                        (t0, "order", 40, 35, 5, 300), (t1, "order", 30, 25, 5, 250),
                        (t1, "fulfilment", 30, 20, 10, 400)),
        "step_bottlenecks": r("step_bottlenecks", "saga_name step_name executions failures avg_ms p50_ms p95_ms "
                              "p99_ms max_ms", ("order", "pay", 70, 3, 12.5, 11, 30, 40, 41),
                              ("fulfilment", "book", 30, 5, 10.0, 9, 20, 25, 26)),
        "failure_patterns": r("failure_patterns", "hour saga_name step_name error_type failures sagas "
                              "example_message", (t0, "order", "pay", "app.PaymentDeclined", 3, 3, "declined"),
                              (t0, "fulfilment", "book", "app.Courier<Down>", 5, 5, "no <courier> & co")),
        "compensation_frequency": r("compensation_frequency", "saga_name step_name sagas_finished sagas_failed "
                                    "compensations completed failed unfinished compensated_pct success_pct avg_ms",
                                    ("fulfilment", "book", 30, 10, 9, 4, 5, 0, 30.0, 44.44, 6.0)),
        "slowest_sagas": r("slowest_sagas", "saga_id saga_name outcome total_duration_ms ended_at steps "
                           "slowest_step slowest_step_ms error_type",
                           ("s-1", "fulfilment", "failed", 95, t1, 4, "book", 26, "app.Courier<Down>")),
        "anomalies": r("anomalies", "saga_name step_name bucket_start metric direction value baseline band_low "
                       "band_high executions baseline_buckets",
                       ("order", "pay", t1, "failure_rate", "high", 0.6, 0.1, 0.0, 0.25, 40, 6),
                       ("order", "pay", t1, "p95_ms", "high", 300.0, 30.0, 24.0, 36.0, 40, 6)),
        "cost_attribution": r("cost_attribution", "saga_name step_name events events_pct lake_bytes lake_bytes_pct "
                              "compute_ms compute_pct storage_cost events_cost compute_cost total_cost",
                              ("order", "pay", 600, 60.0, 60000, 60.0, 3000, 75.0, 0.00138, 0.00015, 0.000033,
                               0.001563),
                              ("fulfilment", None, 400, 40.0, 40000, 40.0, 1000, 25.0, 0.00092, 0.0001, 0.000011,
                               0.001031)),
    }


def data(**overrides) -> report.ReportData:
    built = report.ReportData("2h", 60, NOW, datetime(2026, 3, 1, 10, 0), "sagaz", "local", results())
    built.results.update(overrides)
    return built


def test_the_page_is_self_contained_and_draws_every_chart():
    page = report.render(data())
    assert page.count("<svg") == len(report.CHARTS) == 7
    # Nothing is fetched: no scripts, stylesheets, images or fonts from anywhere; references inside the page
    # (SVG clip paths, url(#...)) and inline data (the heatmap is a data: PNG) are fine; namespaces are names.
    assert not re.search(r"<(link|img|iframe)\b|<script(?![^>]*application/json)|@import|url\((?!#)", page)
    assert not re.findall(r"(?:src|href)=\"(?!#|data:)", page)
    assert "<text" not in page  # chart text is drawn as paths: no font needed
    # Text from the data is escaped wherever it is shown
    assert "Courier&lt;Down&gt;" in page and "no &lt;courier&gt; &amp; co" in page and "<Down>" not in page


def test_headline_figures_are_summed_exactly_and_readable_back():
    built = data()
    figures = report.totals(built)
    assert figures == {"sagas": 100, "completed": 80, "failed": 20, "completed_pct": 80.0, "completed_within": 79,
                       "completed_within_pct": 79.0, "step_failures": 8, "compensations": 9,
                       "compensations_failed": 5, "worst_p95_ms": 70, "anomalies": 2, "estimated_cost": 0.002594}
    embedded = report.embedded_data(report.render(built))
    assert embedded["totals"] == figures and embedded["sla_ms"] == 60
    assert embedded["results"]["slowest_sagas"]["rows"][0]["error_type"] == "app.Courier<Down>"
    assert embedded["results"]["throughput"]["rows"][0]["bucket_start"] == "2026-03-01T11:58:00"


def test_an_empty_window_still_renders():
    empty = {name: Result(name, "trino", r.columns, []) for name, r in results().items()}
    page = report.render(data(**empty))
    assert "<svg" not in page and page.count("nothing to chart in this window") == 7
    assert page.count("no rows in this window") == 8
    figures = report.totals(data(**empty))
    assert figures["completed_within_pct"] is None and figures["anomalies"] == 0 and figures["estimated_cost"] is None


def test_anomalies_are_marked_on_the_throughput_chart_and_charted_against_their_band():
    built = data()
    anomaly = report.COLORS["anomaly"]
    assert anomaly in report.chart_throughput(built.results["throughput"], built.results["anomalies"])
    assert anomaly not in report.chart_throughput(built.results["throughput"])
    quiet = Result("anomalies", "trino", built.results["anomalies"].columns, [])
    assert anomaly not in report.chart_throughput(built.results["throughput"], quiet)
    chart = report.chart_anomalies(built.results["anomalies"])
    assert chart is not None and anomaly in chart and report.COLORS["band"] in chart
    page = report.render(built)
    assert '<section id="anomalies">' in page and '<section id="cost_attribution">' in page
    costs = report.chart_costs(built.results["cost_attribution"])
    assert costs is not None and all(report.COLORS[k] in costs for k in ("storage", "events", "compute"))


@pytest.mark.parametrize(("since", "bucket"), [("90m", "minute"), ("6h", "minute"), ("24h", "hour"), ("30d", "day")])
def test_throughput_buckets_follow_the_window(since, bucket):
    from sagaz_lakehouse.queries import parse_duration

    assert report.bucket_for(parse_duration(since)) == bucket
