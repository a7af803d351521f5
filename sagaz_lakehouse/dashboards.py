"""Grafana dashboards as code, built with grafana-foundation-sdk (PyPI), and the provisioning files that load them.

Three dashboards:

- **Sagas (real time)**: Sagaz's own saga metrics (``saga_execution_total``, ``saga_compensations_total``,
  ``saga_execution_duration_seconds``, ``saga_active_count``: ``sagaz.observability.monitoring.prometheus``) and the
  FlussAnalyticsListener's counters (``sagaz.prometheus_stats_hook``), scraped from the applications listed in
  ``monitoring.app_targets``;
- **Sagas (history)**: SQL over the Iceberg copy through the Trino data source (the trinodb/grafana-trino plugin,
  ``trino-datasource``; ``$__timeFilter(column)`` is its macro for the dashboard's time range);
- **Operations**: the stack itself: targets up, tiering lag per table, the tiering job, Fluss, Flink, the object
  store, ZooKeeper and Trino.

Every panel's query is listed by ``panel_queries``; the end-to-end test runs each one against the running Prometheus
and Trino and expects data. grafana-foundation-sdk is imported only here (``pip install 'sagaz-lakehouse[grafana]'``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sagaz_lakehouse.config import Settings

PROMETHEUS_UID = "sagaz-prometheus"
TRINO_UID = "sagaz-trino"
TRINO_PLUGIN = "trino-datasource"  # trinodb/grafana-trino
TRINO_TABLE_FORMAT = 1  # the plugin's query format: 0 time series, 1 table


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str
    panel: str
    datasource: str  # prometheus | trino-datasource
    text: str  # PromQL or SQL


def _trino_query_type() -> Any:
    """A Dataquery for the Trino plugin, which the SDK has no builder for: ``rawSQL`` and ``format``."""
    from grafana_foundation_sdk.cog import builder as cogbuilder
    from grafana_foundation_sdk.cog import variants as cogvariants

    class TrinoQuery(cogvariants.Dataquery):
        def __init__(self, ref_id: str, sql: str) -> None:
            self.ref_id, self.sql = ref_id, sql

        def to_json(self) -> dict[str, Any]:
            return {"refId": self.ref_id, "rawSQL": self.sql, "format": TRINO_TABLE_FORMAT,
                    "datasource": {"type": TRINO_PLUGIN, "uid": TRINO_UID}}

    class TrinoQueryBuilder(cogbuilder.Builder[TrinoQuery]):
        def __init__(self, sql: str, ref_id: str = "A") -> None:
            self._query = TrinoQuery(ref_id, sql)

        def build(self) -> TrinoQuery:
            return self._query

    return TrinoQueryBuilder


def _prometheus() -> Any:
    from grafana_foundation_sdk.models.dashboard import DataSourceRef

    return DataSourceRef(type_val="prometheus", uid=PROMETHEUS_UID)


def _trino() -> Any:
    from grafana_foundation_sdk.models.dashboard import DataSourceRef

    return DataSourceRef(type_val=TRINO_PLUGIN, uid=TRINO_UID)


def _series(title: str, unit: str, *queries: tuple[str, str], width: int = 12) -> Any:
    """A time series panel of PromQL queries, each (expr, legend)."""
    from grafana_foundation_sdk.builders import prometheus, timeseries

    panel = timeseries.Panel().title(title).unit(unit).datasource(_prometheus()).height(8).span(width)
    for index, (expr, legend) in enumerate(queries):
        panel = panel.with_target(prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(chr(65 + index)))
    return panel


def _stat(title: str, unit: str, expr: str, width: int = 6) -> Any:
    from grafana_foundation_sdk.builders import prometheus, stat

    return (stat.Panel().title(title).unit(unit).datasource(_prometheus()).height(4).span(width)
            .with_target(prometheus.Dataquery().expr(expr).instant().ref_id("A")))


def _table(title: str, sql: str, width: int = 12) -> Any:
    from grafana_foundation_sdk.builders import table

    return table.Panel().title(title).show_header(True).datasource(_trino()).height(9).span(width).with_target(
        _trino_query_type()(sql))


def _dashboard(uid: str, title: str, refresh: str, time_from: str) -> Any:
    from grafana_foundation_sdk.builders import dashboard

    return (dashboard.Dashboard(title).uid(uid).tags(["sagaz-lakehouse"]).refresh(refresh)
            .time(time_from, "now").timezone("utc").editable())


def sagas_realtime(settings: Settings) -> Any:
    rate = "[5m]"
    return (_dashboard("sagaz-sagas-realtime", "Sagas (real time)", "10s", "now-1h")
            .with_panel(_stat("Sagas per second", "ops", "sum(rate(saga_execution_total[5m]))"))
            .with_panel(_stat("Failure ratio (5m)", "percentunit",
                              f'sum(rate(saga_execution_total{{status="failed"}}{rate})) '
                              f"/ sum(rate(saga_execution_total{rate}))"))
            .with_panel(_stat("Running sagas", "short", "sum(saga_active_count)"))
            .with_panel(_stat("Events dropped by the listener (1h)", "short",
                              "sum(increase(sagaz_lakehouse_listener_events_dropped_total[1h]))"))
            .with_panel(_series("Sagas by outcome", "ops",
                                (f"sum by (saga_name, status) (rate(saga_execution_total{rate}))",
                                 "{{saga_name}} {{status}}")))
            .with_panel(_series("Compensations", "ops",
                                (f"sum by (saga_name) (rate(saga_compensations_total{rate}))", "{{saga_name}}")))
            .with_panel(_series("Saga duration p95", "s",
                                ("histogram_quantile(0.95, sum by (saga_name, le) "
                                 f"(rate(saga_execution_duration_seconds_bucket{rate})))", "{{saga_name}}")))
            .with_panel(_series("Listener: events to Fluss", "ops",
                                (f"sum(rate(sagaz_lakehouse_listener_events_written_total{rate}))", "written"),
                                (f"sum(rate(sagaz_lakehouse_listener_events_enqueued_total{rate}))", "enqueued")))
            .with_panel(_series("Listener spool: events not yet in Iceberg", "short",
                                ("sum by (instance) (sagaz_lakehouse_listener_unsafe_events)", "{{instance}}")))
            .with_panel(_series("Listener spool: oldest event not yet in Iceberg", "s",
                                ("max by (instance) (sagaz_lakehouse_listener_oldest_unsafe_event_age_seconds)",
                                 "{{instance}}"))))


def sagas_history(settings: Settings) -> Any:
    # The database name is a validated identifier (lake.database); nothing else is interpolated (S608).
    table = f"iceberg.{settings.lake.database}.saga_events"
    probe = "event_type <> 'sagaz_lakehouse.doctor_probe'"  # the doctor's probe events stay in the table
    window = '$__timeFilter("timestamp")'
    return (_dashboard("sagaz-sagas-history", "Sagas (history, Iceberg via Trino)", "5m", "now-24h")
            .with_panel(_table("Outcomes per saga",
                               f"SELECT saga_name, count_if(event_type = 'saga_completed') AS completed, "  # noqa: S608
                               f"count_if(event_type = 'saga_failed') AS failed, "
                               f"count_if(event_type = 'compensation_completed') AS compensations "
                               f"FROM {table} WHERE {probe} AND {window} GROUP BY saga_name ORDER BY saga_name"))
            .with_panel(_table("Slowest steps (p95 ms)",
                               f"SELECT saga_name, step_name, count(*) AS runs, "  # noqa: S608
                               f"approx_percentile(duration_ms, 0.95) AS p95_ms FROM {table} "
                               f"WHERE {probe} AND {window} AND event_type = 'step_completed' "
                               f"GROUP BY saga_name, step_name ORDER BY p95_ms DESC LIMIT 20"))
            .with_panel(_table("Failures by error",
                               f"SELECT saga_name, step_name, error_type, count(*) AS failures FROM {table} "  # noqa: S608
                               f"WHERE {probe} AND {window} AND event_type = 'step_failed' "
                               f"GROUP BY saga_name, step_name, error_type ORDER BY failures DESC LIMIT 20"))
            .with_panel(_table("Lake snapshots",
                               f'SELECT committed_at, snapshot_id, operation FROM iceberg.{settings.lake.database}.'  # noqa: S608
                               f'"saga_events$snapshots" ORDER BY committed_at DESC LIMIT 20')))


def operations(settings: Settings) -> Any:
    tiering = 'job_name=~"Fluss.Lake.Tiering.Service.*"'
    return (_dashboard("sagaz-operations", "Operations", "10s", "now-1h")
            .with_panel(_stat("Targets down", "short", "count(up == 0) or vector(0)"))
            .with_panel(_stat("Tiering job uptime", "ms", f"max(flink_jobmanager_job_uptime{{{tiering}}})"))
            .with_panel(_stat("Active tablet servers", "short", "max(fluss_coordinator_activeTabletServerCount)"))
            .with_panel(_stat("Object store free", "percentunit",
                              "min(minio_cluster_capacity_usable_free_bytes "
                              "/ minio_cluster_capacity_usable_total_bytes)"))
            .with_panel(_series("Scrape targets up", "short", ("sum by (job) (up)", "{{job}}")))
            .with_panel(_series("Tiering lag per table", "ms",
                                ("max by (database, table) (fluss_tabletserver_table_bucket_lakeTiering_timestampLag)",
                                 "{{database}}.{{table}}")))
            .with_panel(_series("Records waiting for tiering", "short",
                                ("sum by (database, table) "
                                 "(fluss_tabletserver_table_bucket_lakeTiering_pendingRecords)",
                                 "{{database}}.{{table}}")))
            .with_panel(_series("Tiering job restarts", "short",
                                (f"max(flink_jobmanager_job_numRestarts{{{tiering}}})", "restarts")))
            .with_panel(_series("Fluss buckets", "short",
                                ("sum(fluss_tabletserver_underReplicated)", "under-replicated"),
                                ("max(fluss_coordinator_offlineBucketCount)", "offline"),
                                ("max(fluss_coordinator_bucketCount)", "total")))
            .with_panel(_series("Flink TaskManagers and slots", "short",
                                ("max(flink_jobmanager_numRegisteredTaskManagers)", "TaskManagers"),
                                ("max(flink_jobmanager_taskSlotsAvailable)", "free slots")))
            .with_panel(_series("Object store capacity", "bytes",
                                ("max(minio_cluster_capacity_usable_total_bytes)", "usable"),
                                ("max(minio_cluster_capacity_usable_free_bytes)", "free")))
            .with_panel(_series("ZooKeeper", "short", ("max(znode_count)", "znodes"),
                                ("max(avg_latency)", "avg latency (ms)")))
            .with_panel(_series("Trino queries", "short",
                                ("max(trino_execution_name_QueryManager_RunningQueries)", "running"),
                                ("max(trino_execution_name_QueryManager_CompletedQueries)", "completed"))))


BUILDERS = {"sagas-realtime": sagas_realtime, "sagas-history": sagas_history, "operations": operations}


def dashboards(settings: Settings) -> dict[str, dict[str, Any]]:
    """Every dashboard as Grafana's JSON model, by file stem."""
    from grafana_foundation_sdk.cog.encoder import JSONEncoder

    return {name: json.loads(json.dumps(build(settings).build(), cls=JSONEncoder))
            for name, build in BUILDERS.items()}


def panel_queries(settings: Settings) -> list[PanelQuery]:
    out = []
    for name, model in dashboards(settings).items():
        for panel in model.get("panels", []):
            for target in panel.get("targets", []):
                source = panel["datasource"]["type"]
                out.append(PanelQuery(name, panel["title"], source,
                                      target["expr"] if source == "prometheus" else target["rawSQL"]))
    return out


def provisioning(settings: Settings, prometheus_url: str, trino_url: str) -> dict[str, str]:
    """Grafana's provisioning files (path → content): the two data sources, a dashboard provider, the dashboards."""
    from sagaz_lakehouse.render import to_yaml

    datasources = {"apiVersion": 1, "datasources": [
        {"name": "Prometheus (sagaz-lakehouse)", "type": "prometheus", "uid": PROMETHEUS_UID, "access": "proxy",
         "url": prometheus_url, "isDefault": True},
        # trinodb/grafana-trino: its URL and the user it queries as (Trino without authentication takes any name).
        {"name": "Trino (sagaz-lakehouse)", "type": TRINO_PLUGIN, "uid": TRINO_UID, "access": "proxy",
         "url": trino_url, "jsonData": {"user": "grafana"}},
    ]}
    providers = {"apiVersion": 1, "providers": [
        {"name": "sagaz-lakehouse", "type": "file", "folder": "sagaz-lakehouse", "disableDeletion": True,
         "options": {"path": "/var/lib/grafana/dashboards/sagaz-lakehouse"}}]}
    files = {"provisioning/datasources/sagaz-lakehouse.yaml": to_yaml(datasources),
             "provisioning/dashboards/sagaz-lakehouse.yaml": to_yaml(providers)}
    for name, model in dashboards(settings).items():
        files[f"dashboards/{name}.json"] = json.dumps(model, indent=2, sort_keys=True) + "\n"
    return files
