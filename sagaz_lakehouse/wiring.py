"""How the components reach each other: addresses, the bucket and warehouse, credentials, and the property sets
that several components share (the Iceberg catalog that Fluss, the tiering job, Trino and the REST catalog all
point at).

Every function takes the :class:`~sagaz_lakehouse.stack.View` of the process being configured, never the target:
a process inside a container network sees service names, a process on the host (the local target, or a client such
as ``doctor``) sees loopback. Credentials appear as ``${S3_ACCESS_KEY}`` / ``${S3_SECRET_KEY}`` placeholders; each
target decides how a process receives the real values (a 0600 env file for compose, a Secret on Kubernetes, 0600
files on local). Property names come from upstream: apache/fluss ``website/docs/quickstart/lakehouse.md`` and
``ConfigOptions.java``, Iceberg ``AwsProperties``/``S3FileIOProperties``, Trino
``docs/src/main/sphinx/object-storage/file-system-s3.md`` and ``connector/iceberg.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from sagaz_lakehouse import config, tls
from sagaz_lakehouse import stack as s
from sagaz_lakehouse.config import ROOT_ROLE, S3_ROLES, Credentials, Settings, s3_identities
from sagaz_lakehouse.stack import View

ACCESS_KEY_VAR = "S3_ACCESS_KEY"
SECRET_KEY_VAR = "S3_SECRET_KEY"  # noqa: S105 - a variable name, not a value
ACCESS_KEY = "${" + ACCESS_KEY_VAR + "}"
SECRET_KEY = "${" + SECRET_KEY_VAR + "}"
REMOTE_DATA_PREFIX = "fluss-remote"  # Fluss's remote.data.dir inside the lake bucket
FLUSS_PASSWORD_VAR = "FLUSS_CLIENT_PASSWORD"  # noqa: S105 - a variable name, not a value
FLUSS_PASSWORD = "${" + FLUSS_PASSWORD_VAR + "}"
FLUSS_CLIENT_USER = "sagaz"  # the one SASL user: servers between themselves, the tiering job, every client
# The login module of Fluss's SASL/PLAIN (fluss-common security/auth/sasl/plain, v0.9.1-incubating).
FLUSS_PLAIN_LOGIN_MODULE = "org.apache.fluss.security.auth.sasl.plain.PlainLoginModule"
JAAS_FILE = "jaas.conf"
# Trino with password authentication (prod, local target): its files carry these until the local target writes them.
TRINO_USER = "sagaz"  # the one Trino user
TRINO_PASSWORD = "${TRINO_PASSWORD}"  # noqa: S105 - a placeholder
TRINO_PASSWORD_DB = "${TRINO_PASSWORD_DB}"  # noqa: S105 - the password file's line, hashed when written
TRINO_SHARED_SECRET = "${TRINO_SHARED_SECRET}"  # noqa: S105 - a placeholder
TRINO_KEYSTORE = "${TRINO_KEYSTORE_PEM}"
TRINO_CA = "${TRINO_CA_PEM}"  # the certificate alone (not a secret; clients and Prometheus trust it)
LOOPBACK = "127.0.0.1"
ANY_ADDRESS = "0.0.0.0"  # noqa: S104 - a container listener that port-forwards and published ports reach

# Ports inside containers: fixed, so in-network wiring never depends on the host's port choices.
FLUSS_CLIENT_PORT = config.FLUSS_CLIENT_PORT  # CLIENT listener (INTERNAL: ports.fluss_internal)
FLUSS_METRICS_PORT = config.FLUSS_METRICS_PORT  # the Fluss Prometheus reporter, in every container
TASKMANAGER_RPC_PORT = 6122  # fixed in containers (the image's default range would be random)
FLINK_BLOB_PORT = 6124  # fixed by the Flink image's entrypoint
FLINK_METRICS_PORT = 9249  # the Flink Prometheus reporter's default port, in every container
# Fluss's `client.connect-timeout` (ConfigOptions CLIENT_CONNECT_TIMEOUT: 120 s by default, v0.9.1-incubating). A
# replaced pod or container comes back at a new address; a connect to the old one, still in the JVM's DNS cache,
# gets no answer and holds its caller until this timeout. The tiering job's enumerator sends its coordinator
# heartbeat on its only thread: with the default, tiering stopped for over a minute after a pod replacement.
FLUSS_CONNECT_TIMEOUT = "10s"


@dataclass(frozen=True)
class Endpoints:
    """Addresses of every service as seen from one place (inside the stack, or the user's host)."""

    zookeeper: str
    fluss_bootstrap: str
    s3: str
    rest_catalog: str
    flink_rest: str
    trino: str
    flink_sql_gateway: str
    prometheus: str = ""
    # pyfluss properties that log in to Fluss (SASL), besides bootstrap.servers; holds a password: never printed.
    fluss_login: Mapping[str, str] = field(default_factory=dict, repr=False)
    # Where Trino wants a login (HTTPS, a password); None: plain HTTP, any user name. Holds a password.
    trino_login: TrinoLogin | None = field(default=None, repr=False)


@dataclass(frozen=True)
class TrinoLogin:
    url: str  # https://127.0.0.1:<ports.trino_https>
    user: str
    password: str = field(repr=False)
    ca_file: str  # the certificate to verify the server with (tls.ensure)


def endpoints(settings: Settings, view: View) -> Endpoints:
    p = settings.ports
    if view is View.EXTERNAL:
        host = LOOPBACK  # local binds loopback; compose publishes there; kubernetes port-forwards there
        return Endpoints(f"{host}:{p.zookeeper}", f"{host}:{p.fluss_coordinator}", f"http://{host}:{p.minio}",
                         f"http://{host}:{p.rest_catalog}", f"http://{host}:{p.flink_rest}",
                         f"http://{host}:{p.trino}", f"http://{host}:{p.flink_sql_gateway}",
                         f"http://{host}:{p.prometheus}")
    return Endpoints(f"{s.ZOOKEEPER}:{p.zookeeper}", f"{s.COORDINATOR}:{p.fluss_internal}",
                     f"http://{s.MINIO}:{p.minio}", f"http://{s.REST_CATALOG}:{p.rest_catalog}",
                     f"http://{s.JOBMANAGER}:{p.flink_rest}", f"http://{s.TRINO}:{p.trino}",
                     f"http://{s.FLINK_SQL_GATEWAY}:{p.flink_sql_gateway}", f"http://{s.PROMETHEUS}:{p.prometheus}")


def warehouse_uri(settings: Settings) -> str:
    return f"s3://{settings.lake.bucket}/{settings.lake.warehouse}"


def remote_data_uri(settings: Settings) -> str:
    return f"s3://{settings.lake.bucket}/{REMOTE_DATA_PREFIX}"


# ---------------------------------------------------------------------------------- object-store identities


@dataclass(frozen=True)
class S3Identity:
    """The placeholders of one object-store identity's keys; each target fills in the values (``s3_variables``)."""

    role: str
    access_var: str
    secret_var: str

    @property
    def access_key(self) -> str:
        return "${" + self.access_var + "}"

    @property
    def secret_key(self) -> str:
        return "${" + self.secret_var + "}"


ROOT_S3 = S3Identity(ROOT_ROLE, ACCESS_KEY_VAR, SECRET_KEY_VAR)
ROLE_S3 = {role: S3Identity(role, f"S3_{role.upper()}_ACCESS_KEY", f"S3_{role.upper()}_SECRET_KEY")
           for role in S3_ROLES}


def s3_grants(settings: Settings) -> dict[str, tuple[tuple[str, str], ...]]:
    """What each role's identity reaches in the lake bucket: (prefix, "r" or "rw"). The bucket task turns these
    into MinIO policies (tasks.role_policy)."""
    remote, warehouse = REMOTE_DATA_PREFIX, settings.lake.warehouse
    return {
        # Fluss servers: remote log segments and KV snapshots; they read lake metadata. The temporary credentials
        # they hand to clients carry this same grant (Fluss 0.9.1 asks STS for no narrower session policy).
        "fluss": ((remote, "rw"), (warehouse, "r")),
        "lake": ((warehouse, "rw"),),  # the tiering job (Flink) and the REST catalog write the Iceberg tables
        "reader": ((warehouse, "r"),),  # Trino and the CLI's clients (doctor, report) read them
    }


def s3_identity(settings: Settings, role: str) -> S3Identity:
    """``role``'s identity where the profile gives each role its own; otherwise everyone shares the root keys."""
    return ROLE_S3[role] if role != ROOT_ROLE and s3_identities(settings) else ROOT_S3


def s3_variables(settings: Settings, credentials: Credentials) -> dict[str, str]:
    """Every S3 credential variable the stack's processes use, with its value: a compose .env, a Kubernetes
    Secret."""
    identities = {s3_identity(settings, role) for role in (ROOT_ROLE, *S3_ROLES)}
    values: dict[str, str] = {}
    for identity in sorted(identities, key=lambda i: i.access_var):
        values[identity.access_var], values[identity.secret_var] = credentials.s3_keys(identity.role)
    return values


def client_s3_keys(settings: Settings, credentials: Credentials) -> tuple[str, str]:
    """The keys the CLI's own clients (doctor, report) read the lake with: the reader's where roles have their own."""
    return credentials.s3_keys(s3_identity(settings, "reader").role)


def s3_variable_names() -> tuple[str, ...]:
    """Every variable an S3 key can arrive in, whatever the profile."""
    return tuple(var for i in (ROOT_S3, *ROLE_S3.values()) for var in (i.access_var, i.secret_var))


def create_bucket_grants(settings: Settings) -> list[str]:
    """The bucket task's ``--grant`` arguments: none where the roles share the root keys."""
    if not s3_identities(settings):
        return []
    return [f"--grant={role}={prefix}:{mode}" for role, grants in s3_grants(settings).items()
            for prefix, mode in grants]


def iceberg_catalog_properties(settings: Settings, view: View, role: str = "") -> dict[str, str]:
    """Iceberg catalog properties shared by the Fluss servers and the tiering job (``datalake.iceberg.*``).

    Without a ``role``, no credentials: S3FileIO falls back to the AWS default chain (``aws_environment``), used
    wherever the properties could end up in a log or a process listing (tiering-job arguments, the REST fixture,
    which logs every catalog property at start-up).
    """
    ep = endpoints(settings, view)
    props = {
        "type": "rest",
        "uri": ep.rest_catalog,
        "warehouse": warehouse_uri(settings),
        # The default ResolvingFileIO needs Hadoop classes the Fluss plugin lacks; S3FileIO does not.
        "io-impl": "org.apache.iceberg.aws.s3.S3FileIO",
        "s3.endpoint": ep.s3,
        "s3.path-style-access": "true",
        "client.region": settings.lake.region,
    }
    if role:
        identity = s3_identity(settings, role)
        props["s3.access-key-id"] = identity.access_key
        props["s3.secret-access-key"] = identity.secret_key
    return props


def aws_environment(settings: Settings, role: str) -> dict[str, str]:
    """``role``'s keys for the AWS SDK's default chain, for processes that must not carry them in arguments."""
    identity = s3_identity(settings, role)
    return {"AWS_ACCESS_KEY_ID": identity.access_key, "AWS_SECRET_ACCESS_KEY": identity.secret_key,
            "AWS_REGION": settings.lake.region}


def tiering_job_arguments(settings: Settings, view: View) -> list[str]:
    """Program arguments of FlussLakeTieringEntrypoint: the same ``datalake.*`` options as the servers.

    Credentials are not among them: the TaskManagers get ``aws_environment`` instead."""
    args = ["--fluss.bootstrap.servers", endpoints(settings, view).fluss_bootstrap,
            # TieringSourceOptions (fluss-flink-common): read from the "fluss." arguments by FlussLakeTiering.
            "--fluss.tiering.poll.table.interval", settings.tiering_poll,
            "--fluss.client.connect-timeout", FLUSS_CONNECT_TIMEOUT,
            "--datalake.format", "iceberg"]
    if fluss_sasl_on(settings, view):  # FlussLakeTiering hands every --fluss.<key> to its Fluss connections
        args += [arg for key, value in fluss_client_options().items() for arg in (f"--fluss.{key}", value)]
    for key, value in iceberg_catalog_properties(settings, view).items():
        args += [f"--datalake.iceberg.{key}", value]
    return args


def trino_iceberg_catalog(settings: Settings, view: View) -> dict[str, str]:
    """Trino's iceberg catalog. Credentials are ``${ENV:S3_...}``, which Trino expands from its own environment
    (``credential_environment``)."""
    ep = endpoints(settings, view)
    reader = s3_identity(settings, "reader")
    return {
        "connector.name": "iceberg",
        "iceberg.catalog.type": "rest",
        "iceberg.rest-catalog.uri": ep.rest_catalog,
        "iceberg.rest-catalog.warehouse": warehouse_uri(settings),
        "fs.native-s3.enabled": "true",
        "s3.endpoint": ep.s3,
        "s3.region": settings.lake.region,
        "s3.path-style-access": "true",
        "s3.aws-access-key": "${ENV:" + reader.access_var + "}",
        "s3.aws-secret-key": "${ENV:" + reader.secret_var + "}",
    }


def credential_environment(settings: Settings, role: str) -> dict[str, str]:
    """``role``'s two credential variables themselves, for programs that expand ``${S3_...}`` placeholders on
    their own (Fluss's entrypoint runs envsubst over server.yaml, Trino reads ``${ENV:...}``)."""
    identity = s3_identity(settings, role)
    return {identity.access_var: identity.access_key, identity.secret_var: identity.secret_key}


def substitute_secrets(text: str, credentials: Credentials) -> str:
    """For files and environments that must carry the values themselves (local target; written with mode 0600)."""
    for placeholder, value in _secret_values(credentials, text).items():
        text = text.replace(placeholder, value)
    return text


def _secret_values(credentials: Credentials, text: str) -> dict[str, str]:
    values = {placeholder: value for identity in (ROOT_S3, *ROLE_S3.values())
              for placeholder, value in zip((identity.access_key, identity.secret_key),
                                            credentials.s3_keys(identity.role), strict=True)}
    values |= {FLUSS_PASSWORD: credentials.fluss_password, TRINO_PASSWORD: credentials.trino_password,
               TRINO_SHARED_SECRET: credentials.trino_shared_secret(), TRINO_KEYSTORE: credentials.trino_keystore}
    if TRINO_CA in text:
        values[TRINO_CA] = tls.certificate_part(credentials.trino_keystore)
    if TRINO_PASSWORD_DB in text:
        values[TRINO_PASSWORD_DB] = trino_password_line(TRINO_USER, credentials.trino_password,
                                                        credentials.trino_keystore)
    return values


SECRET_PLACEHOLDERS = (ACCESS_KEY, SECRET_KEY, *(key for i in ROLE_S3.values() for key in (i.access_key, i.secret_key)),
                       FLUSS_PASSWORD, TRINO_PASSWORD, TRINO_PASSWORD_DB, TRINO_SHARED_SECRET,
                       TRINO_KEYSTORE)


def holds_secret(text: str) -> bool:
    return any(placeholder in text for placeholder in SECRET_PLACEHOLDERS)


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


def trino_auth_on(settings: Settings, view: View) -> bool:
    """HTTPS and passwords for a native Trino (local target) whose profile wants them; see config.trino_auth."""
    from sagaz_lakehouse.config import trino_auth

    return view is View.EXTERNAL and trino_auth(settings)


def flink_jar_upload_on(settings: Settings, view: View) -> bool:
    """Whether a Flink cluster seen from ``view`` takes jar uploads; see config.flink_jar_upload."""
    from sagaz_lakehouse.config import flink_jar_upload

    return view is not View.EXTERNAL or flink_jar_upload(settings)


def with_trino_login(endpoints: Endpoints, settings: Settings, credentials: Credentials, ca_file: str) -> Endpoints:
    """``endpoints`` for a client on the host that logs in to Trino where Trino wants it."""
    if not trino_auth_on(settings, View.EXTERNAL):
        return endpoints
    login = TrinoLogin(f"https://{LOOPBACK}:{settings.ports.trino_https}", TRINO_USER, credentials.trino_password,
                       ca_file)
    return replace(endpoints, trino_login=login)


# ------------------------------------------------------------------------------- Fluss SASL (prod, local target)
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


def fluss_sasl_on(settings: Settings, view: View) -> bool:
    """SASL for a native process (local target) whose profile wants it; see config.fluss_sasl."""
    from sagaz_lakehouse.config import fluss_sasl

    return view is View.EXTERNAL and fluss_sasl(settings)


def jaas_flag(conf_dir: str) -> str:
    return f"-Djava.security.auth.login.config={conf_dir}/{JAAS_FILE}"


def fluss_client_options() -> dict[str, str]:
    """Fluss's own client options (servers talking to each other, the tiering job, the Flink catalog): SASL, with
    the credentials from the JVM's JAAS file."""
    return {"client.security.protocol": "SASL", "client.security.sasl.mechanism": "PLAIN"}


def with_fluss_login(endpoints: Endpoints, settings: Settings, credentials: Credentials) -> Endpoints:
    """``endpoints`` for a client on the host that logs in to Fluss where Fluss wants it."""
    return replace(endpoints, fluss_login=pyfluss_properties(settings, credentials))


def pyfluss_properties(settings: Settings, credentials: Credentials) -> dict[str, str]:
    """What a pyfluss ``Config`` needs besides ``bootstrap.servers`` (its keys carry no ``client.`` prefix)."""
    return pyfluss_login(credentials.fluss_password) if fluss_sasl_on(settings, View.EXTERNAL) else {}


def pyfluss_login(password: str) -> dict[str, str]:
    return {"security.protocol": "sasl", "security.sasl.mechanism": "PLAIN",
            "security.sasl.username": FLUSS_CLIENT_USER, "security.sasl.password": password}


LOGIN_FILE = "fluss-login.yaml"  # pyfluss properties of the login, for the watchdog's liveness check (0600)


def instance_endpoint(component: s.Component, name: str) -> str:
    """Where the user reaches an instance from the host, for `status` (its first published port)."""
    ports = [p for p in component.ports if p.published and p.host]
    if not ports:
        return ""
    port = ports[0].host_port(s.instance_index(name))
    scheme = "http://" if component.health is not None and component.health.kind == "http" else ""
    return f"{scheme}{LOOPBACK}:{port}"
