"""object_store.kind external: the settings, each role's keys, what every target renders (no object store, no bucket
task, every client on the user's endpoint), and the words of `up`'s probe refusals. The probe against a real store,
and `up` refusing before anything starts, are tests/local/stacks/test_external_store_on_stack.py."""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path

import pytest
import yaml

import sagaz_lakehouse as lakehouse
from sagaz_lakehouse import addresses, config, identities, store_probe
from sagaz_lakehouse import stack as s
from sagaz_lakehouse.components import fluss
from sagaz_lakehouse.config import ConfigError
from sagaz_lakehouse.errors import Problem
from sagaz_lakehouse.targets.base import render
from sagaz_lakehouse.targets.local import layout as local

ENDPOINT = "https://store.example.net:9443"
EXTERNAL = {"object_store.kind": "external", "object_store.endpoint": ENDPOINT, "object_store.region": "eu-west-3"}
ROLE_KEYS = {f"s3_{role}_{kind}_key": f"{role}-{kind}-value-7Qx" for role in config.S3_ROLES
             for kind in ("access", "secret")}


def settings(**overrides: str) -> config.Settings:
    return lakehouse.load_settings(None, overrides, environ={})


def secrets_file(tmp_path: Path, values: dict[str, str], mode: int = 0o600) -> str:
    path = tmp_path / "secrets.yaml"
    path.write_text(yaml.safe_dump(values))
    os.chmod(path, mode)
    return str(path)


def external_credentials(tmp_path: Path, values: dict[str, str] | None = None, **overrides: str) -> config.Credentials:
    st = settings(**EXTERNAL, **{"secrets.file": secrets_file(tmp_path, values or ROLE_KEYS)}, **overrides)
    return lakehouse.resolve_credentials(st, environ={})


# ------------------------------------------------------------------------------------------------- settings


def test_bundled_by_default_and_bad_values_name_their_field():
    st = settings()
    assert (st.object_store.kind, st.external_store, st.s3_region, st.s3_path_style) == ("bundled", False,
                                                                                         "us-east-1", True)
    with pytest.raises(ConfigError) as excinfo:
        settings(**{"object_store.kind": "externel", "object_store.endpoint": "store:9000",
                    "object_store.path_style": "yes"})
    text = str(excinfo.value)
    assert excinfo.value.exit_code == 2
    assert "object_store.kind" in text and "did you mean 'external'" in text
    assert "object_store.endpoint" in text and "object_store.path_style" in text


def test_region_and_path_style_follow_the_store():
    st = settings(**EXTERNAL)
    assert (st.s3_region, st.s3_path_style, addresses.external_s3(st)) == ("eu-west-3", True, ENDPOINT)
    aws = settings(**{"object_store.kind": "external", "lake.region": "ap-south-1"})
    assert (aws.s3_region, aws.s3_path_style) == ("ap-south-1", False)  # AWS S3: virtual-hosted addressing
    assert addresses.external_s3(aws) == "https://s3.ap-south-1.amazonaws.com" and addresses.on_aws(aws)
    assert settings(**EXTERNAL, **{"object_store.path_style": "false"}).s3_path_style is False


# ---------------------------------------------------------------------------------------------- credentials


def test_each_role_gets_its_own_keys_from_the_secrets_file(tmp_path):
    creds = external_credentials(tmp_path)
    for role in config.S3_ROLES:
        assert creds.s3_keys(role) == (f"{role}-access-value-7Qx", f"{role}-secret-value-7Qx")
    assert config.shared_key_roles(creds) == []
    assert "secret-value" not in repr(creds)
    assert set(creds.secret_values()) >= {f"{role}-secret-value-7Qx" for role in config.S3_ROLES}
    # without a root secret the catalog database's password comes from the roles' secrets, not from nothing
    empty_key = hmac.new(b"", b"sagaz-lakehouse catalog database", hashlib.sha256).hexdigest()[:40]
    assert creds.secret_key == "" and creds.catalog_db_password() not in ("", empty_key)
    assert creds.catalog_db_password() in creds.secret_values()


def test_the_environment_wins_and_roles_without_keys_take_the_shared_one(tmp_path):
    st = settings(**EXTERNAL, **{"profile": "prod"})
    env = {"SAGAZ_LAKEHOUSE_S3_ACCESS_KEY": "shared-key", "SAGAZ_LAKEHOUSE_S3_SECRET_KEY": "shared-secret-1",
           "SAGAZ_LAKEHOUSE_S3_READER_ACCESS_KEY": "reader-key", "SAGAZ_LAKEHOUSE_S3_READER_SECRET_KEY": "rs-1234567",
           "SAGAZ_LAKEHOUSE_FLUSS_PASSWORD": "fluss-pw-1", "SAGAZ_LAKEHOUSE_TRINO_PASSWORD": "trino-pw-1"}
    creds = lakehouse.resolve_credentials(st, environ=env)
    assert creds.s3_keys("reader") == ("reader-key", "rs-1234567")
    assert creds.s3_keys("fluss") == creds.s3_keys("lake") == ("shared-key", "shared-secret-1")
    assert config.shared_key_roles(creds) == ["fluss", "lake"]
    warning = store_probe.shared_key_warning(st, creds)
    assert "roles fluss, lake share one object-store key" in warning and "shared-secret" not in warning
    assert store_probe.shared_key_warning(settings(**EXTERNAL), creds) == ""  # dev: no warning


def test_missing_or_half_keys_are_refused_naming_the_role(tmp_path):
    values = {k: v for k, v in ROLE_KEYS.items() if not k.startswith("s3_lake_")}
    values.pop("s3_reader_secret_key")
    with pytest.raises(ConfigError) as excinfo:
        external_credentials(tmp_path, values)
    text = str(excinfo.value)
    assert excinfo.value.exit_code == 2
    assert "no keys for the lake role" in text and "SAGAZ_LAKEHOUSE_S3_LAKE_ACCESS_KEY" in text
    assert "the reader role's keys" in text and "incomplete" in text
    # dev's fixed credentials are never sent to a store the user runs
    with pytest.raises(ConfigError, match="no keys for the fluss role"):
        lakehouse.resolve_credentials(settings(**EXTERNAL), environ={})


def test_a_readable_secrets_file_is_refused(tmp_path):
    st = settings(**EXTERNAL, **{"secrets.file": secrets_file(tmp_path, ROLE_KEYS, 0o644)})
    with pytest.raises(ConfigError, match="chmod 600"):
        lakehouse.resolve_credentials(st, environ={})


# --------------------------------------------------------------------------------------------------- renders


def rendered_text(files) -> str:
    return "\n".join(f.content for f in files if not f.secret)


@pytest.mark.parametrize("target", ["compose", "kubernetes"])
def test_container_targets_render_no_object_store_and_the_users_endpoint(tmp_path, target):
    st = settings(**EXTERNAL, target=target)
    creds = external_credentials(tmp_path, target=target)
    files = render(st, creds, target)
    text = rendered_text(files)
    assert s.MINIO not in {c.name for c in lakehouse.target_of(st).stack(st).components}
    if target == "compose":
        names = set(yaml.safe_load(next(f.content for f in files if f.path == "compose.yaml"))["services"])
    else:
        objects = [o for f in files if f.path.endswith(".yaml") for o in yaml.safe_load_all(f.content) if o]
        names = {o["metadata"]["name"] for o in objects if "metadata" in o}
        assert not any(s.MINIO in f.path for f in files)
    assert not any(name.startswith((s.MINIO, s.CREATE_BUCKET)) for name in names), names
    assert any(name.startswith(s.REST_CATALOG) for name in names), names
    assert f"http://{s.MINIO}:" not in text and f"{s.MINIO}:9000" not in text and ENDPOINT in text
    for value in (f"{role}-secret-value-7Qx" for role in config.S3_ROLES):
        assert value not in text  # secrets only in the .env / the Secret
    secret = "\n".join(f.content for f in files if f.secret)
    assert "reader-secret-value-7Qx" in secret and "S3_ACCESS_KEY=" not in secret  # no root identity at all
    assert "S3_ACCESS_KEY:" not in secret


def test_local_target_renders_no_object_store_and_every_client_gets_endpoint_region_and_path_style(tmp_path):
    st = settings(**EXTERNAL, **{"object_store.path_style": "false"})
    creds = external_credentials(tmp_path, **{"object_store.path_style": "false"})
    stack = local.local_stack(st)
    assert {c.name for c in stack.components}.isdisjoint({s.MINIO, s.CREATE_BUCKET})
    catalog_deps = stack.get(s.REST_CATALOG).depends_on
    assert catalog_deps == ()
    files = {f.path: f.content for f in local.files(st, creds, local.default_layout(st, tmp_path))}
    assert not any("minio" in path or s.CREATE_BUCKET in path for path in files)
    server = yaml.safe_load(files["config/fluss-coordinator/server.yaml"])
    assert (server["s3.endpoint"], server["s3.region"], server["s3.path-style-access"]) == (ENDPOINT, "eu-west-3",
                                                                                          False)
    assert server["s3.access-key"] == "fluss-access-value-7Qx"  # the 0600 file carries the fluss role's own key
    assert server["s3.assumed.role.sts.endpoint"] == ENDPOINT and server["s3.endpoint.region"] == "eu-west-3"
    assert (server["datalake.iceberg.s3.endpoint"], server["datalake.iceberg.client.region"],
            server["datalake.iceberg.s3.path-style-access"]) == (ENDPOINT, "eu-west-3", False)
    assert server["datalake.iceberg.s3.access-key-id"] == "fluss-access-value-7Qx"
    trino = dict(line.split("=", 1) for line in files["config/trino/catalog/iceberg.properties"].splitlines()
                 if "=" in line and not line.startswith("#"))
    assert (trino["s3.endpoint"], trino["s3.region"], trino["s3.path-style-access"]) == (ENDPOINT, "eu-west-3",
                                                                                       "false")
    prometheus = yaml.safe_load(files["config/prometheus/prometheus.yml"])
    assert "minio" not in {job["job_name"] for job in prometheus["scrape_configs"]}


def test_fluss_asks_aws_sts_for_tokens_and_a_store_of_your_own_at_its_endpoint():
    own = fluss.token_properties(settings(**EXTERNAL), ENDPOINT)
    assert own == {"s3.assumed.role.arn": fluss.ASSUMED_ROLE_ARN, "s3.assumed.role.sts.endpoint": ENDPOINT}
    aws = settings(**{"object_store.kind": "external"})
    assert fluss.token_properties(aws, addresses.external_s3(aws)) == {}  # GetSessionToken with the fluss keys
    arn = "arn:aws:iam::123456789012:role/fluss-tokens"
    with_role = settings(**{"object_store.kind": "external", "object_store.sts_role_arn": arn})
    assert fluss.token_properties(with_role, "") == {"s3.assumed.role.arn": arn}  # the regional AWS STS endpoint
    assert fluss.token_properties(settings(), "http://minio:9000")["s3.assumed.role.arn"] == fluss.ASSUMED_ROLE_ARN


def test_the_bundled_store_renders_as_before():
    st = settings()
    names = [c.name for c in lakehouse.build_stack(st, s.View.INTERNAL).components]
    assert names[:3] == [s.ZOOKEEPER, s.MINIO, s.CREATE_BUCKET]
    assert identities.s3_identity(st, "lake") == identities.ROOT_S3


# ----------------------------------------------------------------------------------------- probe messages
# The bodies are S3's error documents as AWS and MinIO send them (docs.aws.amazon.com/AmazonS3/latest/API/
# ErrorResponses.html); the same refusals from a real store are in tests/local/stacks/test_external_store_on_stack.py.


def error(code: str, message: str = "") -> bytes:
    return f"<?xml version=\"1.0\"?><Error><Code>{code}</Code><Message>{message}</Message></Error>".encode()


def test_refusals_name_the_role_and_the_missing_permission():
    denied = store_probe.refusal("lake", "put", "s3://lake/warehouse/*", store_probe.s3_error(
        403, error("AccessDenied", "Access Denied.")))
    assert denied.field == "object store, role lake"
    assert denied.message == "lacks s3:PutObject on s3://lake/warehouse/* (AccessDenied: Access Denied.)"
    assert "grant the lake identity s3:PutObject" in denied.hint
    wrong = store_probe.refusal("reader", "list", "bucket lake", store_probe.s3_error(
        403, error("SignatureDoesNotMatch")))
    assert wrong.message.startswith("its secret key is wrong") and "s3_reader_secret_key" in wrong.hint
    unknown = store_probe.refusal("fluss", "list", "bucket lake", store_probe.s3_error(
        403, error("InvalidAccessKeyId")))
    assert "does not know its access key" in unknown.message
    assert store_probe.refusal("fluss", "delete", "x", store_probe.s3_error(403, b"")).message == \
        "lacks s3:DeleteObject on x (HTTP 403)"


def test_probe_urls_follow_the_addressing_style():
    path_style = store_probe.Prober(settings(**EXTERNAL), config.DEV_CREDENTIALS)
    assert path_style.url("warehouse/a b") == f"{ENDPOINT}/sagaz-lakehouse/warehouse/a%20b"
    assert path_style.url(query="list-type=2") == f"{ENDPOINT}/sagaz-lakehouse?list-type=2"
    aws = store_probe.Prober(settings(**{"object_store.kind": "external"}), config.DEV_CREDENTIALS)
    assert aws.url("fluss-remote/x") == "https://sagaz-lakehouse.s3.us-east-1.amazonaws.com/fluss-remote/x"
    assert store_probe.preflight(settings(), config.DEV_CREDENTIALS) == []  # bundled: nothing to probe


def test_the_probe_assumes_the_role_fluss_assumes_and_names_the_setting_when_the_store_refuses(tmp_path):
    """The STS step as Fluss 0.9.1 takes it (a signed form POST for service sts at the store's endpoint, with the
    fluss role's keys); a refusal names object_store.sts_role_arn and the role. Against real stores:
    tests/local/stacks/test_external_store_on_stack.py (SeaweedFS) and the compose suite (MinIO)."""
    credentials = external_credentials(tmp_path)
    calls: list[tuple[str, str, bytes, dict[str, str]]] = []

    def refusing(url: str, method: str, body: bytes | None, headers: dict[str, str], timeout: float):
        calls.append((url, method, body or b"", headers))
        return 403, error("AccessDenied", "User is not authorized to assume role")

    problems: list[Problem] = []
    prober = store_probe.Prober(settings(**EXTERNAL), credentials, refusing)
    assert prober.assume_role(problems) == []
    [(url, method, body, headers)] = calls
    assert (url, method) == (f"{ENDPOINT}/", "POST")
    assert b"Action=AssumeRole" in body and b"role%2Fsagaz-lakehouse" in body
    assert "/eu-west-3/sts/aws4_request" in headers["Authorization"]
    assert "Credential=fluss-access-value-7Qx/" in headers["Authorization"]
    [problem] = problems
    assert problem.field == "object_store.sts_role_arn"
    assert problem.message.startswith(f"the fluss role cannot assume role {fluss.ASSUMED_ROLE_ARN} at {ENDPOINT} "
                                      "(AccessDenied: User is not authorized to assume role)")
    assert "trusted for the fluss role's identity" in problem.hint
    on_aws = store_probe.Prober(settings(**{"object_store.kind": "external"}), credentials, refusing)
    assert on_aws.assume_role(problems) == [] and len(calls) == 1  # AWS S3: AWS STS's business, not probed


# ---------------------------------------------------------------------------------------------------- `up`


def test_up_refuses_an_unreachable_store_or_missing_keys_before_starting_anything(tmp_path):
    from support import free_port
    from typer.testing import CliRunner

    from sagaz_lakehouse.cli import app

    config_file = tmp_path / config.CONFIG_FILENAME
    config_file.write_text("")  # defaults; the run folder beside it
    endpoint = f"http://127.0.0.1:{free_port()}"  # nobody listens there
    flags = ["--config", str(config_file), "--set", "object_store.kind=external",
             "--set", f"object_store.endpoint={endpoint}"]
    runner = CliRunner()
    keys = {"SAGAZ_LAKEHOUSE_S3_ACCESS_KEY": "shared-key", "SAGAZ_LAKEHOUSE_S3_SECRET_KEY": "shared-secret-1"}
    unreachable = runner.invoke(app, ["up", *flags], env=keys, catch_exceptions=False)
    assert unreachable.exit_code == 2, unreachable.output
    assert f"object_store.endpoint: cannot reach the object store at {endpoint}" in unreachable.output
    assert "shared-secret-1" not in unreachable.output
    no_keys = runner.invoke(app, ["up", *flags], env={}, catch_exceptions=False)
    assert no_keys.exit_code == 2 and "no keys for the fluss role" in no_keys.output
    assert not (tmp_path / ".sagaz-lakehouse" / "pids").exists()
