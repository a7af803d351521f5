"""``doctor``: check every component from its endpoint, then prove the data path end to end.

Checks are grouped (environment, components, consistency, data path); each ends pass, warn or fail with a
one-line hint. The data-path check writes a uniquely tagged probe event through pyfluss, waits until Fluss's lake
snapshot covers its offset, reads it back from Iceberg with pyiceberg and through Trino, reports the measured
tiering latency. Probes stay in the table, tagged ``event_type = 'sagaz_lakehouse.doctor_probe'``: deleting them
would make Fluss tier an equality delete, which PyIceberg cannot read (see clients.iceberg_read).

Components a client reaches (Fluss, MinIO, the catalog, Flink, Trino) are checked from their endpoints on the
user's host. Components no client talks to (ZooKeeper: only Fluss does) are not reachable from the host on every
target (compose does not publish them, Kubernetes does not port-forward them), so they are judged from the target
driver's own view instead: its ``status()`` rows (the container's health check on compose, pod readiness on
Kubernetes, the process probe on local). The checks are the same on every target; only their evidence differs.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from sagaz_lakehouse import clients, tables
from sagaz_lakehouse import stack as s
from sagaz_lakehouse.addresses import Endpoints
from sagaz_lakehouse.components.tasks import TIERING_JOB_NAME
from sagaz_lakehouse.config import Credentials, Settings, duration_seconds
from sagaz_lakehouse.errors import LakehouseError
from sagaz_lakehouse.fluss_cluster import ServerLog
from sagaz_lakehouse.identities import client_s3_keys
from sagaz_lakehouse.targets.base import target_of

PROBE_EVENT_TYPE = "sagaz_lakehouse.doctor_probe"
PROBE_SAGA_NAME = "__sagaz_lakehouse_doctor__"
PASS, WARN, FAIL, SKIP = "pass", "warn", "fail", "skip"
ICON = {PASS: "ok  ", WARN: "warn", FAIL: "FAIL", SKIP: "skip"}


@dataclass
class Check:
    group: str
    name: str
    status: str
    detail: str = ""
    hint: str = ""
    seconds: float = 0.0


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(c.status != FAIL for c in self.checks)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "checks": [asdict(c) for c in self.checks], "metrics": self.metrics}

    def as_text(self) -> str:
        lines, group = [], None
        for check in self.checks:
            if check.group != group:
                group = check.group
                lines.append(f"{group}:")
            lines.append(f"  [{ICON[check.status]}] {check.name}: {check.detail}")
            if check.hint and check.status in (WARN, FAIL):
                lines.append(f"         hint: {check.hint}")
        failed = sum(c.status == FAIL for c in self.checks)
        lines.append("all checks passed" if not failed else f"{failed} check(s) failed")
        return "\n".join(lines)


class CheckFailed(Exception):
    def __init__(self, detail: str, hint: str = "", status: str = FAIL) -> None:
        super().__init__(detail)
        self.detail, self.hint, self.status = detail, hint, status


Probe = Callable[[], str]
StatusRows = Callable[[], list[dict[str, Any]]]  # a driver's status(): one row per component or instance


UNREACHABLE_HINT = "is the stack up? run `sagaz-lakehouse up` (and `sagaz-lakehouse status`)"


def record_check(report: Report, group: str, name: str, probe: Probe, progress: Callable[[str], None] | None,
                 problems: Callable[[], list[str]] | None = None) -> Check:
    """Run one probe into ``report``: pass with what it found, or fail (or warn) with why and a hint; never raises.
    ``problems``: the target's explanations of failed connections, added to a failure that happened meanwhile."""
    if progress:
        progress(f"checking {group} / {name} …")
    seen = len(problems()) if problems else 0
    started = time.monotonic()
    try:
        check = Check(group, name, PASS, probe())
    except CheckFailed as exc:
        check = Check(group, name, exc.status, exc.detail, exc.hint)
    except LakehouseError as exc:
        check = Check(group, name, FAIL, exc.message, exc.hint)
    except OSError as exc:  # connection refused, timeouts, HTTP errors (URLError is an OSError)
        check = Check(group, name, FAIL, f"not reachable: {exc}", UNREACHABLE_HINT)
    except Exception as exc:  # a check must report, never crash the whole doctor
        check = Check(group, name, FAIL, f"{type(exc).__name__}: {exc}", "see the component's log")
    check.seconds = round(time.monotonic() - started, 2)
    if check.status == FAIL and problems and (new := list(dict.fromkeys(problems()[seen:]))):
        # A port-forward that could not reach its pod shows up here only as a reset connection: say why.
        check.detail += f" [port-forward: {'; '.join(new)}]"
    report.checks.append(check)
    return check


def run(settings: Settings, credentials: Credentials, endpoints: Endpoints, status: StatusRows, *,
        quick: bool = False, progress: Callable[[str], None] | None = None,
        probe_timeout: float | None = None, problems: Callable[[], list[str]] | None = None,
        server_log: ServerLog | None = None) -> Report:
    """``status`` is the target driver's ``status`` (called at most once, for the components no client reaches);
    ``problems``: the target's explanations of failed connections so far (Kubernetes port-forwards);
    ``server_log``: a Fluss server's log tail by instance name: the coordinator's, read for the reason a tablet
    server is missing, and a listed tablet server's, read for whether it still waits to register."""
    report = Report()

    def check(group: str, name: str, probe: Probe) -> Check:
        return record_check(report, group, name, probe, progress, problems)

    for name, probe in target_of(settings).environment_checks(settings).items():
        check("environment", name, probe)
    for name, probe in component_probes(settings, credentials, endpoints, status, server_log).items():
        check("components", name, probe)
    check("consistency", "saga_events lake settings", lambda: _table_consistency(settings, endpoints))
    check("consistency", "saga_events tiering and primary-key state",
          lambda: _lake_health(settings, credentials, endpoints))
    check("consistency", "saga_events lake shape and maintenance", lambda: _lake_shape(settings, endpoints))
    if quick:
        report.checks.append(Check("data path", "probe event Fluss → Iceberg → Trino", SKIP, "--quick"))
        return report
    if not report.ok:
        report.checks.append(Check("data path", "probe event Fluss → Iceberg → Trino", SKIP,
                                   "skipped: fix the failures above first"))
        return report
    timeout = probe_timeout or duration_seconds(settings.freshness) * 3 + 60
    check("data path", "probe event Fluss → Iceberg → Trino",
          lambda: _data_path(settings, credentials, endpoints, timeout, report.metrics))
    return report


def component_probes(settings: Settings, credentials: Credentials, endpoints: Endpoints,
                     status: StatusRows, server_log: ServerLog | None = None) -> dict[str, Probe]:
    """Each component's check, by name. ``status`` (the driver's rows) is asked at most once, whichever probes
    run and however often."""
    status = _once(status)
    return {
        "zookeeper": lambda: _target_health(settings, status, s.ZOOKEEPER),
        "fluss servers": lambda: _fluss_nodes(settings, endpoints, server_log),
        ("object store" if settings.external_store else "minio"): lambda: _minio(settings, credentials, endpoints),
        "iceberg rest catalog": lambda: _rest_catalog(settings, endpoints),
        "flink + tiering job": lambda: _flink(endpoints),
        "flink sql gateway": lambda: _sql_gateway(settings, endpoints),
        "trino": lambda: _trino(endpoints),
        "prometheus + tiering lag": lambda: _prometheus(settings, endpoints, status),
    }


# ------------------------------------------------------------------------------------------ components


def _once(status: StatusRows) -> StatusRows:
    rows: list[list[dict[str, Any]]] = []

    def cached() -> list[dict[str, Any]]:
        if not rows:
            rows.append(status())
        return rows[0]

    return cached


def _target_health(settings: Settings, status: StatusRows, component: str) -> str:
    """A component no client reaches, judged by the target's own health check of each of its instances."""
    target = target_of(settings)
    names = {component, *target.stack(settings).get(component).instance_names()}
    rows = [r for r in status() if r.get("component") in names]
    if not rows:
        raise CheckFailed(f"the {target.name} target reports no {component}", UNREACHABLE_HINT)
    seen = ", ".join(f"{r['component']} {r['state']}" + (f" ({r['detail']})" if r.get("detail") else "")
                     for r in rows)
    if any(r.get("state") != "healthy" for r in rows):
        raise CheckFailed(f"not healthy on {target.name}: {seen}",
                          f"see `sagaz-lakehouse status` and `sagaz-lakehouse logs {component}`")
    return f"healthy by the {target.name} target's own check: {seen}"


def _fluss_nodes(settings: Settings, endpoints: Endpoints, server_log: ServerLog | None) -> str:
    """Members of the cluster as clients see them: a tablet server that runs but was refused by the coordinator is
    named, with the coordinator's reason. One that is listed but still waiting to register (a stale registration
    from before a restart) is waited for, as long as ZooKeeper takes to drop the old one."""
    from sagaz_lakehouse import fluss_cluster

    membership = fluss_cluster.current(fluss_cluster.observe(settings, endpoints), server_log)
    if membership.waiting:
        try:
            membership = fluss_cluster.wait_for_tablets(settings, endpoints, need=len(membership.expected),
                                                        purpose="fluss servers", server_log=server_log, timeout=0)
        except fluss_cluster.TabletsMissing as missing:
            membership = missing.membership
    if membership.coordinator and not membership.missing:
        return membership.summary()
    membership = fluss_cluster.explain(settings, membership, server_log)
    detail = membership.summary() + (f"; the coordinator's reason: {membership.reason}" if membership.reason else "")
    first = membership.missing[0] if membership.missing else s.TABLET
    raise CheckFailed(detail, f"see `sagaz-lakehouse logs {first}` and `sagaz-lakehouse logs {s.COORDINATOR}`")


def _minio(settings: Settings, credentials: Credentials, endpoints: Endpoints) -> str:
    """The bundled MinIO's readiness, or (external) the user's store as the reader role sees it; then the bucket."""
    import urllib.parse

    if not settings.external_store and not clients.http_ok(f"{endpoints.s3}/minio/health/ready"):
        raise CheckFailed(f"MinIO not ready at {endpoints.s3}", "see `sagaz-lakehouse logs minio`")
    from pyarrow import fs

    url = urllib.parse.urlsplit(endpoints.s3)
    access_key, secret_key = client_s3_keys(settings, credentials)
    s3 = fs.S3FileSystem(access_key=access_key, secret_key=secret_key, endpoint_override=url.netloc,
                         scheme=url.scheme or "http", region=settings.s3_region,
                         force_virtual_addressing=not settings.s3_path_style)
    try:
        info = s3.get_file_info(settings.lake.bucket)
    except OSError as exc:
        raise CheckFailed(f"the object store at {endpoints.s3} refused the reader: {exc}",
                          "check the reader role's keys and grant (README, Bring your own object store)") from exc
    if info.type == fs.FileType.NotFound:
        hint = ("create it in your object store (object_store.kind external)" if settings.external_store
                else "run `sagaz-lakehouse up` again")
        raise CheckFailed(f"bucket {settings.lake.bucket} is missing", hint)
    where = f"external store {endpoints.s3}" if settings.external_store else "ready"
    return f"{where}; bucket {settings.lake.bucket} exists"


def _rest_catalog(settings: Settings, endpoints: Endpoints) -> str:
    from sagaz_lakehouse import maintenance

    external = settings.catalog.kind == "external"
    hint = "check catalog.uri and the catalog credential" if external else "see `sagaz-lakehouse logs rest-catalog`"
    try:
        config = clients.rest_catalog(settings, endpoints).config()
    except maintenance.MaintenanceError as exc:
        raise CheckFailed(str(exc), hint) from exc
    if not isinstance(config, dict):
        raise CheckFailed("unexpected /v1/config answer", hint)
    login = " (OAuth2 token accepted)" if endpoints.catalog_login else ""
    return f"{'external catalog ' if external else ''}answers /v1/config at {endpoints.rest_catalog}{login}"


# States a job passes through on its way back to RUNNING: Flink restarts the tiering job when its Fluss servers come
# back (after `up` replaced their pods, for one), and a doctor right then saw RESTARTING and failed.
TRANSIENT_JOB_STATES = {"CREATED", "INITIALIZING", "RESTARTING", "RECONCILING"}


def tiering_jobs(endpoints: Endpoints) -> list[Any]:
    """Every tiering job Flink lists, in any state (/jobs/overview)."""
    jobs = clients.http_json(f"{endpoints.flink_rest}/jobs/overview").get("jobs", [])
    return [j for j in jobs if j.get("name") == TIERING_JOB_NAME]


def _flink(endpoints: Endpoints, settle_seconds: float = 90.0, pause: float = 2.0) -> str:
    overview = clients.http_json(f"{endpoints.flink_rest}/overview")
    deadline = time.monotonic() + settle_seconds
    while True:
        tiering = tiering_jobs(endpoints)
        running = [j for j in tiering if j.get("state") == "RUNNING"]
        settling = any(j.get("state") in TRANSIENT_JOB_STATES for j in tiering)
        if running or not settling or time.monotonic() >= deadline:
            break
        time.sleep(pause)  # a restart in progress: give it the time Flink's restart strategy takes
    detail = f"{overview.get('taskmanagers', 0)} taskmanager(s), {overview.get('slots-available', 0)} free slot(s)"
    if not running:
        states = sorted({j.get("state") for j in tiering})
        raise CheckFailed(f"{detail}; tiering job '{TIERING_JOB_NAME}' not RUNNING (seen: {states or 'none'})",
                          "run `sagaz-lakehouse up` to submit it; see `sagaz-lakehouse logs flink-jobmanager`")
    return f"{detail}; tiering job RUNNING ({running[0].get('jid')})"


def _sql_gateway(settings: Settings, endpoints: Endpoints) -> str:
    if not settings.sql_gateway:
        raise CheckFailed(f"not running: off in the {settings.profile} profile (it has no authentication of its "
                          "own); the real-time query pack needs it",
                          "--set analytics.sql_gateway=on where a port-forward or the host's users guard it",
                          status=SKIP)
    info = clients.http_json(f"{endpoints.flink_sql_gateway}/v1/info")
    return f"{info.get('productName', '?')} {info.get('version', '?')} at {endpoints.flink_sql_gateway}"


def _trino(endpoints: Endpoints) -> str:
    info = clients.http_json(f"{endpoints.trino}/v1/info")
    if info.get("starting", True):
        raise CheckFailed("Trino is still starting", "wait a few seconds and run doctor again", status=WARN)
    catalogs = [row[0] for row in clients.trino_query(endpoints, "SHOW CATALOGS", catalog="system")]
    if "iceberg" not in catalogs:
        raise CheckFailed(f"no iceberg catalog (catalogs: {catalogs})", "see `sagaz-lakehouse logs trino`")
    return f"version {info.get('nodeVersion', {}).get('version', '?')}; iceberg catalog present"


def _lake_shape(settings: Settings, endpoints: Endpoints) -> str:
    """The Iceberg table's files, snapshots and metadata, and when it was last maintained: a warning, with what to
    do, where they pass the thresholds (lake_maintenance.findings) or maintenance missed its schedule."""
    from sagaz_lakehouse import lake_maintenance, maintenance

    try:
        shape, findings = lake_maintenance.observe(settings, endpoints)
    except maintenance.TableMissing:
        raise CheckFailed("no Iceberg table yet", "run `sagaz-lakehouse create-tables`") from None
    except maintenance.MaintenanceError as exc:
        raise CheckFailed(f"the table's metadata could not be read: {exc}", UNREACHABLE_HINT) from None
    text = lake_maintenance.summary(shape)
    if findings:
        raise CheckFailed(text + "; " + "; ".join(f"{f.kind}: {f.detail}" for f in findings),
                          "; ".join(dict.fromkeys(f.hint for f in findings)), status=WARN)
    return text


def _table_consistency(settings: Settings, endpoints: Endpoints) -> str:
    import fluss

    async def info() -> Any:
        async with clients.fluss_connection(endpoints) as connection:
            admin = connection.get_admin()
            path = fluss.TablePath(settings.lake.database, tables.TABLE)
            if not await admin.table_exists(path):
                return None
            return await admin.get_table_info(path)

    table = asyncio.run(info())
    if table is None:
        raise CheckFailed(f"{settings.lake.database}.{tables.TABLE} does not exist",
                          "run `sagaz-lakehouse create-tables`")
    props = table.get_properties()
    wrong = {k: props.get(k) for k, v in tables.table_properties(settings).items() if props.get(k) != v}
    if wrong:
        raise CheckFailed(f"table properties differ from the settings: {wrong}",
                          "the table was created with other settings; see create-tables", status=WARN)
    return f"datalake enabled, freshness {props.get('table.datalake.freshness')}, {table.num_buckets} buckets"


def _lake_health(settings: Settings, credentials: Credentials, endpoints: Endpoints) -> str:
    """A stalled table or a bucket whose KV does not answer (lake_health.check), each named with its hint."""
    from sagaz_lakehouse import lake_health

    findings = lake_health.observe(settings, credentials, endpoints)
    if findings is None:
        raise CheckFailed(f"{settings.lake.database}.{tables.TABLE} does not exist", "run `sagaz-lakehouse "
                          "create-tables`", status=SKIP)
    if findings:
        raise CheckFailed("; ".join(f"{f.kind}: " + (f"bucket {f.bucket}: " if f.bucket is not None else "")
                                    + f.detail for f in findings),
                          " | ".join(dict.fromkeys(f.hint for f in findings)))
    return "tiering keeps up; every bucket's primary-key state answers"


# ------------------------------------------------------------------------------------------ data path


def _data_path(settings: Settings, credentials: Credentials, endpoints: Endpoints, timeout: float,
               metrics: dict[str, float]) -> str:
    probe_id = f"doctor-{uuid.uuid4()}"
    written_at, table_id, bucket_offsets = asyncio.run(write_probe(settings, endpoints, probe_id))
    asyncio.run(wait_for_lake_snapshot(settings, endpoints, table_id, bucket_offsets, written_at + timeout))
    tiered_at = time.monotonic()
    iceberg_rows = _wait_for_iceberg_row(settings, credentials, endpoints, probe_id, written_at + timeout)
    visible_at = time.monotonic()
    trino_rows = clients.trino_query(
        endpoints, f"SELECT event_id FROM {settings.lake.database}.{tables.TABLE} WHERE event_id = ?",  # noqa: S608 - validated identifier
        (probe_id,))
    if len(trino_rows) != 1:
        raise CheckFailed(f"Trino returned {len(trino_rows)} rows for the probe (Iceberg had {iceberg_rows})",
                          "Trino's iceberg catalog may point at another warehouse; compare the settings")
    metrics["tiering_latency_s"] = round(tiered_at - written_at, 2)
    metrics["iceberg_visible_s"] = round(visible_at - written_at, 2)
    return (f"probe {probe_id[:15]}… tiered in {metrics['tiering_latency_s']}s, read back from Iceberg and "
            f"Trino (freshness {settings.freshness})")


async def write_probe(settings: Settings, endpoints: Endpoints, probe_id: str) -> tuple[float, int, dict[int, int]]:
    """Upsert the probe; returns when it was acknowledged, the table id, and every bucket's end offset after it."""
    import fluss

    async with clients.fluss_connection(endpoints) as connection:
        path = fluss.TablePath(settings.lake.database, tables.TABLE)
        table = await connection.get_table(path)
        writer = table.new_upsert().create_writer()
        await writer.upsert(probe_row(probe_id)).wait()
        await writer.flush()
        written_at = time.monotonic()
        buckets = list(range(table.get_table_info().num_buckets))
        offsets = await connection.get_admin().list_offsets(path, buckets, fluss.OffsetSpec.latest())
        return written_at, table.get_table_info().table_id, offsets


def probe_row(probe_id: str) -> dict[str, Any]:
    return {"event_id": probe_id, "event_type": PROBE_EVENT_TYPE, "saga_id": probe_id, "saga_name": PROBE_SAGA_NAME,
            "step_name": None, "duration_ms": 0, "total_duration_ms": 0, "error_type": None,
            "error_message": None, "context_keys": ["doctor"], "timestamp": datetime.now(UTC).replace(tzinfo=None)}


async def wait_for_lake_snapshot(settings: Settings, endpoints: Endpoints, table_id: int,
                                 end_offsets: dict[int, int], deadline: float) -> None:
    """Tiering is done for the probe once the lake snapshot covers every bucket's end offset taken after it. A
    failure says what the lake had: no snapshot at all, or how far each bucket's snapshot was behind, and the last
    error other than "no snapshot yet"."""
    import fluss

    path = fluss.TablePath(settings.lake.database, tables.TABLE)
    async with clients.fluss_connection(endpoints) as connection:
        admin = connection.get_admin()
        lake: dict[int, int] | None = None  # each bucket's offset in the latest lake snapshot; None: no snapshot
        error = ""
        while True:
            try:
                snapshot = await admin.get_latest_lake_snapshot(path)
                lake = {b: snapshot.get_bucket_offset(fluss.TableBucket(table_id, b)) or 0 for b in end_offsets}
                error = ""
            except fluss.FlussError as exc:
                if exc.error_code != fluss.ErrorCode.LAKE_SNAPSHOT_NOT_EXIST:
                    error = str(exc)[:300]
            covered = lake or {}
            behind = {b: gap for b, end in end_offsets.items() if (gap := end - covered.get(b, 0)) > 0}
            if not behind:
                return
            if time.monotonic() > deadline:
                raise CheckFailed(_not_tiered(lake, behind, error), _not_tiered_hint(endpoints))
            await asyncio.sleep(1)


def _not_tiered(lake: dict[int, int] | None, behind: dict[int, int], error: str) -> str:
    waiting = f"{sum(behind.values())} record(s) up to the probe not in the lake, in bucket(s) {sorted(behind)}"
    seen = (f"no lake snapshot yet (tiering never committed this table): {waiting}" if lake is None
            else f"the latest lake snapshot is behind the probe: {waiting}")
    return seen + (f"; last error reading it: {error}" if error else "")


def _not_tiered_hint(endpoints: Endpoints) -> str:
    """Where to look, with the tiering job's own latest failure when Flink recorded one (a job that failed and
    restarted stays RUNNING)."""
    hint = "is the tiering job running? see `sagaz-lakehouse logs flink-jobmanager` and `logs flink-taskmanager`"
    try:
        failure = tiering_job_failure(endpoints)
    except (OSError, ValueError):
        return hint
    return f"{hint}; {failure}" if failure else hint


def tiering_job_failure(endpoints: Endpoints) -> str:
    """The running tiering job's latest failure, from Flink's exception history (newest first; "" when it never
    failed)."""
    running = [j for j in tiering_jobs(endpoints) if j.get("state") == "RUNNING"]
    if not running:
        return ""
    history = clients.http_json(f"{endpoints.flink_rest}/jobs/{running[0]['jid']}/exceptions?maxExceptions=1")
    entries = history.get("exceptionHistory", {}).get("entries", [])
    if not entries:
        return ""
    latest = entries[0]
    first_line = (latest.get("stacktrace") or latest.get("exceptionName") or "?").splitlines()[0][:300]
    where = latest.get("taskName") or "the job"
    return f"the tiering job failed and restarted; latest failure in {where}: {first_line}"


def _wait_for_iceberg_row(settings: Settings, credentials: Credentials, endpoints: Endpoints, probe_id: str,
                          deadline: float) -> int:
    catalog = clients.iceberg_catalog(settings, credentials, endpoints)
    identifier = f"{settings.lake.database}.{tables.TABLE}"
    while True:
        table = catalog.load_table(identifier)
        rows, _ = clients.iceberg_read(table, f"event_id = '{probe_id}'", ("event_id",))
        if rows.num_rows == 1:
            return 1
        if time.monotonic() > deadline:
            raise CheckFailed(f"probe not found in Iceberg table {identifier} ({rows.num_rows} rows)",
                              "the lake snapshot advanced but the row is missing: check the warehouse settings")
        time.sleep(1)



def _not_built_yet(status: StatusRows, component: str) -> None:
    """A component the local target is still building in the background (a cold first `up`) is a warning: nothing
    in the data path waits for it. A build that failed is a failure."""
    for row in status():
        if row.get("component") == component and row.get("state") in ("building", "build failed"):
            raise CheckFailed(f"{row['state']}: {row['detail']}", "it starts by itself once built; run doctor again"
                              if row["state"] == "building" else "see the log, then `sagaz-lakehouse up`",
                              status=WARN if row["state"] == "building" else FAIL)


# ------------------------------------------------------------------------------------------ metrics

TIERING_LAG_QUERY = "max by (database, table) (fluss_tabletserver_table_bucket_lakeTiering_timestampLag)"


def tiering_lag(endpoints: Endpoints) -> dict[str, float]:
    """Seconds the lake copy of each table lags its Fluss log (newest record in the log minus newest in the lake,
    the worst bucket), from the metric the TieringLagHigh alert reads; a table never tiered yet is left out."""
    import urllib.parse

    data = clients.http_json(f"{endpoints.prometheus}/api/v1/query?query={urllib.parse.quote(TIERING_LAG_QUERY)}")
    lags = {}
    for series in data["data"]["result"]:
        labels, value = series["metric"], float(series["value"][1])
        if value >= 0:
            lags[f"{labels.get('database')}.{labels.get('table')}"] = value / 1000
    return lags


def _prometheus(settings: Settings, endpoints: Endpoints, status: StatusRows) -> str:
    from sagaz_lakehouse.components.prometheus import tiering_lag_threshold_ms

    _not_built_yet(status, s.PROMETHEUS)
    targets = clients.http_json(f"{endpoints.prometheus}/api/v1/targets?state=active")["data"]["activeTargets"]
    down = sorted(t["labels"].get("instance", t["scrapeUrl"]) for t in targets if t["health"] == "down")
    lags = tiering_lag(endpoints)
    threshold = tiering_lag_threshold_ms(settings) / 1000
    shown = ", ".join(f"{table} {lag:.1f}s" for table, lag in sorted(lags.items())) or "no table tiered yet"
    detail = f"{len(targets) - len(down)}/{len(targets)} targets up; tiering lag: {shown} (alert above {threshold:g}s)"
    behind = [table for table, lag in lags.items() if lag > threshold]
    if down or behind:
        raise CheckFailed(detail, f"targets down: {', '.join(down)}" if down else
                          f"{', '.join(behind)} behind: see `sagaz-lakehouse logs flink-taskmanager`", status=WARN)
    return detail
