"""Lake maintenance: keep the Iceberg copy of saga_events fast for months. Standard library only.

Every tiering commit adds small data files (one or more per bucket), a snapshot and a new ``metadata.json`` that
repeats every retained snapshot. Left alone, the same query gets several times slower within minutes (issue 24).
One run, in this order:

1. **Metadata cleanup** (once per table): ``write.metadata.delete-after-commit.enabled`` and
   ``write.metadata.previous-versions-max`` set on the Iceberg table through its REST catalog. Fluss creates the
   table with Iceberg's defaults (keep every ``metadata.json``) and cannot change ``iceberg.*`` properties later
   (``TableDescriptorValidation``, v0.9.1-incubating); the catalog server deletes the files it drops
   (``BaseMetastoreTableOperations.commit``).
2. **Compaction**: Trino's ``ALTER TABLE ... EXECUTE optimize``. It applies and removes the equality deletes Fluss
   tiers for updated keys, and commits a ``RewriteFiles`` with the data sequence number of the snapshot it started
   from, so a tiering commit landing meanwhile neither fails it nor is lost (Trino ``IcebergMetadata.finishOptimize``).
   Fluss's own ``table.datalake.auto-compaction`` is off: for a primary-key table it fails in every round that
   tiered an update (apache/fluss#4352) and it cannot be switched on for an existing table.
3. **Manifests**: ``optimize_manifests`` rewrites the current snapshot's manifests (one more per tiering commit)
   into few, clustered by partition: a query plans from them before it reads a single data file.
4. **Snapshot expiry**: ``expire_snapshots`` keeps ``retention`` of time travel, and never the snapshot Fluss last
   committed: Fluss looks that snapshot up before each commit and stops tiering the table for good once it is gone
   (``IcebergLakeCommitter.getMissingLakeSnapshot``). The cutoff therefore stays before the newest snapshot whose
   summary carries Fluss's ``commit-user``.
5. **Orphan files**: ``remove_orphan_files`` older than ``orphan_retention`` (files of a tiering round that failed
   before it committed).

The table's shape (data and delete files, bytes, snapshots, the size of the current metadata) comes from one read
of the table through the REST catalog; the last run is recorded on the table itself
(``sagaz-lakehouse.maintained-at``), so ``status`` and ``doctor`` read it on every target alike.

This file runs as it is: natively (``python maintenance.py serve ...``) on the local target, mounted into the
python image on compose and Kubernetes, and imported by ``sagaz-lakehouse maintain``. ``serve`` runs maintenance
every ``--every`` seconds and serves the shape as Prometheus metrics. A Trino password and an external catalog's
OAuth2 credential arrive in files, never as arguments.
"""

from __future__ import annotations

import argparse
import base64
import http.server
import json
import os
import ssl
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass, field
from typing import Any

FLUSS_COMMIT_USER = "__fluss_lake_tiering"  # snapshot summary commit-user of Fluss's tiering commits (0.9.1)
MAINTAINED_AT = "sagaz-lakehouse.maintained-at"  # table property: the last run's end, epoch seconds
METADATA_PROPERTIES = ("write.metadata.delete-after-commit.enabled", "write.metadata.previous-versions-max")
FLUSS_SNAPSHOT_MARGIN = 60  # seconds kept before Fluss's snapshot: clocks of catalog and this process may differ
HTTP_TIMEOUT = 120
CREDENTIAL_VARIABLE = "CATALOG_CREDENTIAL"  # an external catalog's client credentials, where no file is named


class MaintenanceError(Exception):
    """A maintenance step failed; the message names the step and the server's answer."""


class TableMissing(MaintenanceError):
    """The catalog has no such table (yet: the service starts before `create-tables`)."""


class NotAuthorized(MaintenanceError):
    """The server wants a (new) login: HTTP 401."""


class LoginRefused(MaintenanceError):
    """The catalog's token endpoint refused the credential (or answered no token)."""


class Unreachable(MaintenanceError):
    """A server does not answer at all (yet: on Kubernetes nothing orders the pods' start)."""


# ------------------------------------------------------------------------------------------------------ HTTP


def _ssl_context(ca_file: str) -> ssl.SSLContext | None:
    return ssl.create_default_context(cafile=ca_file) if ca_file else None


def http_json(url: str, method: str = "GET", body: Any = None, headers: dict[str, str] | None = None,
              ca_file: str = "", timeout: float = HTTP_TIMEOUT) -> tuple[Any, int]:
    """A JSON request; returns the decoded answer and its size in bytes. HTTP errors raise MaintenanceError with
    the server's own message."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={  # noqa: S310 - the stack's endpoints
        "Content-Type": "application/json", "Accept": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=_ssl_context(ca_file)) as response:  # noqa: S310
            raw = response.read()
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:500]
        kind = {404: TableMissing, 401: NotAuthorized}.get(exc.code, MaintenanceError)
        raise kind(f"{method} {url} answered {exc.code}: {detail}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise Unreachable(f"{method} {url} failed: {getattr(exc, 'reason', exc)}") from exc
    return (json.loads(raw) if raw else None), len(raw)


# ---------------------------------------------------------------------------------------------------- catalog


@dataclass(frozen=True)
class OAuth2:
    """An OAuth2 client-credentials login to a REST catalog, as Iceberg's own clients do it (``OAuth2Util``, 1.10.1):
    a form POST of ``grant_type=client_credentials``, ``client_id``, ``client_secret`` (and ``scope``) to the token
    endpoint; the answer's ``access_token`` goes as a Bearer on every request. ``credential`` is
    ``client_id:client_secret`` (or the secret alone, ``OAuth2Util.parseCredential``)."""

    server_uri: str
    credential: str = field(repr=False)
    scope: str = "catalog"  # Iceberg's and pyiceberg's default (OAuth2Properties.CATALOG_SCOPE)

    def token(self) -> str:
        client_id, _, secret = self.credential.rpartition(":")
        form = {"grant_type": "client_credentials", "client_secret": secret, "scope": self.scope or "catalog"}
        if client_id:
            form["client_id"] = client_id
        request = urllib.request.Request(self.server_uri, data=urllib.parse.urlencode(form).encode(),  # noqa: S310
                                         method="POST", headers={"Content-Type": "application/x-www-form-urlencoded",
                                                                 "Accept": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT) as response:  # noqa: S310 - the setting's
                answer = json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:  # the OAuth error's code and description, never the credential
            detail = exc.read().decode(errors="replace")[:300]
            raise LoginRefused(f"the token endpoint {self.server_uri} answered {exc.code}: {detail}") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise Unreachable(f"POST {self.server_uri} failed: {getattr(exc, 'reason', exc)}") from exc
        token = answer.get("access_token") if isinstance(answer, dict) else None
        if not token:
            raise LoginRefused(f"the token endpoint {self.server_uri} answered without an access_token")
        return str(token)


def read_credential(path: str) -> str:
    """A credential from its file (one line; the file is written 0600 by every target)."""
    with open(path) as handle:
        return handle.read().strip()


@dataclass(frozen=True)
class Catalog:
    """The Iceberg REST catalog (the REST spec's ``/v1/{prefix}/namespaces/{ns}/tables/{table}``), with the OAuth2
    login where it wants one (a token fetched once, again after a 401)."""

    uri: str
    warehouse: str = ""
    login: OAuth2 | None = None
    _token: list[str] = field(default_factory=list, repr=False, compare=False)

    def headers(self, fresh: bool = False) -> dict[str, str]:
        if self.login is None:
            return {}
        if fresh or not self._token:
            self._token[:] = [self.login.token()]
        return {"Authorization": f"Bearer {self._token[0]}"}

    def request(self, url: str, method: str = "GET", body: Any = None) -> tuple[Any, int]:
        """``http_json`` with the login; a 401 (an expired token) fetches a new token once."""
        try:
            return http_json(url, method, body, self.headers())
        except NotAuthorized:
            if self.login is None:
                raise
            return http_json(url, method, body, self.headers(fresh=True))

    def config(self) -> dict[str, Any]:
        query = f"?warehouse={urllib.parse.quote(self.warehouse)}" if self.warehouse else ""
        config, _ = self.request(f"{self.uri.rstrip('/')}/v1/config{query}")
        return config or {}

    def _prefix(self) -> str:
        config = self.config()
        prefix = (config.get("overrides") or {}).get("prefix") or (config.get("defaults") or {}).get("prefix", "")
        return f"/{urllib.parse.quote(prefix)}" if prefix else ""

    def ensure_namespace(self, namespace: str) -> bool:
        """Creates the namespace unless it exists; True if it was created."""
        base = f"{self.uri.rstrip('/')}/v1{self._prefix()}/namespaces"
        try:
            self.request(f"{base}/{urllib.parse.quote(namespace)}")
            return False
        except TableMissing:
            pass
        try:
            self.request(base, "POST", {"namespace": [namespace], "properties": {}})
        except MaintenanceError as exc:
            if " 409:" not in str(exc):  # created meanwhile by someone else
                raise
            return False
        return True

    def table_url(self, namespace: str, table: str) -> str:
        return f"{self.uri.rstrip('/')}/v1{self._prefix()}/namespaces/{namespace}/tables/{table}"

    def load(self, namespace: str, table: str) -> tuple[dict[str, Any], int]:
        """The table's current metadata and the size of the catalog's answer (which is that metadata)."""
        answer, size = self.request(self.table_url(namespace, table))
        return answer["metadata"], size

    def set_properties(self, namespace: str, table: str, properties: dict[str, str], table_uuid: str) -> None:
        self.request(self.table_url(namespace, table), "POST", {
            "requirements": [{"type": "assert-table-uuid", "uuid": table_uuid}],
            "updates": [{"action": "set-properties", "updates": properties}]})


# ------------------------------------------------------------------------------------------------------ shape


@dataclass(frozen=True)
class Shape:
    """What the table looks like now, from its metadata."""

    data_files: int
    delete_files: int
    data_bytes: int
    records: int
    snapshots: int
    metadata_bytes: int
    maintained_at: float | None  # epoch seconds of the last run's end (None: never)
    fluss_snapshot_ms: int | None  # when Fluss last committed (the snapshot expiry must keep)
    properties: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def average_file_bytes(self) -> int:
        return self.data_bytes // self.data_files if self.data_files else 0

    def as_dict(self) -> dict[str, Any]:
        return {**{k: v for k, v in asdict(self).items() if k != "properties"},
                "average_file_bytes": self.average_file_bytes}


def shape_of(metadata: dict[str, Any], metadata_bytes: int) -> Shape:
    snapshots = metadata.get("snapshots") or []
    current = next((s for s in snapshots if s.get("snapshot-id") == metadata.get("current-snapshot-id")), None)
    summary = (current or {}).get("summary") or {}
    fluss = [s["timestamp-ms"] for s in snapshots if (s.get("summary") or {}).get("commit-user") == FLUSS_COMMIT_USER]
    properties = metadata.get("properties") or {}
    maintained = properties.get(MAINTAINED_AT)
    return Shape(data_files=int(summary.get("total-data-files", 0)),
                 delete_files=int(summary.get("total-delete-files", 0)),
                 data_bytes=int(summary.get("total-files-size", 0)), records=int(summary.get("total-records", 0)),
                 snapshots=len(snapshots), metadata_bytes=metadata_bytes,
                 maintained_at=float(maintained) if maintained else None,
                 fluss_snapshot_ms=max(fluss) if fluss else None, properties=dict(properties))


# ------------------------------------------------------------------------------------------------------ Trino


@dataclass(frozen=True)
class Trino:
    """Trino's client REST protocol (``POST /v1/statement``, then ``nextUri`` until the query is done)."""

    url: str
    user: str
    password: str = field(default="", repr=False)
    ca_file: str = ""

    def _headers(self) -> dict[str, str]:
        headers = {"X-Trino-User": self.user, "X-Trino-Source": "sagaz-lakehouse-maintenance"}
        if self.password:
            token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        return headers

    def require_ready(self) -> None:
        """Trino answers queries only once it has started (``/v1/info``, public even where clients log in)."""
        info, _ = http_json(f"{self.url.rstrip('/')}/v1/info", ca_file=self.ca_file)
        if (info or {}).get("starting", True):
            raise Unreachable(f"Trino at {self.url} is still starting")

    def execute(self, sql: str, timeout: float = 3600) -> list[list[Any]]:
        request = urllib.request.Request(f"{self.url.rstrip('/')}/v1/statement",  # noqa: S310 - the stack's Trino
                                         data=sql.encode(), method="POST", headers=self._headers())
        deadline = time.monotonic() + timeout
        try:
            with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT,  # noqa: S310
                                        context=_ssl_context(self.ca_file)) as response:
                answer = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise MaintenanceError(f"Trino refused `{sql}`: {exc.code} {exc.read().decode(errors='replace')[:300]}"
                                   ) from exc
        except (urllib.error.URLError, OSError) as exc:
            raise Unreachable(f"Trino at {self.url} is not reachable: {getattr(exc, 'reason', exc)}") from exc
        rows: list[list[Any]] = []
        while True:
            if answer.get("error"):
                error = answer["error"]
                raise MaintenanceError(f"Trino failed `{sql}`: {error.get('errorName')}: {error.get('message')}")
            rows += answer.get("data") or []
            next_uri = answer.get("nextUri")
            if not next_uri:
                return rows
            if time.monotonic() > deadline:
                raise MaintenanceError(f"Trino did not finish `{sql}` within {timeout:.0f}s")
            answer, _ = http_json(next_uri, headers=self._headers(), ca_file=self.ca_file)


# ------------------------------------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class Policy:
    """What maintenance keeps: all durations in seconds."""

    retention: int  # time travel kept (lake.snapshot_retention)
    orphan_retention: int  # files no snapshot references are removed once older than this
    file_size_threshold: str  # optimize rewrites files smaller than this (Trino data size, e.g. 128MB)
    metadata_versions: int  # write.metadata.previous-versions-max


def expiry_threshold(policy: Policy, shape: Shape, now: float) -> int:
    """``expire_snapshots``' retention in seconds: the policy's, or longer where the cutoff would otherwise pass the
    snapshot Fluss last committed (an idle table whose newest snapshots are someone else's, e.g. optimize's)."""
    if shape.fluss_snapshot_ms is None:
        return policy.retention
    age_of_fluss_snapshot = int(now - shape.fluss_snapshot_ms / 1000) + FLUSS_SNAPSHOT_MARGIN
    return max(policy.retention, age_of_fluss_snapshot)


def metadata_updates(policy: Policy, shape: Shape) -> dict[str, str]:
    wanted = {METADATA_PROPERTIES[0]: "true", METADATA_PROPERTIES[1]: str(policy.metadata_versions)}
    return {k: v for k, v in wanted.items() if shape.properties.get(k) != v}


@dataclass
class Report:
    table: str
    dry_run: bool
    before: Shape
    after: Shape | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(step.get("result", "ok") == "ok" for step in self.steps)

    @property
    def expired_snapshots(self) -> int:
        return max(0, self.before.snapshots - self.after.snapshots) if self.after else 0

    def as_dict(self) -> dict[str, Any]:
        shapes = {k: (s.as_dict() if s else None) for k, s in (("before", self.before), ("after", self.after))}
        return {"table": self.table, "dry_run": self.dry_run, "ok": self.ok, **shapes, "steps": self.steps,
                "expired_snapshots": self.expired_snapshots, "seconds": round(self.seconds, 2)}


@dataclass(frozen=True)
class Lake:
    """Where the table lives and how to reach the servers that maintain it."""

    catalog: Catalog
    trino: Trino
    namespace: str
    table: str
    trino_catalog: str = "iceberg"

    @property
    def name(self) -> str:
        return f"{self.namespace}.{self.table}"

    @property
    def qualified(self) -> str:
        return f'{self.trino_catalog}."{self.namespace}"."{self.table}"'

    def shape(self) -> Shape:
        metadata, size = self.catalog.load(self.namespace, self.table)
        return shape_of(metadata, size)


def run(lake: Lake, policy: Policy, dry_run: bool = False, log: Any = None, now: Any = time.time) -> Report:
    """One maintenance run (the module's docstring gives the order and the reasons). ``dry_run``: what would be
    done, nothing changed."""
    say = log or (lambda _message: None)
    started = time.monotonic()
    if not dry_run:
        lake.trino.require_ready()
    metadata, size = lake.catalog.load(lake.namespace, lake.table)
    before = shape_of(metadata, size)
    report = Report(lake.name, dry_run, before)
    threshold = expiry_threshold(policy, before, now())
    steps: list[tuple[str, str, Any]] = []
    updates = metadata_updates(policy, before)
    if updates:
        steps.append(("metadata cleanup", f"set {', '.join(f'{k}={v}' for k, v in updates.items())}",
                      lambda: lake.catalog.set_properties(lake.namespace, lake.table, updates,
                                                          metadata["table-uuid"])))
    steps += [
        ("compaction", f"optimize files under {policy.file_size_threshold} and apply deletes",
         lambda: lake.trino.execute(f"ALTER TABLE {lake.qualified} EXECUTE optimize(file_size_threshold => "
                                    f"'{policy.file_size_threshold}')")),
    ]
    if before.snapshots:  # a table without a snapshot has no manifests: Trino's optimize_manifests fails on it (476)
        steps.append(("manifests", "rewrite the manifests into few, clustered by partition (every commit adds one)",
                      lambda: lake.trino.execute(f"ALTER TABLE {lake.qualified} EXECUTE optimize_manifests")))
    steps += [
        ("snapshot expiry", f"expire snapshots older than {threshold}s (retention {policy.retention}s; Fluss's "
                            "last snapshot kept)",
         lambda: lake.trino.execute(f"ALTER TABLE {lake.qualified} EXECUTE expire_snapshots(retention_threshold => "
                                    f"'{threshold}s')")),
        ("orphan files", f"remove files no snapshot references, older than {policy.orphan_retention}s",
         lambda: lake.trino.execute(f"ALTER TABLE {lake.qualified} EXECUTE remove_orphan_files(retention_threshold "
                                    f"=> '{policy.orphan_retention}s')")),
    ]
    for name, what, action in steps:
        step_started = time.monotonic()
        say(f"{lake.name}: {name}: {'would ' if dry_run else ''}{what}")
        step: dict[str, Any] = {"step": name, "what": what, "attempts": 0}
        if not dry_run:
            step.update(_attempt(action, say, f"{lake.name}: {name}"))
        report.steps.append({**step, "seconds": round(time.monotonic() - step_started, 2)})
    if not dry_run:
        metadata, _ = lake.catalog.load(lake.namespace, lake.table)
        lake.catalog.set_properties(lake.namespace, lake.table, {MAINTAINED_AT: f"{now():.0f}"},
                                    metadata["table-uuid"])
        report.after = lake.shape()
    report.seconds = time.monotonic() - started
    return report


COMMIT_CONFLICT = "ICEBERG_COMMIT_ERROR"  # Trino's error when Iceberg's commit validation fails
ATTEMPTS = 5
RETRY_SECONDS = 3.0


def _attempt(action: Any, say: Any, what: str) -> dict[str, Any]:
    """A step, again after a commit conflict. A tiering commit that lands while optimize runs may carry position
    deletes in the partitions optimize rewrites; Iceberg then refuses optimize's commit ("found new position delete
    for replaced data file") and does not retry it itself. The tiering commit is unaffected; optimize starts over
    from the new snapshot. Any other failure ends the step at once."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            action()
            return {"attempts": attempt, "result": "ok"}
        except MaintenanceError as exc:
            if COMMIT_CONFLICT not in str(exc) or attempt == ATTEMPTS:
                say(f"{what}: failed: {exc}")
                return {"attempts": attempt, "result": "failed", "error": str(exc)[:1000]}
            say(f"{what}: a tiering commit landed meanwhile; again ({attempt}/{ATTEMPTS})")
            time.sleep(RETRY_SECONDS)
    raise AssertionError("unreachable")


# ---------------------------------------------------------------------------------------------------- metrics


METRICS = (  # name, help, Shape attribute
    ("sagaz_lake_data_files", "Data files in the table's current snapshot", "data_files"),
    ("sagaz_lake_delete_files", "Delete files (equality and position) in the current snapshot", "delete_files"),
    ("sagaz_lake_data_bytes", "Bytes of the current snapshot's files", "data_bytes"),
    ("sagaz_lake_average_file_bytes", "Average data file size", "average_file_bytes"),
    ("sagaz_lake_snapshots", "Snapshots the table keeps (time travel)", "snapshots"),
    ("sagaz_lake_metadata_bytes", "Size of the table's current metadata", "metadata_bytes"),
    ("sagaz_lake_maintained_timestamp_seconds", "End of the last maintenance run (0: never)", "maintained_at"),
)


class Exporter:
    """The latest shape and run counts as Prometheus text (exposition format 0.0.4)."""

    def __init__(self, table: str) -> None:
        self.table = table
        self.shape: Shape | None = None
        self.runs = {"ok": 0, "failed": 0}
        self.lock = threading.Lock()

    def text(self) -> str:
        label = f'{{table="{self.table}"}}'
        lines = []
        with self.lock:
            if self.shape is not None:
                for name, help_text, attribute in METRICS:
                    lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge",
                              f"{name}{label} {float(getattr(self.shape, attribute) or 0)}"]
            lines += ["# HELP sagaz_lake_maintenance_runs_total Maintenance runs by result",
                      "# TYPE sagaz_lake_maintenance_runs_total counter"]
            lines += [f'sagaz_lake_maintenance_runs_total{{table="{self.table}",result="{result}"}} {count}'
                      for result, count in self.runs.items()]
        return "\n".join(lines) + "\n"

    def serve(self, host: str, port: int) -> http.server.ThreadingHTTPServer:
        exporter = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = exporter.text().encode() if self.path.startswith("/metrics") else b"ok\n"
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet: Prometheus asks every scrape interval

        server = http.server.ThreadingHTTPServer((host, port), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server


def serve(lake: Lake, policy: Policy, every: int, exporter: Exporter, observe_every: int = 60,
          stop: threading.Event | None = None) -> None:
    """Maintenance ``every`` seconds after the run recorded on the table (at once for a table never maintained),
    the shape every ``observe_every`` seconds; failures are printed and counted, and the loop goes on. A table not
    created yet, or a server that does not answer at all, is waited for: printed once, not counted as a failed run
    (if it lasts, the missed runs make maintenance overdue, which status, doctor and an alert report)."""
    stop = stop or threading.Event()
    waiting = ""
    while not stop.is_set():
        pause = float(observe_every)
        try:
            shape = lake.shape()
            with exporter.lock:
                exporter.shape = shape
            due = 0.0 if shape.maintained_at is None else shape.maintained_at + every - time.time()
            if due <= 0:
                report = run(lake, policy, log=_print)
                result = "ok" if report.ok else "failed"
                with exporter.lock:
                    exporter.shape, exporter.runs[result] = report.after, exporter.runs[result] + 1
                _print(f"{lake.name}: maintained in {report.seconds:.1f}s ({result}): data files "
                       f"{report.before.data_files} → {report.after.data_files if report.after else '?'}, "
                       f"{report.expired_snapshots} snapshot(s) expired")
                due = every
            pause = max(1.0, min(pause, due))
            waiting = ""
        except (TableMissing, Unreachable) as exc:
            why = ("no such table yet; waiting for `sagaz-lakehouse create-tables`" if isinstance(exc, TableMissing)
                   else f"waiting for the servers: {exc}")
            if why.split(":")[0] != waiting.split(":")[0]:
                _print(f"{lake.name}: {why}")
            waiting = why
            pause = min(pause, 5.0)
        except MaintenanceError as exc:
            with exporter.lock:
                exporter.runs["failed"] += 1
            _print(f"{lake.name}: maintenance failed: {exc}")
        stop.wait(pause)


def _print(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {message}", flush=True)


# ---------------------------------------------------------------------------------------------------- command


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="maintenance.py", description=__doc__.split("\n", 1)[0])
    parser.add_argument("verb", choices=("run", "serve"))
    parser.add_argument("--label", default="", help="ignored: lets a supervisor recognise the process")
    parser.add_argument("--catalog", required=True, help="Iceberg REST catalog URI")
    parser.add_argument("--warehouse", default="")
    parser.add_argument("--catalog-oauth2-server-uri", default="", help="the catalog's token endpoint (OAuth2)")
    parser.add_argument("--catalog-credential-file", default="", help="a file holding client_id:client_secret")
    parser.add_argument("--catalog-scope", default="catalog")
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--table", required=True)
    parser.add_argument("--trino", required=True, help="Trino URL (https where it takes logins)")
    parser.add_argument("--trino-user", default="sagaz-lakehouse")
    parser.add_argument("--trino-password-file", default="", help="a file holding the Trino password")
    parser.add_argument("--trino-ca", default="", help="the certificate Trino's HTTPS is trusted with")
    parser.add_argument("--retention", type=int, required=True, help="snapshot retention, seconds")
    parser.add_argument("--orphan-retention", type=int, required=True, help="seconds")
    parser.add_argument("--file-size-threshold", default="128MB")
    parser.add_argument("--metadata-versions", type=int, default=20)
    parser.add_argument("--every", type=int, default=3600, help="serve: seconds between runs")
    parser.add_argument("--observe-every", type=int, default=60, help="serve: seconds between shape reads")
    parser.add_argument("--metrics-host", default="127.0.0.1")
    parser.add_argument("--metrics-port", type=int, default=0, help="serve: Prometheus metrics port (0: none)")
    parser.add_argument("--dry-run", action="store_true")
    return parser


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    password = ""
    if args.trino_password_file:
        with open(args.trino_password_file) as handle:
            password = handle.read().strip()
    login = None
    if args.catalog_oauth2_server_uri:  # the credential from its file, else from the container's environment
        credential = (read_credential(args.catalog_credential_file) if args.catalog_credential_file
                      else os.environ.get(CREDENTIAL_VARIABLE, ""))
        login = OAuth2(args.catalog_oauth2_server_uri, credential, args.catalog_scope)
    lake = Lake(Catalog(args.catalog, args.warehouse, login),
                Trino(args.trino, args.trino_user, password, args.trino_ca), args.namespace, args.table)
    policy = Policy(args.retention, args.orphan_retention, args.file_size_threshold, args.metadata_versions)
    if args.verb == "run":
        try:
            report = run(lake, policy, dry_run=args.dry_run, log=_print)
        except MaintenanceError as exc:
            print(f"maintenance failed: {exc}", file=sys.stderr)
            return 1
        print(json.dumps(report.as_dict(), indent=2))
        return 0
    exporter = Exporter(lake.name)
    if args.metrics_port:
        exporter.serve(args.metrics_host, args.metrics_port)
    serve(lake, policy, args.every, exporter, args.observe_every)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
