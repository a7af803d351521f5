"""The catalog's two modes (issue 27) as settings and renders: an external Iceberg REST catalog with an OAuth2
login reaches every client and nothing renders a catalog of its own; the bundled catalog keeps its tables in
PostgreSQL in prod, and no prod render contains sqlite. The OAuth2 client of the Python side runs against the
token-checking stand-in (tests/catalog_standin.py) with the real fixture behind it replaced by a tiny answer server."""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from catalog_standin import TOKEN_PATH, TokenFront
from support import free_port

import sagaz_lakehouse as lakehouse
from sagaz_lakehouse import maintenance, security
from sagaz_lakehouse import stack as s
from sagaz_lakehouse.components import build_stack, tasks
from sagaz_lakehouse.config import ConfigError, Credentials
from sagaz_lakehouse.targets import base

URI = "https://polaris.example.com/api/catalog"
TOKENS = URI + "/v1/oauth/tokens"
CREDENTIAL = "client-id:the-client-secret-value"
EXTERNAL = {"catalog.kind": "external", "catalog.uri": URI, "catalog.warehouse": "quickstart_catalog",
            "catalog.oauth2_server_uri": TOKENS, "catalog.scope": "PRINCIPAL_ROLE:ALL"}
CREDENTIALS = Credentials("render-access", "render-secret-key-0123", "fluss-pw-0123", "trino-pw-0123",
                          catalog_credential=CREDENTIAL)


def settings(**overrides: str) -> lakehouse.Settings:
    return lakehouse.load_settings(None, overrides, environ={})


def problems(**overrides: str) -> dict[str, str]:
    with pytest.raises(ConfigError) as excinfo:
        settings(**overrides)
    return {p.field: p.message for p in excinfo.value.problems}


def rendered(target: str, **overrides: str) -> dict[str, str]:
    chosen = settings(target=target, **overrides)
    return {f.path: f.content for f in base.render(chosen, CREDENTIALS, target)}


# ------------------------------------------------------------------------------------------ settings


def test_prod_refuses_a_catalog_in_sqlite_naming_the_field():
    assert "catalog.database" in problems(profile="prod", **{"catalog.database": "sqlite"})
    assert settings(profile="prod").catalog_database == "postgresql"
    assert settings().catalog_database == "sqlite"  # dev: one file, WAL and a busy timeout


def test_prod_sqlite_makes_render_exit_2(tmp_path):
    result = subprocess.run([sys.executable, "-m", "sagaz_lakehouse", "render", "--target", "compose", "--profile",
                             "prod", "--placeholders", "--out", str(tmp_path / "out"), "--set",
                             "catalog.database=sqlite"], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "catalog.database" in result.stderr and not (tmp_path / "out").exists()


def test_external_settings_are_checked_together():
    found = problems(**{"catalog.kind": "external", "catalog.database": "postgresql", "catalog.scope": "x"})
    assert {"catalog.uri", "catalog.database", "catalog.scope"} <= set(found)
    found = problems(**{"catalog.uri": URI, "catalog.oauth2_server_uri": "ftp://x"})
    assert {"catalog.uri", "catalog.oauth2_server_uri"} <= set(found)  # bundled takes no uri; not an http URL


def test_a_login_without_a_credential_names_where_to_put_it():
    chosen = settings(**EXTERNAL)
    with pytest.raises(ConfigError) as excinfo:
        lakehouse.resolve_credentials(chosen, environ={})
    assert "SAGAZ_LAKEHOUSE_CATALOG_CREDENTIAL" in str(excinfo.value) and "catalog_credential" in str(excinfo.value)
    got = lakehouse.resolve_credentials(chosen, environ={"SAGAZ_LAKEHOUSE_CATALOG_CREDENTIAL": CREDENTIAL})
    assert got.catalog_credential == CREDENTIAL and CREDENTIAL not in repr(got)


# ------------------------------------------------------------------------------------------ renders


@pytest.mark.parametrize("target", ["local", "compose", "kubernetes"])
def test_no_prod_render_contains_sqlite(target):
    files = rendered(target, profile="prod")
    assert [path for path, text in files.items() if "sqlite" in text.lower()] == []
    if target == "local":  # the catalog's URI is in its process environment there; the database's files are here
        assert {"config/catalog-db/start.sh", "config/rest-catalog/pgpass"} <= set(files)
    else:
        assert any("jdbc:postgresql://catalog-db:5432/iceberg_catalog" in text for text in files.values())


def test_the_prod_catalog_database_password_reaches_both_containers_as_secret_files_only():
    """Issue 25's rule for passwords holds for the catalog database's: the catalog's pgpass and PostgreSQL's
    password file are secret files (the instance's secrets volume), in no container's environment or command; the
    catalog's shell drops the image's own CATALOG_JDBC_PASSWORD default."""
    files = rendered("compose", profile="prod")
    project = yaml.safe_load(files["compose.yaml"])
    catalog, db = project["services"][s.REST_CATALOG], project["services"][s.CATALOG_DB]
    script = catalog["entrypoint"][2]
    assert f"-Dorg.postgresql.pgpassfile={security.SECRETS_DIR}/pgpass" in script
    assert "unset CATALOG_JDBC_PASSWORD" in script and "CATALOG_JDBC_PASSWORD" not in catalog["environment"]
    assert db["environment"]["POSTGRES_PASSWORD_FILE"] == f"{security.SECRETS_DIR}/db-password"
    assert "POSTGRES_PASSWORD" not in db["environment"]
    assert not [name for name, svc in project["services"].items() if "CATALOG_DB_PASSWORD" in json.dumps(svc)]
    assert "CATALOG_DB_PASSWORD" not in files.get(".env", "")


@pytest.mark.parametrize("view", [s.View.INTERNAL, s.View.EXTERNAL])
def test_external_catalog_renders_no_catalog_and_every_client_points_at_it(view):
    chosen = settings(**EXTERNAL)
    stack = build_stack(chosen, view)
    assert s.REST_CATALOG not in stack.names and s.CATALOG_DB not in stack.names
    assert not [c.name for c in stack.components for dep, _ in c.depends_on if dep == s.REST_CATALOG]
    args = tasks.tiering_job_arguments(chosen, view)
    pairs = dict(zip(args[::2], args[1::2], strict=False))
    assert pairs["--datalake.iceberg.uri"] == URI and pairs["--datalake.iceberg.warehouse"] == "quickstart_catalog"
    assert pairs["--datalake.iceberg.oauth2-server-uri"] == TOKENS
    assert pairs["--datalake.iceberg.scope"] == "PRINCIPAL_ROLE:ALL"
    assert pairs["--datalake.iceberg.rest.auth.type"] == "oauth2"
    assert "--datalake.iceberg.credential" not in pairs  # the task adds it from its environment


def test_external_catalog_in_compose_keeps_the_credential_in_env_only():
    files = rendered("compose", **EXTERNAL)
    secret = CREDENTIAL.split(":")[1]
    assert [p for p, text in files.items() if secret in text] == [".env"]
    project = yaml.safe_load(files["compose.yaml"])
    assert s.REST_CATALOG not in project["services"]
    trino = files["config/trino/catalog/iceberg.properties"]
    for line in ("iceberg.rest-catalog.security=OAUTH2", f"iceberg.rest-catalog.uri={URI}",
                 f"iceberg.rest-catalog.oauth2.server-uri={TOKENS}",
                 "iceberg.rest-catalog.oauth2.credential=${ENV:CATALOG_CREDENTIAL}",
                 "iceberg.rest-catalog.oauth2.scope=PRINCIPAL_ROLE:ALL",
                 "iceberg.rest-catalog.warehouse=quickstart_catalog"):
        assert line in trino.splitlines(), trino
    services = project["services"]
    for name in (s.COORDINATOR, "fluss-tablet-0", s.TRINO, s.SUBMIT_TIERING, s.LAKE_MAINTENANCE):
        assert services[name]["environment"]["CATALOG_CREDENTIAL"].startswith("${CATALOG_CREDENTIAL:?"), name
    assert "datalake.iceberg.credential: $${CATALOG_CREDENTIAL}" in json.dumps(services[s.COORDINATOR])
    assert "--catalog-oauth2-server-uri" in services[s.LAKE_MAINTENANCE]["command"]


def test_external_catalog_in_kubernetes_reads_the_credential_from_the_secret():
    files = rendered("kubernetes", **EXTERNAL)
    secret = CREDENTIAL.split(":")[1]
    assert [p for p, text in files.items() if secret in text] == ["10-secret.yaml"]
    assert not [p for p in files if "rest-catalog" in p]
    refs = [doc for text in files.values() for doc in yaml.safe_load_all(text) if doc]
    text = json.dumps(refs)
    assert text.count('"key": "CATALOG_CREDENTIAL"') >= 4  # Fluss (2 workloads), Trino, tiering, maintenance


def test_external_catalog_on_the_local_target_writes_the_credential_to_private_files_only():
    chosen = settings(target="local", **EXTERNAL)
    files = base.render(chosen, CREDENTIALS, "local")
    holders = {f.path: f.secret for f in files if CREDENTIAL in f.content}
    assert holders and all(holders.values()), holders  # 0600 files: server.yaml, the maintenance credential
    assert "config/lake-maintenance/catalog-credential" in holders


def test_the_fluss_log_layout_masks_the_credential():
    from sagaz_lakehouse.render import masked_log4j

    pattern = next(line for line in masked_log4j().splitlines() if "layout.pattern" in line)
    assert "credential" in pattern


# ------------------------------------------------------------------------------------------ OAuth2 client


class _Catalog(http.server.BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        body = json.dumps({"defaults": {}, "overrides": {"prefix": "quickstart_catalog"}}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def front() -> Iterator[TokenFront]:
    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Catalog)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    made = TokenFront(free_port(), f"http://127.0.0.1:{upstream.server_address[1]}", "client-id",
                      "the-client-secret-value", "PRINCIPAL_ROLE:ALL")
    threading.Thread(target=made.serve_forever, daemon=True).start()
    yield made
    made.shutdown()
    upstream.shutdown()


def test_the_python_client_logs_in_and_a_wrong_secret_is_refused(front):
    uri = f"http://127.0.0.1:{front.server_address[1]}"
    login = maintenance.OAuth2(uri + TOKEN_PATH, CREDENTIAL, "PRINCIPAL_ROLE:ALL")
    catalog = maintenance.Catalog(uri, "quickstart_catalog", login)
    assert catalog.config()["overrides"]["prefix"] == "quickstart_catalog"
    assert front.granted == 1 and front.unauthorized == 0
    front.tokens.clear()  # as a token the catalog no longer takes: the client fetches a new one once
    assert catalog.config()["overrides"]["prefix"] == "quickstart_catalog" and front.granted == 2
    wrong = maintenance.Catalog(uri, "", maintenance.OAuth2(uri + TOKEN_PATH, "client-id:nope", "PRINCIPAL_ROLE:ALL"))
    with pytest.raises(maintenance.LoginRefused) as excinfo:
        wrong.config()
    assert "invalid_client" in str(excinfo.value) and "nope" not in str(excinfo.value)
    with pytest.raises(maintenance.NotAuthorized):
        maintenance.Catalog(uri).config()  # no login at all


def test_up_checks_an_external_catalog_before_starting_anything(tmp_path: Path):
    port = free_port()  # nobody listens there
    result = subprocess.run([sys.executable, "-m", "sagaz_lakehouse", "up", "--target", "local",
                             "--set", "catalog.kind=external", "--set", f"catalog.uri=http://127.0.0.1:{port}"],
                            capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "catalog.uri" in result.stderr and "/v1/config" in result.stderr, result.stderr
    assert not (tmp_path / ".sagaz-lakehouse" / "pids").exists()
