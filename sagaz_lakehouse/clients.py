"""Clients for the running stack, from the user's host: Fluss (pyfluss), Iceberg (pyiceberg), Trino, HTTP.

Every entry point checks reachability first with a short TCP connect, so a command run against a stack that is
down fails within seconds with "is the stack up?" instead of hanging in a client's retry loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlparse

from sagaz_lakehouse import maintenance
from sagaz_lakehouse.addresses import Endpoints, catalog_warehouse
from sagaz_lakehouse.config import Credentials, Settings
from sagaz_lakehouse.errors import StackNotReachable
from sagaz_lakehouse.identities import client_s3_keys

CONNECT_TIMEOUT = 3.0
CLOSE_TIMEOUT = 10.0


def host_port(address: str) -> tuple[str, int]:
    """'host:port' or 'http://host:port/...' → (host, port)."""
    if "://" in address:
        parsed = urlparse(address)
        return parsed.hostname or "127.0.0.1", parsed.port or (443 if parsed.scheme == "https" else 80)
    host, _, port = address.rpartition(":")
    return host, int(port)


def tcp_open(address: str, timeout: float = CONNECT_TIMEOUT) -> bool:
    host, port = host_port(address)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def require_reachable(component: str, address: str) -> None:
    if not tcp_open(address):
        raise StackNotReachable(component, address, "connection refused or timed out")


def http_json(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - our own endpoints
        return json.loads(response.read() or b"null")


def http_ok(url: str, timeout: float = 5.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


@asynccontextmanager
async def fluss_connection(endpoints: Endpoints, timeout: float = 10.0) -> AsyncIterator[Any]:
    """An open pyfluss connection to the bootstrap server; fails within ``timeout`` seconds."""
    require_reachable("Fluss coordinator", endpoints.fluss_bootstrap)
    import fluss

    config = fluss.Config({"bootstrap.servers": endpoints.fluss_bootstrap, **endpoints.fluss_login})
    try:
        connection = await asyncio.wait_for(fluss.FlussConnection.create(config), timeout)
    except TimeoutError as exc:
        raise StackNotReachable("Fluss", endpoints.fluss_bootstrap, f"no answer within {timeout:.0f}s") from exc
    try:
        yield connection
    finally:
        # pyfluss waits forever in close() when Fluss went away with rows still queued: bound it.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(connection.close(), CLOSE_TIMEOUT)


def iceberg_catalog(settings: Settings, credentials: Credentials, endpoints: Endpoints) -> Any:
    """A pyiceberg REST catalog client configured with the same warehouse and S3 settings as the servers."""
    require_reachable("Iceberg REST catalog", endpoints.rest_catalog)
    from pyiceberg.catalog import load_catalog

    access_key, secret_key = client_s3_keys(settings, credentials)
    login: dict[str, str] = {}
    if endpoints.catalog_login is not None:  # pyiceberg 0.12 (catalog/rest/__init__.py): client credentials grant
        login = {"credential": endpoints.catalog_login.credential,
                 "oauth2-server-uri": endpoints.catalog_login.server_uri}
        if endpoints.catalog_login.scope:
            login["scope"] = endpoints.catalog_login.scope
    warehouse = catalog_warehouse(settings)
    return load_catalog("sagaz", **{
        "type": "rest",
        "uri": endpoints.rest_catalog,
        **({"warehouse": warehouse} if warehouse else {}),
        **login,
        "s3.endpoint": endpoints.s3,
        "s3.access-key-id": access_key,
        "s3.secret-access-key": secret_key,
        "s3.region": settings.s3_region,
        "s3.force-virtual-addressing": str(not settings.s3_path_style).lower(),
    })


def rest_catalog(settings: Settings, endpoints: Endpoints) -> maintenance.Catalog:
    """The catalog's REST API as the host reaches it, with its OAuth2 login where it wants one (standard library)."""
    login = endpoints.catalog_login
    oauth2 = maintenance.OAuth2(login.server_uri, login.credential, login.scope or "catalog") if login else None
    return maintenance.Catalog(endpoints.rest_catalog, catalog_warehouse(settings), oauth2)


def check_external_catalog(settings: Settings, endpoints: Endpoints) -> list[str]:
    """Before an external catalog's clients start: its token endpoint takes the credential, it answers
    ``/v1/config`` with that token, and the namespace exists or can be created. Each step that passed, in order;
    a failure raises ConfigError naming the setting behind the step."""
    from sagaz_lakehouse.errors import ConfigError, Problem

    catalog = rest_catalog(settings, endpoints)
    done = []
    steps: list[tuple[str, str, Any, str]] = []
    if catalog.login is not None:
        steps.append(("catalog.oauth2_server_uri", "token", lambda: catalog.headers(fresh=True),
                      "check the token endpoint and the catalog credential (client_id:client_secret)"))
    steps += [("catalog.uri", "/v1/config", catalog.config, "check catalog.uri and catalog.warehouse"),
              ("lake.database", f"namespace {settings.lake.database}",
               lambda: catalog.ensure_namespace(settings.lake.database),
               "let the credential create namespaces, or create it in the catalog")]
    for field, what, step, hint in steps:
        try:
            step()
        except maintenance.MaintenanceError as exc:
            raise ConfigError([Problem(field, f"the external catalog's {what} check failed: {exc}", hint)],
                              "the external catalog") from exc
        done.append(what)
    return done


def trino_query(endpoints: Endpoints, sql: str, params: tuple = (), catalog: str = "iceberg",
                timeout: float = 60.0) -> list[tuple]:
    """Run one statement on Trino (``?`` placeholders bound to ``params``) and return all rows."""
    return trino_table(endpoints, sql, params, catalog, timeout)[1]


# Trino answers NO_NODES_AVAILABLE for a few seconds after it stops "starting" (its node list is refreshed every 5 s,
# NodeScheduler): a statement that meets it is run again, for up to this long.
TRINO_NODES_WAIT = 30.0


def trino_table(endpoints: Endpoints, sql: str, params: tuple = (), catalog: str = "iceberg",
                timeout: float = 60.0) -> tuple[list[str], list[tuple]]:
    """Like ``trino_query``, with the column names."""
    import trino

    deadline = time.monotonic() + TRINO_NODES_WAIT
    while True:
        connection = trino_connection(endpoints, catalog, timeout)
        try:
            cursor = connection.cursor()
            cursor.execute(sql, params) if params else cursor.execute(sql)
            rows = [tuple(row) for row in cursor.fetchall()]
            return [column[0] for column in cursor.description or []], rows
        except trino.exceptions.TrinoQueryError as exc:
            if exc.error_name != "NO_NODES_AVAILABLE" or time.monotonic() > deadline:
                raise
        finally:
            connection.close()
        time.sleep(1.0)


def trino_connection(endpoints: Endpoints, catalog: str = "iceberg", timeout: float = 60.0) -> Any:
    """A DB-API connection: over HTTPS with the password where Trino wants a login (prod, local target), else over
    HTTP as ``sagaz-lakehouse`` (Trino without authentication takes any user name)."""
    import trino

    login = endpoints.trino_login
    if login is None:
        require_reachable("Trino", endpoints.trino)
        host, port = host_port(endpoints.trino)
        return trino.dbapi.connect(host=host, port=port, user="sagaz-lakehouse", catalog=catalog,
                                   request_timeout=timeout)
    import requests

    require_reachable("Trino", login.url)
    host, port = host_port(login.url)
    session = requests.Session()
    # Not trust_env: requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE override a session's `verify`, and then our
    # certificate is not the one checked ("self-signed certificate").
    session.trust_env = False
    session.verify = login.ca_file
    return trino.dbapi.connect(host=host, port=port, user=login.user, catalog=catalog, request_timeout=timeout,
                               http_scheme="https", auth=trino.auth.BasicAuthentication(login.user, login.password),
                               http_session=session)


def iceberg_read(table: Any, row_filter: Any, fields: tuple[str, ...] = ("*",)) -> tuple[Any, bool]:
    """Rows of an Iceberg table as a pyarrow Table, and whether delete files had to be ignored.

    Fluss tiers updates and deletes of primary-key rows as equality deletes, which PyIceberg cannot apply yet
    (apache/iceberg#6568). Then only the data files are read: exact for rows that were never updated or deleted
    (the doctor's probe, appended saga events); Trino applies the deletes and is the reference for such rows.
    """
    scan = table.scan(row_filter=row_filter, selected_fields=fields)
    try:
        return scan.to_arrow(), False
    except ValueError as exc:
        if "equality deletes" not in str(exc):
            raise
    # Plan again, keeping data files only: pyiceberg 0.12 refuses while planning, before any filter of ours could
    # apply, unless the planner's own entry filter drops the delete files (tests/local/stacks pins this behaviour).
    from pyiceberg.io.pyarrow import ArrowScan
    from pyiceberg.manifest import DataFileContent
    from pyiceberg.table import ManifestGroupPlanner

    snapshot = scan.snapshot()
    # scan.row_filter is the parsed expression: these lower-level classes take no SQL-like strings.
    planner = ManifestGroupPlanner(table.metadata, table.io, scan.row_filter)
    data_only = [] if snapshot is None else planner.plan_files(
        snapshot.manifests(table.io), manifest_entry_filter=lambda e: e.data_file.content == DataFileContent.DATA)
    arrow_scan = ArrowScan(table.metadata, table.io, scan.projection(), scan.row_filter)
    return arrow_scan.to_table(data_only), True
