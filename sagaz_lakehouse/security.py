"""Security material: who logs in where, and the files that carry it. Fluss's SASL logins (the JAAS file of every
JVM that talks to Fluss, pyfluss's login properties), Trino's password logins over HTTPS (the hashed password file,
the shared secret of its nodes), and when each applies. Certificates themselves are made by :mod:`sagaz_lakehouse.tls`.

Secrets appear here as placeholders (``${FLUSS_CLIENT_PASSWORD}``, ``${TRINO_PASSWORD}``, ...), filled in by
:func:`sagaz_lakehouse.identities.substitute_secrets` where a file must carry the value itself.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from sagaz_lakehouse import config
from sagaz_lakehouse.addresses import LOOPBACK, Endpoints, TrinoLogin
from sagaz_lakehouse.config import Credentials, Settings
from sagaz_lakehouse.profiles import profile
from sagaz_lakehouse.stack import TRINO, View

FLUSS_PASSWORD_VAR = "FLUSS_CLIENT_PASSWORD"  # noqa: S105 - a variable name, not a value
FLUSS_PASSWORD = "${" + FLUSS_PASSWORD_VAR + "}"
FLUSS_CLIENT_USER = "sagaz"  # the one SASL user: servers between themselves, the tiering job, every client
# The login module of Fluss's SASL/PLAIN (fluss-common security/auth/sasl/plain, v0.9.1-incubating).
FLUSS_PLAIN_LOGIN_MODULE = "org.apache.fluss.security.auth.sasl.plain.PlainLoginModule"
JAAS_FILE = "jaas.conf"
LOGIN_FILE = "fluss-login.yaml"  # pyfluss properties of the login, for the watchdog's liveness check (0600)
# Trino with password authentication (prod): its files carry these until a target writes them.
TRINO_USER = "sagaz"  # the one Trino user
TRINO_PASSWORD = "${TRINO_PASSWORD}"  # noqa: S105 - a placeholder
TRINO_PASSWORD_DB = "${TRINO_PASSWORD_DB}"  # noqa: S105 - the password file's line, hashed when written
TRINO_SHARED_SECRET = "${TRINO_SHARED_SECRET}"  # noqa: S105 - a placeholder
TRINO_KEYSTORE = "${TRINO_KEYSTORE_PEM}"
TRINO_CA = "${TRINO_CA_PEM}"  # the certificate alone (not a secret; clients and Prometheus trust it)
TRINO_TLS_NAME = "${TRINO_TLS_NAME}"  # the in-stack name Trino's certificate carries (Prometheus checks it)


# ------------------------------------------------------------------------------------------ when each applies
# What the profile asks for applies wherever the stack runs: native processes on the user's host, containers, pods.
# Only where the secret files live, and which names Trino's certificate carries, depend on the view.

# Inside containers and pods every secret file of an instance is in this folder (compose: a volume of the instance's
# own, filled by the volume-owner task; Kubernetes: the Secret's items for that pod), never in the image's tree.
SECRETS_DIR = "/etc/sagaz-lakehouse/secrets"


def fluss_sasl_on(settings: Settings) -> bool:
    """Whether Fluss servers authenticate clients (SASL/PLAIN on every listener): the profile's choice."""
    return profile(settings.profile).fluss_sasl


def trino_auth_on(settings: Settings) -> bool:
    """Whether Trino takes only password-authenticated clients over HTTPS: the profile's choice."""
    return profile(settings.profile).trino_auth


def flink_jar_upload_on(settings: Settings) -> bool:
    """Whether the Flink cluster takes jar uploads through its REST API (web.submit.enable): the profile's choice."""
    return profile(settings.profile).flink_jar_upload


def trino_names(settings: Settings, view: View) -> tuple[tuple[str, ...], ...]:
    """What Trino's certificate must name, group by group (one name of each group): the address the CLI reaches it at
    (loopback: the local process, a published port, a port-forward) and, inside a container network or cluster, the
    name in-stack clients (Prometheus, the lake maintenance service) reach the trino Service by."""
    host = (LOOPBACK, "localhost")
    return (host,) if view is View.EXTERNAL else (host, (TRINO,))


def trino_certificate_hosts(settings: Settings, view: View) -> tuple[str, ...]:
    """The names a certificate made here carries: those clients need, and in a cluster the Service's full names too
    (for clients of other namespaces)."""
    names = tuple(name for group in trino_names(settings, view) for name in group)
    if view is View.EXTERNAL:
        return names
    return (*names, f"{TRINO}.{settings.namespace}.svc", f"{TRINO}.{settings.namespace}.svc.cluster.local")


def resolve_credentials(settings: Settings, view: View, environ: dict[str, str] | None = None,
                        base_dir: Path | None = None) -> Credentials:
    """The credentials (``config.resolve_credentials``) of a stack whose processes run in ``view``: with the Fluss
    and Trino passwords where the profile authenticates those clients, and the operator's Trino certificate checked
    for the names clients in that view connect to."""
    return config.resolve_credentials(settings, environ, base_dir, fluss_password=fluss_sasl_on(settings),
                                      trino_password=trino_auth_on(settings), trino_names=trino_names(settings, view))


# ------------------------------------------------------------------------------------------- Trino logins (prod)
# Trino's file password authenticator takes PBKDF2 hashes as iterations:salt:hash, lower-case hex, at least 1,000
# iterations, checked with PBKDF2WithHmacSHA1 (trino-password-authenticators EncryptionUtil).
PBKDF2_ITERATIONS = 100_000


def trino_password_line(user: str, password: str, installation_secret: str) -> str:
    """The password file's line. The salt comes from a secret of this installation (the TLS private key), so it
    differs between installations yet stays the same from one `up` to the next: a new salt would change the file,
    and a changed file restarts Trino."""
    import hashlib

    salt = hashlib.sha256(b"sagaz-lakehouse trino password salt\0" + installation_secret.encode()).digest()[:16]
    digest = hashlib.pbkdf2_hmac("sha1", password.encode(), salt, PBKDF2_ITERATIONS, dklen=32)
    return f"{user}:{PBKDF2_ITERATIONS}:{salt.hex()}:{digest.hex()}"


def with_trino_login(endpoints: Endpoints, settings: Settings, credentials: Credentials, ca_file: str) -> Endpoints:
    """``endpoints`` for a client on the host that logs in to Trino where Trino wants it: HTTPS on the loopback port
    the local process binds, compose publishes or Kubernetes port-forwards (``ports.trino_https``)."""
    if not trino_auth_on(settings):
        return endpoints
    login = TrinoLogin(f"https://{LOOPBACK}:{settings.ports.trino_https}", TRINO_USER, credentials.trino_password,
                       ca_file)
    return replace(endpoints, trino_login=login)


# ---------------------------------------------------------------------------------------------- Fluss SASL (prod)
# Fluss reads a JAAS file named by -Djava.security.auth.login.config when no inline JAAS option is set: context
# FlussServer for a server's SASL listeners, FlussClient for every client in the JVM (JaasContext.java,
# v0.9.1-incubating). A file keeps the password off command lines, program arguments and properties that get
# logged; only the JVM flag naming it appears there.


def jaas_file(server: bool) -> str:
    """The JAAS file of a JVM that talks to Fluss (every JVM a client; a Fluss server also checks clients)."""
    sections = [("FlussClient", f'username="{FLUSS_CLIENT_USER}"\n  password="{FLUSS_PASSWORD}"')]
    if server:
        sections.insert(0, ("FlussServer", f'user_{FLUSS_CLIENT_USER}="{FLUSS_PASSWORD}"'))
    return "".join(f"{name} {{\n  {FLUSS_PLAIN_LOGIN_MODULE} required\n  {options};\n}};\n"
                   for name, options in sections)


def jaas_flag(path: str) -> str:
    """The JVM flag naming a JAAS file: only its path reaches a command line."""
    return f"-Djava.security.auth.login.config={path}"


def fluss_client_options() -> dict[str, str]:
    """Fluss's own client options (servers talking to each other, the tiering job, the Flink catalog): SASL, with
    the credentials from the JVM's JAAS file."""
    return {"client.security.protocol": "SASL", "client.security.sasl.mechanism": "PLAIN"}


def with_catalog_login(endpoints: Endpoints, settings: Settings, base_dir: Path | None = None) -> Endpoints:
    """``endpoints`` for a client on the host that logs in to the external catalog where it wants a login."""
    if not settings.catalog_oauth2:
        return endpoints
    from sagaz_lakehouse.addresses import CatalogLogin

    credential = config.catalog_credential(settings, base_dir=base_dir)
    return replace(endpoints, catalog_login=CatalogLogin(settings.catalog.oauth2_server_uri, credential,
                                                         settings.catalog.scope))


def with_fluss_login(endpoints: Endpoints, settings: Settings, credentials: Credentials) -> Endpoints:
    """``endpoints`` for a client on the host that logs in to Fluss where Fluss wants it."""
    return replace(endpoints, fluss_login=pyfluss_properties(settings, credentials))


def pyfluss_properties(settings: Settings, credentials: Credentials) -> dict[str, str]:
    """What a pyfluss ``Config`` needs besides ``bootstrap.servers`` (its keys carry no ``client.`` prefix) to reach
    the stack's Fluss servers."""
    return pyfluss_login(credentials.fluss_password) if fluss_sasl_on(settings) else {}


def pyfluss_login(password: str) -> dict[str, str]:
    return {"security.protocol": "sasl", "security.sasl.mechanism": "PLAIN",
            "security.sasl.username": FLUSS_CLIENT_USER, "security.sasl.password": password}
