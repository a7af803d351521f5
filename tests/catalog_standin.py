"""A stand-in for a team's own Iceberg REST catalog that wants OAuth2 (as Apache Polaris does): the real REST server
(Iceberg's fixture, the locked jar the stack itself runs) behind a token-checking front, named as such. Importable
as ``catalog_standin`` (tests/ is on sys.path).

The front is what no catalog here can do itself (the fixture takes no authentication: research notes, issue 27):

- ``POST /oauth/tokens``: the client-credentials grant as Iceberg's clients send it (a form with ``grant_type``,
  ``client_id``, ``client_secret``, ``scope``; ``OAuth2Util``, Iceberg 1.10.1). The right client and secret and the
  expected scope get an opaque token (``access_token``, ``token_type: bearer``, ``issued_token_type``; no
  ``expires_in``, so no client schedules a refresh); anything else gets ``401 {"error": "invalid_client"}`` (RFC 6749
  5.2, which Iceberg's ``ErrorHandlers`` turn into NotAuthorizedException).
- every other request needs ``Authorization: Bearer <a token it issued>`` (else 401 in the REST spec's error shape)
  and is forwarded to the fixture as it is.

It binds every interface, so containers reach it through the engine's bridge as the host does.
"""

from __future__ import annotations

import http.server
import json
import os
import secrets
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

TOKEN_PATH = "/oauth/tokens"
# Not forwarded: hop-by-hop headers, the login, and Accept-Encoding (the answer goes back without its encoding header).
HOP_HEADERS = {"host", "authorization", "connection", "content-length", "transfer-encoding", "keep-alive",
               "accept-encoding"}


class TokenFront(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, upstream: str, client_id: str, client_secret: str, scope: str) -> None:
        super().__init__(("0.0.0.0", port), _Handler)  # noqa: S104 - containers reach it through the bridge
        self.upstream = upstream
        self.client_id, self.client_secret, self.scope = client_id, client_secret, scope
        self.tokens: set[str] = set()
        self.granted = 0
        self.refused_logins: list[dict[str, str]] = []  # the form fields of each refused grant (secret left out)
        self.forwarded: Counter[str] = Counter()  # "METHOD /path-prefix" of each authorized request
        self.clients: Counter[str] = Counter()  # who made them: X-Client-Version (Iceberg's clients) or User-Agent
        self.unauthorized = 0


class _Handler(http.server.BaseHTTPRequestHandler):
    server: TokenFront
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":  # a HEAD answer has no body, whatever its length says
            self.wfile.write(body)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _token(self, body: bytes) -> None:
        form = {k: v[0] for k, v in urllib.parse.parse_qs(body.decode()).items()}
        front = self.server
        ok = (form.get("grant_type") == "client_credentials" and form.get("client_id") == front.client_id
              and secrets.compare_digest(form.get("client_secret", ""), front.client_secret)
              and form.get("scope") == front.scope)
        if not ok:
            front.refused_logins.append({k: v for k, v in form.items() if k != "client_secret"})
            self._answer(401, json.dumps({"error": "invalid_client",
                                          "error_description": "unknown client, wrong secret or scope"}).encode())
            return
        token = secrets.token_urlsafe(24)
        front.tokens.add(token)
        front.granted += 1
        self._answer(200, json.dumps({"access_token": token, "token_type": "bearer", "scope": front.scope,
                                      "issued_token_type": "urn:ietf:params:oauth:token-type:access_token"}).encode())

    def _forward(self, method: str) -> None:
        body = self._body() if method in ("POST", "PUT", "DELETE") else b""
        if method == "POST" and self.path.split("?")[0] == TOKEN_PATH:
            self._token(body)
            return
        bearer = self.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if bearer not in self.server.tokens:
            self.server.unauthorized += 1
            self._answer(401, json.dumps({"error": {"message": "a bearer token from the token endpoint is needed",
                                                    "type": "NotAuthorizedException", "code": 401}}).encode())
            return
        self.server.forwarded[f"{method} {'/'.join(self.path.split('?')[0].split('/')[:3])}"] += 1
        self.server.clients[self.headers.get("X-Client-Version") or self.headers.get("User-Agent", "?")] += 1
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}
        request = urllib.request.Request(self.server.upstream + self.path, data=body or None,  # noqa: S310
                                         method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310 - the fixture on loopback
                status, data, kind = response.status, response.read(), response.headers.get("Content-Type", "")
        except urllib.error.HTTPError as exc:
            status, data, kind = exc.code, exc.read(), exc.headers.get("Content-Type", "")
        self._answer(status, data, kind or "application/json")

    def do_GET(self) -> None:
        self._forward("GET")

    def do_HEAD(self) -> None:
        self._forward("HEAD")

    def do_POST(self) -> None:
        self._forward("POST")

    def do_DELETE(self) -> None:
        self._forward("DELETE")


class ExternalCatalog:
    """The fixture (sqlite in ``workdir``, its warehouse in the stack's bucket through ``s3_endpoint``) on
    ``fixture_port`` (loopback) and the token front on ``port``."""

    def __init__(self, workdir: Path, java: str, jar: Path, *, port: int, fixture_port: int, s3_endpoint: str,
                 warehouse: str, access_key: str, secret_key: str, region: str, client_id: str,
                 client_secret: str, scope: str) -> None:
        self.workdir, self.java, self.jar = workdir, java, jar
        self.port, self.fixture_port = port, fixture_port
        self.env = {**os.environ,
                    "CATALOG_WAREHOUSE": warehouse,
                    "CATALOG_URI": f"jdbc:sqlite:file:{workdir}/external.db?journal_mode=WAL&busy_timeout=30000",
                    "CATALOG_IO__IMPL": "org.apache.iceberg.aws.s3.S3FileIO",
                    "CATALOG_S3_ENDPOINT": s3_endpoint, "CATALOG_S3_PATH__STYLE__ACCESS": "true",
                    "CATALOG_CLIENT_REGION": region, "CATALOG_REST_PORT": str(fixture_port),
                    "AWS_ACCESS_KEY_ID": access_key, "AWS_SECRET_ACCESS_KEY": secret_key, "AWS_REGION": region}
        self.front = TokenFront(port, f"http://127.0.0.1:{fixture_port}", client_id, client_secret, scope)
        self.process: subprocess.Popen[bytes] | None = None
        self.log = workdir / "external-catalog.log"

    def start(self, timeout: float = 120) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen([self.java, "-Xmx256m", "-jar", str(self.jar)], env=self.env, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.fixture_port}/v1/config", timeout=3):
                    break
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the stand-in catalog did not start:\n{self.log.read_text()[-3000:]}") from None
                time.sleep(0.5)
        threading.Thread(target=self.front.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.front.shutdown()
        self.front.server_close()
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def standin(workdir: Path, port: int, minio_port: int, client_id: str, client_secret: str, scope: str,
            warehouse: str) -> ExternalCatalog:
    """The stand-in on ``port``: Iceberg's REST fixture (the jar the stack runs) behind the token front, its tables
    in the stack's MinIO at ``minio_port`` with the dev keys. Not started yet."""
    from support import cache_dir, free_port

    from sagaz_lakehouse import artifacts, config
    from sagaz_lakehouse.targets.local.jdk import find_java

    defaults = config.Settings()
    jar = artifacts.fetch(artifacts.group("rest-catalog"), cache_dir())[0]
    return ExternalCatalog(workdir, str(find_java(defaults, minimum=17).executable), jar, port=port,
                           fixture_port=free_port(), s3_endpoint=f"http://127.0.0.1:{minio_port}",
                           warehouse=warehouse, access_key=config.DEV_CREDENTIALS.access_key,
                           secret_key=config.DEV_CREDENTIALS.secret_key, region=defaults.lake.region,
                           client_id=client_id, client_secret=client_secret, scope=scope)


def running(workdir: Path, port: int, minio_port: int, client_id: str, client_secret: str, scope: str,
            warehouse: str) -> Iterator[ExternalCatalog]:
    """A module fixture's body: the stand-in started for the module, stopped after it."""
    made = standin(workdir, port, minio_port, client_id, client_secret, scope, warehouse)
    made.start()
    try:
        yield made
    finally:
        made.stop()
