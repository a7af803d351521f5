"""Credentials as the stack's processes receive them: one object-store identity per role (what each reaches, the
variables its keys travel in), and the placeholders that rendered files carry instead of secret values.

Credentials appear as ``${S3_ACCESS_KEY}`` / ``${S3_SECRET_KEY}`` placeholders (and the Fluss and Trino ones of
:mod:`sagaz_lakehouse.security`); each target decides how a process receives the real values (a 0600 env file for
compose, a Secret on Kubernetes, 0600 files on local: ``substitute_secrets``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from sagaz_lakehouse import security, tls
from sagaz_lakehouse.addresses import REMOTE_DATA_PREFIX
from sagaz_lakehouse.config import ROOT_ROLE, S3_ROLES, Credentials, Settings
from sagaz_lakehouse.profiles import profile
from sagaz_lakehouse.stack import View

ACCESS_KEY_VAR = "S3_ACCESS_KEY"
SECRET_KEY_VAR = "S3_SECRET_KEY"  # noqa: S105 - a variable name, not a value
ACCESS_KEY = "${" + ACCESS_KEY_VAR + "}"
SECRET_KEY = "${" + SECRET_KEY_VAR + "}"
# The catalog's secrets: an external catalog's OAuth2 client credentials, the bundled catalog's database password.
CATALOG_CREDENTIAL_VAR = "CATALOG_CREDENTIAL"
CATALOG_CREDENTIAL = "${" + CATALOG_CREDENTIAL_VAR + "}"
CATALOG_DB_PASSWORD_VAR = "CATALOG_DB_PASSWORD"  # noqa: S105 - a variable name, not a value
CATALOG_DB_PASSWORD = "${" + CATALOG_DB_PASSWORD_VAR + "}"


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


def s3_identities(settings: Settings) -> bool:
    """Whether each role reaches the object store with its own identity (``s3_grants``): the profile's choice; always
    with an external store, whose keys are each role's own (or one key the user gives every role)."""
    return settings.external_store or profile(settings.profile).s3_identities


def s3_grants(settings: Settings) -> dict[str, tuple[tuple[str, str], ...]]:
    """What each role's identity reaches in the lake bucket: (prefix, "r" or "rw"). The bucket task turns these
    into MinIO policies (tasks.role_policy)."""
    remote, warehouse = REMOTE_DATA_PREFIX, settings.lake.warehouse
    return {
        # Fluss servers: remote log segments and KV snapshots; they read lake metadata. The temporary credentials
        # they hand to clients carry this same grant (Fluss 0.9.1 asks STS for no narrower session policy).
        "fluss": ((remote, "rw"), (warehouse, "r")),
        "lake": ((warehouse, "rw"),),  # the tiering job (Flink), the REST catalog and Trino (maintenance) write them
        "reader": ((warehouse, "r"),),  # the CLI's own clients (doctor, report) read them
    }


def s3_identity(settings: Settings, role: str) -> S3Identity:
    """``role``'s identity where the profile gives each role its own; otherwise everyone shares the root keys."""
    return ROLE_S3[role] if role != ROOT_ROLE and s3_identities(settings) else ROOT_S3


def s3_variables(settings: Settings, credentials: Credentials) -> dict[str, str]:
    """Every S3 credential variable the stack's processes use, with its value: a compose .env, a Kubernetes
    Secret."""
    # An external store has no root user here: only MinIO and the bucket task hold the root keys.
    roles = S3_ROLES if settings.external_store else (ROOT_ROLE, *S3_ROLES)
    identities = {s3_identity(settings, role) for role in roles}
    values: dict[str, str] = {}
    for identity in sorted(identities, key=lambda i: i.access_var):
        values[identity.access_var], values[identity.secret_var] = credentials.s3_keys(identity.role)
    return values


def catalog_variables(settings: Settings, credentials: Credentials) -> dict[str, str]:
    """The catalog's secret variables the stack's processes use, with their values (where the settings use them)."""
    values = {}
    if settings.catalog_oauth2:
        values[CATALOG_CREDENTIAL_VAR] = credentials.catalog_credential
    return values  # the catalog database's password reaches its two readers as secret files (catalog_db, catalog)


def secret_variables(settings: Settings, credentials: Credentials) -> dict[str, str]:
    """Every credential variable the stack's processes read, with its value: a compose .env, a Kubernetes Secret."""
    return {**s3_variables(settings, credentials), **catalog_variables(settings, credentials)}


def secret_variable_names() -> tuple[str, ...]:
    """Every variable a credential can arrive in, whatever the settings."""
    return (*s3_variable_names(), CATALOG_CREDENTIAL_VAR, CATALOG_DB_PASSWORD_VAR)


def catalog_credential_environment(settings: Settings) -> dict[str, str]:
    """The catalog credential's variable, for a process that logs in to an external catalog (none where it takes no
    login): Trino expands ``${ENV:CATALOG_CREDENTIAL}``, Fluss's entrypoint runs envsubst, lake maintenance reads it."""
    return {CATALOG_CREDENTIAL_VAR: CATALOG_CREDENTIAL} if settings.catalog_oauth2 else {}


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


def aws_environment(settings: Settings, role: str) -> dict[str, str]:
    """``role``'s keys for the AWS SDK's default chain, for processes that must not carry them in arguments."""
    identity = s3_identity(settings, role)
    return {"AWS_ACCESS_KEY_ID": identity.access_key, "AWS_SECRET_ACCESS_KEY": identity.secret_key,
            "AWS_REGION": settings.s3_region}


def credential_environment(settings: Settings, role: str) -> dict[str, str]:
    """``role``'s two credential variables themselves, for programs that expand ``${S3_...}`` placeholders on
    their own (Fluss's entrypoint runs envsubst over server.yaml, Trino reads ``${ENV:...}``)."""
    identity = s3_identity(settings, role)
    return {identity.access_var: identity.access_key, identity.secret_var: identity.secret_key}


# ------------------------------------------------------------------------------------------ placeholders

CREDENTIALS_DIGEST_ROUNDS = 200_000


def values_digest(settings: Settings, values: list[str]) -> str:
    """16 hex digits of PBKDF2-SHA256 over secret values (what one process reads), salted with project and namespace:
    it changes whenever one of them does, so a target can restart exactly the processes that read a changed one, and
    it is slow to test guesses against (the files it goes into are not secret)."""
    return _digest(f"sagaz-lakehouse/{settings.project}/{settings.namespace}", tuple(values))


@functools.lru_cache(maxsize=256)
def _digest(salt: str, values: tuple[str, ...]) -> str:
    import hashlib

    return hashlib.pbkdf2_hmac("sha256", "\n".join(values).encode(), salt.encode(),
                               CREDENTIALS_DIGEST_ROUNDS).hex()[:16]


def substitute_secrets(text: str, credentials: Credentials) -> str:
    """For files and environments that must carry the values themselves (local target; written with mode 0600)."""
    for placeholder, value in _secret_values(credentials, text).items():
        text = text.replace(placeholder, value)
    return text


# MinIO's metrics endpoints take a bearer JWT (MINIO_PROMETHEUS_AUTH_TYPE jwt, its default): HS512 over the claims
# with the secret key of the access key the claims name ("accessKey" or "sub"), issuer "prometheus" (minio
# cmd/metrics.go AuthMiddleware, internal/jwt/parser.go ParseWithClaims; what `mc admin prometheus generate` makes).
MINIO_METRICS_TOKEN = "${MINIO_METRICS_TOKEN}"  # noqa: S105 - a placeholder
METRICS_TOKEN_EXPIRY = 4102444800  # 2100-01-01: fixed, so the token (and Prometheus) stays the same across `up`s


def minio_metrics_token(access_key: str, secret_key: str) -> str:
    """The bearer token Prometheus scrapes MinIO's metrics with: it reaches the metrics endpoints only (MinIO checks
    it there alone) and, an HMAC, does not reveal the key it is signed with."""
    import base64
    import hashlib
    import hmac
    import json

    def encoded(data: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).rstrip(b"=").decode()

    head = encoded({"alg": "HS512", "typ": "JWT"}) + "." + encoded(
        {"exp": METRICS_TOKEN_EXPIRY, "sub": access_key, "iss": "prometheus"})
    signature = hmac.new(secret_key.encode(), head.encode(), hashlib.sha512).digest()
    return head + "." + base64.urlsafe_b64encode(signature).rstrip(b"=").decode()


def substitute_public(text: str, settings: Settings, credentials: Credentials) -> str:
    """For files that carry no secret but something made beside the credentials: Trino's certificate (what clients
    and Prometheus trust) and the in-stack name it carries. Rendered placeholders (``render --placeholders``) stay
    as they are."""
    if credentials.placeholder or not credentials.trino_keystore:
        return text
    if security.TRINO_CA in text:
        text = text.replace(security.TRINO_CA, tls.certificate_part(credentials.trino_keystore))
    if security.TRINO_TLS_NAME in text:
        names = security.trino_names(settings, View.INTERNAL)[-1]
        text = text.replace(security.TRINO_TLS_NAME, tls.first_name(credentials.trino_keystore, names) or names[0])
    return text


def _secret_values(credentials: Credentials, text: str) -> dict[str, str]:
    values = {placeholder: value for identity in (ROOT_S3, *ROLE_S3.values())
              for placeholder, value in zip((identity.access_key, identity.secret_key),
                                            credentials.s3_keys(identity.role), strict=True)}
    values |= {security.FLUSS_PASSWORD: credentials.fluss_password,
               security.TRINO_PASSWORD: credentials.trino_password,
               security.TRINO_SHARED_SECRET: credentials.trino_shared_secret(),
               security.TRINO_KEYSTORE: credentials.trino_keystore,
               CATALOG_CREDENTIAL: credentials.catalog_credential}
    if CATALOG_DB_PASSWORD in text:
        values[CATALOG_DB_PASSWORD] = credentials.catalog_db_password()
    if security.TRINO_CA in text:
        values[security.TRINO_CA] = tls.certificate_part(credentials.trino_keystore)
    if MINIO_METRICS_TOKEN in text:
        values[MINIO_METRICS_TOKEN] = ("REPLACE_WITH_MINIO_METRICS_TOKEN" if credentials.placeholder
                                       else minio_metrics_token(credentials.access_key, credentials.secret_key))
    if security.TRINO_PASSWORD_DB in text:
        values[security.TRINO_PASSWORD_DB] = security.trino_password_line(
            security.TRINO_USER, credentials.trino_password, credentials.trino_keystore)
    return values


SECRET_PLACEHOLDERS = (ACCESS_KEY, SECRET_KEY, *(key for i in ROLE_S3.values() for key in (i.access_key, i.secret_key)),
                       security.FLUSS_PASSWORD, security.TRINO_PASSWORD, security.TRINO_PASSWORD_DB,
                       security.TRINO_SHARED_SECRET, security.TRINO_KEYSTORE, MINIO_METRICS_TOKEN, CATALOG_CREDENTIAL,
                       CATALOG_DB_PASSWORD)


def holds_secret(text: str) -> bool:
    return any(placeholder in text for placeholder in SECRET_PLACEHOLDERS)
