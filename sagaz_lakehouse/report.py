"""``report``: one self-contained HTML page with the saga SLA figures of a window, for a saga owner to read.

The numbers come from the Trino pack (``queries/trino``), run once each over the same window: SLA compliance,
throughput, step bottlenecks, failure patterns, compensations, the slowest sagas, anomalies (buckets, as wide as the
throughput chart's, whose step failure rate or p95 left the trailing baseline: marked on the throughput chart and
charted against their band) and cost attribution (prices from the ``cost.*`` settings). Charts are drawn with
matplotlib and inlined as SVG (text drawn as paths), the styles are inline too, and the page carries its data as a
JSON block (``<script type="application/json" id="sagaz-report-data">``, never executed): it opens anywhere without
a network, and a program can read the same figures back. matplotlib is an optional extra
(``sagaz-lakehouse[report]``).
"""

from __future__ import annotations

import html
import io
import json
import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sagaz_lakehouse import analytics
from sagaz_lakehouse.addresses import Endpoints
from sagaz_lakehouse.config import Settings
from sagaz_lakehouse.errors import UsageError
from sagaz_lakehouse.queries import Result, parse_duration, utc_now
from sagaz_lakehouse.version import __version__

QUERIES = ("sla_compliance", "throughput", "step_bottlenecks", "failure_patterns", "compensation_frequency",
           "slowest_sagas", "anomalies", "cost_attribution")
COLORS = {"ok": "#2a9d8f", "bad": "#e76f51", "warn": "#e9c46a", "p50": "#8ab17d", "p95": "#287271",
          "p99": "#264653", "line": "#6d597a", "grid": "#d9d9d9", "anomaly": "#9d0208", "band": "#c9d6df",
          "storage": "#3a86ff", "events": "#8338ec", "compute": "#fb8500"}
TOP_ROWS = 15  # bars per chart at most (the tables below show every row)


def require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UsageError("the report draws its charts with matplotlib, which is not installed",
                         "pip install 'sagaz-lakehouse[report]'") from None


@dataclass
class ReportData:
    since: str
    sla_ms: int
    generated_at: datetime
    window_start: datetime
    database: str
    target: str
    results: dict[str, Result] = field(default_factory=dict)


def bucket_for(window: timedelta) -> str:
    """Throughput buckets: minutes up to 6 hours, hours up to 14 days, days beyond."""
    return "minute" if window <= timedelta(hours=6) else "hour" if window <= timedelta(days=14) else "day"


@dataclass
class Plan:
    """The report's queries, checked and rendered for one window (the same ``now`` for all, so they agree)."""

    data: ReportData
    queries: dict[str, analytics.Prepared]


def prepare(settings: Settings, since: str = "24h", sla_ms: int = 1000, now: datetime | None = None) -> Plan:
    """UsageError for a bad window, before anything connects."""
    try:
        window = parse_duration(since)
    except ValueError as exc:
        raise UsageError(f"--since {since!r}: {exc}", "e.g. --since 24h, --since 90m, --since 7d") from None
    now = now or utc_now()
    params: dict[str, dict[str, str]] = {name: {"since": since} for name in QUERIES}
    params["sla_compliance"]["threshold_ms"] = str(sla_ms)
    params["throughput"]["bucket"] = bucket_for(window)
    params["anomalies"]["bucket"] = bucket_for(window)  # the throughput chart's buckets: its marks line up
    return Plan(ReportData(since, sla_ms, now, now - window, settings.lake.database, settings.target),
                {name: analytics.prepare(settings, name, params[name], now) for name in QUERIES})


def collect(plan: Plan, endpoints: Endpoints, progress: Callable[[str], None] | None = None) -> ReportData:
    """Run the planned queries on Trino."""
    for name, query in plan.queries.items():
        if progress:
            progress(f"running {name} on Trino")
        plan.data.results[name] = analytics.execute(query, endpoints)
    return plan.data


# ------------------------------------------------------------------------------------------------- figures


def totals(data: ReportData) -> dict[str, Any]:
    """The headline figures, summed exactly from the per-saga rows."""
    sla = data.results["sla_compliance"].records()
    sagas = sum(r["sagas"] for r in sla)
    completed = sum(r["completed"] for r in sla)
    within = sum(r["completed_within"] for r in sla)
    compensations = data.results["compensation_frequency"].records()
    costs = data.results["cost_attribution"].records()
    return {
        "sagas": sagas,
        "completed": completed,
        "failed": sagas - completed,
        "completed_pct": round(100 * completed / sagas, 2) if sagas else None,
        "completed_within": within,
        "completed_within_pct": round(100 * within / sagas, 2) if sagas else None,
        "step_failures": sum(r["failures"] for r in data.results["failure_patterns"].records()),
        "compensations": sum(r["compensations"] for r in compensations),
        "compensations_failed": sum(r["failed"] for r in compensations),
        "worst_p95_ms": max((r["p95_ms"] for r in sla if r["p95_ms"] is not None), default=None),
        "anomalies": len(data.results["anomalies"].rows),
        "estimated_cost": round(sum(r["total_cost"] for r in costs), 6) if costs else None,
    }


# -------------------------------------------------------------------------------------------------- charts


def _figure(width: float, height: float, **grid: Any) -> tuple[Any, Any]:
    """A figure of ``width`` × ``height`` inches with one axes, or a row of them (``ncols``, ``width_ratios``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.fonttype": "path", "svg.hashsalt": "sagaz-lakehouse", "font.size": 9,
                         "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True,
                         "grid.color": COLORS["grid"], "grid.linewidth": 0.6, "axes.axisbelow": True})
    columns, rows = grid.pop("ncols", 1), grid.pop("nrows", 1)
    return plt.subplots(rows, columns, figsize=(width, height), gridspec_kw=grid or None)


def _svg(fig: Any) -> str:
    import matplotlib.pyplot as plt

    out = io.StringIO()
    fig.savefig(out, format="svg", bbox_inches="tight", metadata={"Date": None, "Creator": None})
    plt.close(fig)
    text = out.getvalue()
    return text[text.index("<svg"):]  # inline: without the XML declaration and DOCTYPE


def _legend(ax: Any) -> None:
    """Above the plot, in one row: never over the bars."""
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.01), ncol=4, frameon=False, fontsize=8)


def _percentile_bars(ax: Any, y: list[int], rows: list[dict[str, Any]]) -> None:
    """p50, p95 and p99 of each row as three thin horizontal bars around its y position."""
    for key, offset in (("p50_ms", -0.27), ("p95_ms", 0), ("p99_ms", 0.27)):
        ax.barh([v + offset for v in y], [r[key] or 0 for r in rows], height=0.27, color=COLORS[key[:3]],
                label=key[:3])


def _label(record: dict[str, Any]) -> str:
    return f"{record['saga_name']} · {record['step_name']}"


def _short_error(name: str | None) -> str:
    return (name or "?").rsplit(".", 1)[-1]


def chart_sla(result: Result, sla_ms: int) -> str | None:
    rows = result.records()
    if not rows:
        return None
    fig, (share, durations) = _figure(11, max(2.4, 0.8 + 0.6 * len(rows)), ncols=2, width_ratios=[1, 1.3])
    names = [r["saga_name"] for r in rows]
    y = list(range(len(rows)))
    share.barh([v + 0.2 for v in y], [r["finished_within_pct"] for r in rows], height=0.4, color=COLORS["warn"],
               label="finished within SLA")
    share.barh([v - 0.2 for v in y], [r["completed_within_pct"] for r in rows], height=0.4, color=COLORS["ok"],
               label="completed within SLA")
    share.set_yticks(y, names)
    share.set_xlim(0, 100)
    share.set_xlabel("% of finished sagas")
    _legend(share)
    _percentile_bars(durations, y, rows)
    durations.axvline(sla_ms, color=COLORS["bad"], linestyle="--", linewidth=1.2, label=f"SLA {sla_ms} ms")
    durations.set_yticks(y, names)
    durations.set_xlabel("total duration (ms)")
    _legend(durations)
    return _svg(fig)


def chart_throughput(result: Result, anomalies: Result | None = None) -> str | None:
    """Stacked completed and failed sagas per bucket; buckets with an anomaly are shaded."""
    rows = result.records()
    if not rows:
        return None
    per_bucket: dict[datetime, dict[str, int]] = defaultdict(lambda: {"started": 0, "completed": 0, "failed": 0})
    for r in rows:
        for key in ("started", "completed", "failed"):
            per_bucket[r["bucket_start"]][key] += r[key]
    buckets = sorted(per_bucket)
    x = list(range(len(buckets)))
    fig, ax = _figure(10, 3)
    completed = [per_bucket[b]["completed"] for b in buckets]
    ax.bar(x, completed, color=COLORS["ok"], label="completed")
    ax.bar(x, [per_bucket[b]["failed"] for b in buckets], bottom=completed, color=COLORS["bad"], label="failed")
    ax.plot(x, [per_bucket[b]["started"] for b in buckets], color=COLORS["line"], marker="o", markersize=3,
            label="started")
    marked = {r["bucket_start"] for r in anomalies.records()} if anomalies is not None else set()
    for index in (i for i, b in enumerate(buckets) if b in marked):
        ax.axvspan(index - 0.5, index + 0.5, color=COLORS["anomaly"], alpha=0.3, linewidth=0,
                   label="anomaly" if index == min(i for i, b in enumerate(buckets) if b in marked) else None)
    step = max(1, len(buckets) // 12)
    ax.set_xticks(x[::step], [f"{b:%m-%d %H:%M}" for b in buckets][::step], rotation=30, ha="right")
    ax.set_ylabel("sagas")
    _legend(ax)
    return _svg(fig)


def chart_steps(result: Result) -> str | None:
    rows = result.records()[:TOP_ROWS]
    if not rows:
        return None
    rows = list(reversed(rows))  # slowest at the top
    y = list(range(len(rows)))
    fig, ax = _figure(10, max(2.4, 0.8 + 0.4 * len(rows)))
    _percentile_bars(ax, y, rows)
    ax.set_yticks(y, [_label(r) for r in rows])
    ax.set_xlabel("step duration (ms)")
    _legend(ax)
    return _svg(fig)


def chart_failures(result: Result) -> str | None:
    rows = result.records()
    if not rows:
        return None
    counts: dict[tuple[str, str], int] = defaultdict(int)
    for r in rows:
        counts[(_label(r), _short_error(r["error_type"]))] += r["failures"]
    steps = sorted({k[0] for k in counts})
    errors = sorted({k[1] for k in counts})
    grid = [[counts.get((s, e), 0) for e in errors] for s in steps]
    fig, ax = _figure(max(5, 1.6 * len(errors) + 3), 0.8 + 0.4 * len(steps))
    ax.grid(False)
    image = ax.imshow(grid, cmap="OrRd", aspect="auto")
    ax.set_xticks(range(len(errors)), errors, rotation=20, ha="right")
    ax.set_yticks(range(len(steps)), steps)
    peak = max(max(line) for line in grid) or 1
    for i, line in enumerate(grid):
        for j, value in enumerate(line):
            if value:
                ax.text(j, i, str(value), ha="center", va="center", fontsize=8,
                        color="white" if value > peak / 2 else "black")
    fig.colorbar(image, ax=ax, label="step failures")
    return _svg(fig)


def chart_compensations(result: Result) -> str | None:
    rows = result.records()[:TOP_ROWS]
    if not rows:
        return None
    rows = list(reversed(rows))
    y = list(range(len(rows)))
    fig, ax = _figure(10, max(2.4, 0.8 + 0.4 * len(rows)))
    left = [0] * len(rows)
    for key, color in (("completed", COLORS["ok"]), ("failed", COLORS["bad"]), ("unfinished", COLORS["warn"])):
        values = [r[key] for r in rows]
        ax.barh(y, values, left=left, color=color, label=key)
        left = [a + b for a, b in zip(left, values, strict=True)]
    ax.set_yticks(y, [_label(r) for r in rows])
    ax.set_xlabel("compensations")
    _legend(ax)
    return _svg(fig)


METRICS = {"failure_rate": ("failure rate (%)", 100.0), "p95_ms": ("p95 duration (ms)", 1.0)}


def chart_anomalies(result: Result) -> str | None:
    """Each anomaly (the most recent TOP_ROWS) against the band it left: the band as a pale bar, the baseline as a
    tick, the bucket's value as a dot; one panel per metric, one above the other."""
    rows = result.records()[-TOP_ROWS:]
    if not rows:
        return None
    metrics = [m for m in METRICS if any(r["metric"] == m for r in rows)]
    counts = [sum(r["metric"] == m for r in rows) for m in metrics]
    fig, axes = _figure(10, sum(max(1.6, 0.9 + 0.4 * n) for n in counts), nrows=len(metrics), height_ratios=counts,
                        hspace=0.5)
    panels = list(axes) if len(metrics) > 1 else [axes]
    for ax, metric in zip(panels, metrics, strict=True):
        label, scale = METRICS[metric]
        mine = list(reversed([r for r in rows if r["metric"] == metric]))  # newest at the top
        y = list(range(len(mine)))
        low = [r["band_low"] * scale for r in mine]
        ax.barh(y, [r["band_high"] * scale - lo for r, lo in zip(mine, low, strict=True)], left=low, height=0.5,
                color=COLORS["band"], label="baseline band")
        ax.scatter([r["baseline"] * scale for r in mine], y, marker="|", s=300, color=COLORS["line"],
                   label="baseline")
        ax.scatter([r["value"] * scale for r in mine], y, s=70, color=COLORS["anomaly"], zorder=3, label="value")
        ax.set_yticks(y, [f"{_label(r)} {r['bucket_start']:%m-%d %H:%M}" for r in mine])
        ax.set_xlabel(label)
        ax.set_xlim(left=0)
    _legend(panels[0])  # the same three marks in every panel
    return _svg(fig)


def chart_costs(result: Result) -> str | None:
    """The estimated cost of the most expensive steps (TOP_ROWS), split into storage, events and compute."""
    rows = result.records()[:TOP_ROWS]
    if not rows:
        return None
    rows = list(reversed(rows))  # most expensive at the top
    y = list(range(len(rows)))
    fig, ax = _figure(10, max(2.4, 0.8 + 0.4 * len(rows)))
    left = [0.0] * len(rows)
    for key in ("storage", "events", "compute"):
        values = [float(r[f"{key}_cost"]) for r in rows]
        ax.barh(y, values, left=left, color=COLORS[key], label=key)
        left = [a + b for a, b in zip(left, values, strict=True)]
    ax.set_yticks(y, [f"{r['saga_name']} · {r['step_name'] or '(saga events)'}" for r in rows])
    ax.set_xlabel("estimated cost (cost.* prices)")
    _legend(ax)
    return _svg(fig)


# ---------------------------------------------------------------------------------------------------- HTML

STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2rem auto; max-width: 1100px;
       color: #222; padding: 0 1rem; }
h1 { margin-bottom: 0.2rem; } h2 { margin-top: 2.5rem; border-bottom: 1px solid #ddd; padding-bottom: 0.3rem; }
.meta { color: #666; margin-top: 0; }
.cards { display: flex; flex-wrap: wrap; gap: 0.8rem; margin: 1.2rem 0; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: 0.6rem 1rem; min-width: 9rem; }
.card .value { font-size: 1.6rem; font-weight: 600; } .card .label { color: #666; font-size: 0.85rem; }
.card.bad .value { color: #c0392b; } .card.ok .value { color: #1e7d6f; }
table { border-collapse: collapse; font-size: 0.85rem; margin: 0.8rem 0; }
th, td { border-bottom: 1px solid #eee; padding: 0.25rem 0.6rem; text-align: left; white-space: nowrap; }
.scroll { overflow-x: auto; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.chart svg { max-width: 100%; height: auto; } .empty { color: #888; font-style: italic; }
.explain { color: #444; } footer { margin-top: 3rem; color: #777; font-size: 0.8rem; }
"""

SECTIONS: tuple[tuple[str, str, str], ...] = (
    ("sla_compliance", "SLA compliance per saga",
     "Sagas that finished in the window, the share that finished — and that completed successfully — within the "
     "SLA, and their total duration at the 50th, 95th and 99th percentile (exact nearest rank)."),
    ("throughput", "Throughput", "Sagas started, completed and failed per time bucket (UTC), all sagas together "
     "in the chart, per saga in the table."),
    ("step_bottlenecks", "Step bottlenecks", "Where the time goes: each step's duration percentiles, completed and "
     "failed executions together, slowest 95th percentile first."),
    ("failure_patterns", "Failure patterns", "Step failures by step and error type over the window (chart), and by "
     "hour (table)."),
    ("compensation_frequency", "Compensations", "How often each step had to be compensated, and whether the "
     "compensation succeeded, failed, or never ended."),
    ("slowest_sagas", "Slowest sagas", "The sagas that took longest, with their slowest step."),
    ("anomalies", "Anomalies", "Buckets in which a step's failure rate or 95th-percentile duration left the band "
     "around its trailing baseline (the step's earlier buckets): pooled failure rate ± threshold binomial standard "
     "errors, median p95 ± threshold scaled MADs. They are shaded on the throughput chart; the chart here shows "
     "each one against its band."),
    ("cost_attribution", "Cost attribution", "Per saga and step: events, bytes in the lake (Iceberg's file "
     "statistics, each file's size spread over its records), compute time (the sum of durations) and an estimated "
     "cost from the cost.* prices: lake GB-months, millions of events and vCPU-hours."),
)
CHARTS: dict[str, Callable[[ReportData], str | None]] = {
    "sla_compliance": lambda d: chart_sla(d.results["sla_compliance"], d.sla_ms),
    "throughput": lambda d: chart_throughput(d.results["throughput"], d.results["anomalies"]),
    "step_bottlenecks": lambda d: chart_steps(d.results["step_bottlenecks"]),
    "failure_patterns": lambda d: chart_failures(d.results["failure_patterns"]),
    "compensation_frequency": lambda d: chart_compensations(d.results["compensation_frequency"]),
    "anomalies": lambda d: chart_anomalies(d.results["anomalies"]),
    "cost_attribution": lambda d: chart_costs(d.results["cost_attribution"]),
}


def _table(result: Result) -> str:
    if not result.rows:
        return '<p class="empty">no rows in this window</p>'
    numeric = [all(isinstance(row[i], int | float) or row[i] is None for row in result.rows)
               for i in range(len(result.columns))]
    head = "".join(f'<th class="{"num" if n else ""}">{html.escape(c)}</th>'
                   for c, n in zip(result.columns, numeric, strict=True))
    body = "".join("<tr>" + "".join(f'<td class="{"num" if n else ""}">{html.escape(analytics.cell(v))}</td>'
                                    for v, n in zip(row, numeric, strict=True)) + "</tr>" for row in result.rows)
    return (f'<div class="scroll"><table id="table-{result.query}"><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table></div>")


def _cards(figures: dict[str, Any], sla_ms: int) -> str:
    def pct(value: float | None) -> str:
        return "–" if value is None else f"{value:.1f}%"

    cards = [
        ("sagas finished", str(figures["sagas"]), ""),
        ("completed", pct(figures["completed_pct"]), "ok"),
        (f"completed within {sla_ms} ms", pct(figures["completed_within_pct"]),
         "ok" if (figures["completed_within_pct"] or 0) >= 95 else "bad"),
        ("failed sagas", str(figures["failed"]), "bad" if figures["failed"] else ""),
        ("step failures", str(figures["step_failures"]), ""),
        ("compensations (failed)", f"{figures['compensations']} ({figures['compensations_failed']})",
         "bad" if figures["compensations_failed"] else ""),
        ("worst p95 duration", "–" if figures["worst_p95_ms"] is None else f"{figures['worst_p95_ms']} ms", ""),
        ("anomalies", str(figures["anomalies"]), "bad" if figures["anomalies"] else "ok"),
        ("estimated cost", "–" if figures["estimated_cost"] is None else f"{figures['estimated_cost']:.4f}", ""),
    ]
    return '<div class="cards">' + "".join(
        f'<div class="card {kind}"><div class="value">{html.escape(value)}</div>'
        f'<div class="label">{html.escape(label)}</div></div>' for label, value, kind in cards) + "</div>"


def render(data: ReportData) -> str:
    """The whole page (matplotlib must be installed: ``require_matplotlib``)."""
    figures = totals(data)
    parts = [f"<h1>Saga SLA report</h1><p class=\"meta\">{data.window_start:%Y-%m-%d %H:%M} – "
             f"{data.generated_at:%Y-%m-%d %H:%M} UTC (last {html.escape(data.since)}) · SLA {data.sla_ms} ms · "
             f"database {html.escape(data.database)} · target {html.escape(data.target)}</p>",
             _cards(figures, data.sla_ms)]
    for name, title, explain in SECTIONS:
        parts.append(f'<section id="{name}"><h2>{html.escape(title)}</h2><p class="explain">{html.escape(explain)}'
                     "</p>")
        draw = CHARTS.get(name)
        if draw is not None:
            svg = draw(data)
            parts.append(f'<div class="chart">{svg}</div>' if svg else
                         '<p class="empty">nothing to chart in this window</p>')
        parts.append(_table(data.results[name]) + "</section>")
    payload = {"since": data.since, "sla_ms": data.sla_ms, "generated_at": data.generated_at.isoformat(),
               "window_start": data.window_start.isoformat(), "totals": figures,
               "results": {name: json.loads(analytics.as_json(result)) for name, result in data.results.items()}}
    # </ cannot end the JSON block early: every '<' is escaped, which JSON allows.
    embedded = json.dumps(payload).replace("<", "\\u003c")
    parts.append(f'<footer>Generated by sagaz-lakehouse {__version__} from the Trino query pack '
                 f'(`sagaz-lakehouse query NAME` gives each table); doctor probe events are excluded everywhere. '
                 f'Times are UTC.</footer><script type="application/json" id="sagaz-report-data">{embedded}</script>')
    body = "\n".join(parts)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>Saga SLA report</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{STYLE}</style></head>'
            f"<body>\n{body}\n</body></html>\n")


def embedded_data(page: str) -> dict[str, Any]:
    """The JSON block of a rendered report."""
    match = re.search(r'<script type="application/json" id="sagaz-report-data">(.*?)</script>', page, re.S)
    if not match:
        raise ValueError("no sagaz-report-data block")
    return dict(json.loads(match.group(1)))
