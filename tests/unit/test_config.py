"""Settings: precedence, validation that names the field and the fix, the init file, credentials."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

import sagaz_lakehouse as lakehouse
from sagaz_lakehouse import config
from sagaz_lakehouse.config import ConfigError, Settings


def load(text: str | None = None, tmp_path: Path | None = None, **kwargs):
    path = None
    if text is not None:
        assert tmp_path is not None
        path = tmp_path / "sagaz-lakehouse.yaml"
        path.write_text(text)
    kwargs.setdefault("environ", {})
    return lakehouse.load_settings(path, **kwargs)


def problems_of(excinfo) -> dict[str, str]:
    return {p.field: p.render() for p in excinfo.value.problems}


def test_defaults_are_valid_and_dev():
    settings = load()
    assert settings == Settings()
    assert (settings.target, settings.profile, settings.freshness) == ("local", "dev", "10s")


def test_prod_freshness_default_is_longer():
    assert load(overrides={"profile": "prod"}).freshness == "3min"


def test_precedence_flags_over_env_over_file(tmp_path):
    text = "target: compose\nreplicas:\n  tablet_servers: 2\nlake:\n  freshness: 30s\n"
    env = {"SAGAZ_LAKEHOUSE_REPLICAS__TABLET_SERVERS": "3", "SAGAZ_LAKEHOUSE_LAKE__FRESHNESS": "20s"}
    settings = load(text, tmp_path, environ=env, overrides={"lake.freshness": "5s"})
    assert settings.target == "compose"  # file
    assert settings.replicas.tablet_servers == 3  # env beats file
    assert settings.lake.freshness == "5s"  # flag beats env


def test_unknown_key_suggests_closest(tmp_path):
    with pytest.raises(ConfigError) as excinfo:
        load("lake:\n  bukcet: x\n", tmp_path)
    assert "did you mean 'lake.bucket'" in problems_of(excinfo)["lake.bukcet"]
    assert excinfo.value.exit_code == 2


def test_all_problems_reported_together(tmp_path):
    text = "target: kubernets\nprofile: staging\nreplicas:\n  tablet_servers: 0\n  trino_workers: -1\n"
    with pytest.raises(ConfigError) as excinfo:
        load(text, tmp_path)
    found = problems_of(excinfo)
    assert set(found) == {"target", "profile", "replicas.tablet_servers", "replicas.trino_workers"}
    assert "did you mean 'kubernetes'" in found["target"]
    assert "expected one of dev, prod" in found["profile"]
    assert "from 1 to 64, got 0" in found["replicas.tablet_servers"]


def test_port_collision_names_both_owners():
    with pytest.raises(ConfigError) as excinfo:
        load(overrides={"ports.trino": "9000"})
    assert "port 9000 is also used by minio" in problems_of(excinfo)["ports.trino"]


def test_tablet_fan_out_collides_with_next_port():
    # three tablet servers take 9124, 9125, 9126: a component on 9126 collides
    with pytest.raises(ConfigError) as excinfo:
        load(overrides={"replicas.tablet_servers": "3", "ports.rest_catalog": "9126"})
    assert any("9126" in text for text in problems_of(excinfo).values())


def test_malformed_yaml_reports_line_and_column(tmp_path):
    with pytest.raises(ConfigError) as excinfo:
        load("target: local\nlake:\n  bucket: [oops\n", tmp_path)
    (field,) = problems_of(excinfo)
    assert field.startswith("line ") and "column" in field


def test_wrong_types_and_patterns(tmp_path):
    with pytest.raises(ConfigError) as excinfo:
        load("replicas:\n  tablet_servers: three\nlake:\n  freshness: soon\n  bucket: Not_A_Bucket\n", tmp_path)
    assert set(problems_of(excinfo)) == {"replicas.tablet_servers", "lake.freshness", "lake.bucket"}


def test_cpu_request_defaults_to_the_profiles_and_takes_a_kubernetes_quantity():
    assert (load().cpu_request, load(overrides={"profile": "prod"}).cpu_request) == ("100m", "500m")
    assert load(overrides={"profile": "prod", "kubernetes.cpu_request": "250m"}).cpu_request == "250m"
    assert load(overrides={"kubernetes.cpu_request": "1.5"}).cpu_request == "1.5"
    for bad in ("0m", "half", "250Mi", "-1"):
        with pytest.raises(ConfigError) as excinfo:
            load(overrides={"kubernetes.cpu_request": bad})
        assert set(problems_of(excinfo)) == {"kubernetes.cpu_request"}, bad


def test_unpinned_image_rejected():
    with pytest.raises(ConfigError) as excinfo:
        load(overrides={"images.trino": "trinodb/trino:latest"})
    assert "not pinned" in problems_of(excinfo)["images.trino"]
    with pytest.raises(ConfigError):
        load(overrides={"images.minio": "minio/minio"})


def test_unknown_environment_variable_suggests(tmp_path):
    with pytest.raises(ConfigError) as excinfo:
        load(environ={"SAGAZ_LAKEHOUSE_PORT__TRINO": "1"})
    assert "SAGAZ_LAKEHOUSE_PORTS__TRINO" in problems_of(excinfo)["SAGAZ_LAKEHOUSE_PORT__TRINO"]


def test_init_file_documents_every_setting_commented_out(tmp_path):
    """Defaults are commented out, so a later version's defaults (image tags, jar versions) still apply."""
    text = config.commented_yaml()
    for dotted in config.ALL_PATHS:
        assert f"# {dotted.split('.')[-1]}:" in text
    assert yaml.safe_load(text) is None  # nothing active
    assert load(text, tmp_path) == Settings()


def test_init_file_keeps_chosen_values_active(tmp_path):
    text = config.commented_yaml({"target": "compose", "ports.trino": 18080, "replicas.tablet_servers": 3})
    assert yaml.safe_load(text) == {"target": "compose", "ports": {"trino": 18080},
                                    "replicas": {"tablet_servers": 3}}
    settings = load(text, tmp_path)
    assert settings.target == "compose" and settings.ports.trino == 18080 and settings.ports.minio == 9000


def test_problems_name_the_flag_or_variable_they_came_from(tmp_path):
    with pytest.raises(ConfigError) as excinfo:
        load("lake:\n  buckets: 8\n", tmp_path, overrides={"memory.trino": "0Mi"},
             environ={"SAGAZ_LAKEHOUSE_REPLICAS__TABLET_SERVERS": "0"})
    text = str(excinfo.value)
    assert "memory.trino (from --set memory.trino): expected at least 1Gi" in text
    assert "replicas.tablet_servers (from SAGAZ_LAKEHOUSE_REPLICAS__TABLET_SERVERS)" in text
    assert "problem(s) in settings:" in text  # not blamed on the settings file


@pytest.mark.parametrize("value", ["secret#value", " secretvalue", "secretvalue "])
def test_secrets_fluss_would_cut_are_refused(value):
    settings = load()
    with pytest.raises(ConfigError) as excinfo:
        lakehouse.resolve_credentials(settings, environ={"SAGAZ_LAKEHOUSE_S3_ACCESS_KEY": "access-ok",
                                                      "SAGAZ_LAKEHOUSE_S3_SECRET_KEY": value})
    assert excinfo.value.exit_code == 2 and "'#'" in str(excinfo.value)


def test_prod_without_secrets_is_a_clear_error():
    settings = load(overrides={"profile": "prod"})
    with pytest.raises(ConfigError) as excinfo:
        lakehouse.resolve_credentials(settings, environ={})
    assert "SAGAZ_LAKEHOUSE_S3_SECRET_KEY" in str(excinfo.value)


def test_dev_uses_dev_credentials_and_prod_takes_env():
    assert lakehouse.resolve_credentials(load(), environ={}) == config.DEV_CREDENTIALS
    env = {"SAGAZ_LAKEHOUSE_S3_ACCESS_KEY": "prodkey", "SAGAZ_LAKEHOUSE_S3_SECRET_KEY": "a-long-prod-secret",
           "SAGAZ_LAKEHOUSE_FLUSS_PASSWORD": "a-fluss-password", "SAGAZ_LAKEHOUSE_TRINO_PASSWORD": "a-trino-password"}
    creds = lakehouse.resolve_credentials(load(overrides={"profile": "prod"}), environ=env)
    assert creds.secret_key == "a-long-prod-secret"
    assert "a-long-prod-secret" not in repr(creds)


def test_secrets_file_must_be_private(tmp_path):
    secrets = tmp_path / "secrets.yaml"
    secrets.write_text("s3_access_key: prodkey\ns3_secret_key: a-long-prod-secret\nfluss_password: fluss-pw-1\n"
                       "trino_password: trino-pw-1\n")
    os.chmod(secrets, 0o644)
    settings = load(overrides={"profile": "prod", "secrets.file": str(secrets)})
    with pytest.raises(ConfigError, match="chmod 600"):
        lakehouse.resolve_credentials(settings, environ={})
    os.chmod(secrets, 0o600)
    assert lakehouse.resolve_credentials(settings, environ={}).access_key == "prodkey"


def test_a_root_access_key_named_like_a_role_identity_is_refused():
    env = {"SAGAZ_LAKEHOUSE_S3_ACCESS_KEY": "sagaz-fluss", "SAGAZ_LAKEHOUSE_S3_SECRET_KEY": "a-long-prod-secret"}
    with pytest.raises(ConfigError) as excinfo:
        lakehouse.resolve_credentials(load(), environ=env)
    assert excinfo.value.exit_code == 2 and "choose another root access key" in str(excinfo.value)


def test_role_keys_derive_from_the_root_secret_and_placeholders_stay_placeholders():
    from sagaz_lakehouse import identities, tasks

    creds = config.Credentials("operator", "a-long-prod-secret")
    assert creds.s3_keys(config.ROOT_ROLE) == ("operator", "a-long-prod-secret")
    assert creds.s3_keys("lake") == ("sagaz-lake", tasks.identity_secret("a-long-prod-secret", "lake"))
    assert set(creds.secret_values()) >= {creds.s3_keys(role)[1] for role in config.S3_ROLES}
    assert config.PLACEHOLDER_CREDENTIALS.s3_keys("lake") == ("sagaz-lake", "REPLACE_WITH_S3_LAKE_SECRET_KEY")
    # Every role shares the root keys in dev; prod gives each its own variables.
    dev, prod = load(), load(overrides={"profile": "prod"})
    assert {identities.s3_identity(dev, role) for role in config.S3_ROLES} == {identities.ROOT_S3}
    assert identities.s3_identity(prod, "lake").secret_var == "S3_LAKE_SECRET_KEY"
    assert identities.create_bucket_grants(dev) == []
    assert "--grant=lake=warehouse:rw" in identities.create_bucket_grants(prod)
    assert set(identities.s3_variables(prod, creds)) == set(identities.s3_variable_names())


TLS_ENV = {"SAGAZ_LAKEHOUSE_S3_ACCESS_KEY": "prodkey", "SAGAZ_LAKEHOUSE_S3_SECRET_KEY": "a-long-prod-secret",
           "SAGAZ_LAKEHOUSE_FLUSS_PASSWORD": "fluss-pw-1", "SAGAZ_LAKEHOUSE_TRINO_PASSWORD": "trino-pw-1"}


def write_keystore(path: Path, pem: str, mode: int = 0o600) -> Path:
    path.write_text(pem)
    os.chmod(path, mode)
    return path


def test_an_operator_certificate_for_trino_is_read_and_checked(tmp_path):
    from support import operator_keystore

    keystore, _ = operator_keystore()
    write_keystore(tmp_path / "trino.pem", keystore)
    settings = load(overrides={"profile": "prod", "secrets.trino_tls": "trino.pem"})
    assert lakehouse.resolve_credentials(settings, environ=TLS_ENV, base_dir=tmp_path).trino_keystore == keystore


@pytest.mark.parametrize(("case", "expected"), [
    ("readable by others", "chmod 600"),
    ("no key", "no unencrypted PEM private key"),
    ("another key", "does not belong to the private key"),
    ("expired", "is not valid now"),
    ("other host", "names none of 127.0.0.1, localhost"),
    ("missing", "cannot read"),
])
def test_an_unusable_operator_certificate_is_refused_naming_the_setting(tmp_path, case, expected):
    from support import operator_keystore

    keystore, _ = operator_keystore()
    key_end = keystore.index("-----END PRIVATE KEY-----") + len("-----END PRIVATE KEY-----\n")
    pem = {"no key": keystore[key_end:],
           "another key": operator_keystore()[0][:key_end] + keystore[key_end:],
           "expired": operator_keystore(valid_days=-1)[0],
           "other host": operator_keystore(hosts=("trino.example.com",))[0]}.get(case, keystore)
    if case != "missing":
        write_keystore(tmp_path / "trino.pem", pem, 0o644 if case == "readable by others" else 0o600)
    settings = load(overrides={"profile": "prod", "secrets.trino_tls": str(tmp_path / "trino.pem")})
    with pytest.raises(ConfigError) as excinfo:
        lakehouse.resolve_credentials(settings, environ=TLS_ENV)
    assert excinfo.value.exit_code == 2
    assert "secrets.trino_tls" in str(excinfo.value) and expected in str(excinfo.value)
    assert "PRIVATE KEY" not in str(excinfo.value)


@pytest.mark.parametrize("target", ["compose", "kubernetes"])
def test_in_containers_an_operator_certificate_must_also_name_the_trino_service(tmp_path, target):
    """Prometheus and the lake maintenance service reach Trino by its Service name, trino; the CLI at 127.0.0.1 (a
    published port, a port-forward). A certificate naming only the loopback address is refused there, naming both
    requirements."""
    from support import operator_keystore

    settings = load(overrides={"profile": "prod", "target": target, "kubernetes.namespace": "lake",
                               "secrets.trino_tls": str(tmp_path / "trino.pem")})
    write_keystore(tmp_path / "trino.pem", operator_keystore()[0])
    with pytest.raises(ConfigError) as excinfo:
        lakehouse.resolve_credentials(settings, environ=TLS_ENV)
    assert excinfo.value.exit_code == 2 and "secrets.trino_tls" in str(excinfo.value)
    assert "names none of trino, which clients connect to" in str(excinfo.value)
    assert "naming 127.0.0.1 or localhost and trino" in str(excinfo.value)
    keystore = operator_keystore(hosts=("localhost", "trino", "trino.lake.svc.cluster.local"))[0]
    write_keystore(tmp_path / "trino.pem", keystore)
    assert lakehouse.resolve_credentials(settings, environ=TLS_ENV).trino_keystore == keystore
    from sagaz_lakehouse import identities

    credentials = lakehouse.resolve_credentials(settings, environ=TLS_ENV)
    assert identities.substitute_public("${TRINO_TLS_NAME}", settings, credentials) == "trino"


def test_a_made_certificate_is_made_again_when_it_lacks_a_name_clients_need(tmp_path):
    from sagaz_lakehouse import tls

    local = tls.ensure(tmp_path)
    assert tls.ensure(tmp_path) == local  # kept while it names what is asked
    containers = tls.ensure(tmp_path, ("127.0.0.1", "localhost", "trino", "trino.ns.svc"))
    assert containers.keystore_pem != local.keystore_pem
    assert tls.reusable(containers.keystore_pem, ("127.0.0.1", "trino"))
    assert not tls.reusable(containers.keystore_pem, ("trino.other.svc",))
    assert not tls.reusable("", ("127.0.0.1",))


def test_short_secret_rejected():
    env = {"SAGAZ_LAKEHOUSE_S3_ACCESS_KEY": "key", "SAGAZ_LAKEHOUSE_S3_SECRET_KEY": "short"}
    with pytest.raises(ConfigError, match="shorter than 8"):
        lakehouse.resolve_credentials(load(), environ=env)


PROD_S3 = {"SAGAZ_LAKEHOUSE_S3_ACCESS_KEY": "prodkey", "SAGAZ_LAKEHOUSE_S3_SECRET_KEY": "a-long-prod-secret"}
TRINO_PW = {"SAGAZ_LAKEHOUSE_TRINO_PASSWORD": "trino-pw-1"}
FLUSS_PW = {"SAGAZ_LAKEHOUSE_FLUSS_PASSWORD": "fluss-pw-1"}


@pytest.mark.parametrize("target", ["local", "compose", "kubernetes"])
def test_prod_needs_a_fluss_password_on_every_target(target):
    settings = load(overrides={"profile": "prod", "target": target})
    with pytest.raises(ConfigError) as excinfo:
        lakehouse.resolve_credentials(settings, environ={**PROD_S3, **TRINO_PW})
    assert excinfo.value.exit_code == 2 and "SAGAZ_LAKEHOUSE_FLUSS_PASSWORD" in str(excinfo.value)
    creds = lakehouse.resolve_credentials(settings, environ={**PROD_S3, **TRINO_PW, **FLUSS_PW})
    assert creds.fluss_password == "fluss-pw-1" and "fluss-pw-1" not in repr(creds)
    assert creds.redact("pw fluss-pw-1 key a-long-prod-secret") == "pw *** key ***"
    # dev takes none
    assert lakehouse.resolve_credentials(load(overrides={"target": target}), environ={}).fluss_password == ""


@pytest.mark.parametrize("value", ['with"quote', "back\\slash", "hash#value", " leading-space", "short"])
def test_fluss_passwords_the_jaas_file_would_change_are_refused(value):
    settings = load(overrides={"profile": "prod"})
    with pytest.raises(ConfigError) as excinfo:
        lakehouse.resolve_credentials(settings,
                                      environ={**PROD_S3, **TRINO_PW, "SAGAZ_LAKEHOUSE_FLUSS_PASSWORD": value})
    assert excinfo.value.exit_code == 2 and "fluss password" in str(excinfo.value)


@pytest.mark.parametrize("target", ["local", "compose", "kubernetes"])
def test_prod_needs_a_trino_password_on_every_target(target):
    settings = load(overrides={"profile": "prod", "target": target})
    with pytest.raises(ConfigError) as excinfo:
        lakehouse.resolve_credentials(settings, environ={**PROD_S3, **FLUSS_PW})
    assert excinfo.value.exit_code == 2 and "SAGAZ_LAKEHOUSE_TRINO_PASSWORD" in str(excinfo.value)
    assert "trino_password to secrets.file" in str(excinfo.value)
    creds = lakehouse.resolve_credentials(settings, environ={**PROD_S3, **TRINO_PW, **FLUSS_PW})
    assert creds.trino_password == "trino-pw-1" and "trino-pw-1" not in repr(creds)
    shared = creds.trino_shared_secret()
    assert len(shared) == 64 and "trino-pw-1" not in shared and set(creds.secret_values()) >= {"trino-pw-1", shared}
    # dev takes none
    assert lakehouse.resolve_credentials(load(overrides={"target": target}), environ={}).trino_password == ""
    assert config.DEV_CREDENTIALS.trino_shared_secret() == ""


@pytest.mark.parametrize("value", ["hash#value", " leading-space", "short"])
def test_trino_passwords_are_checked_like_the_others(value):
    settings = load(overrides={"profile": "prod"})
    with pytest.raises(ConfigError) as excinfo:
        lakehouse.resolve_credentials(settings,
                                      environ={**PROD_S3, **FLUSS_PW, "SAGAZ_LAKEHOUSE_TRINO_PASSWORD": value})
    assert excinfo.value.exit_code == 2 and "trino password" in str(excinfo.value)


def test_the_fluss_password_can_come_from_the_secrets_file(tmp_path):
    secrets = tmp_path / "secrets.yaml"
    secrets.write_text("s3_access_key: prodkey\ns3_secret_key: a-long-prod-secret\nfluss_password: from-the-file\n"
                       "trino_password: trino-from-the-file\n")
    os.chmod(secrets, 0o600)
    settings = load(overrides={"profile": "prod", "secrets.file": str(secrets)})
    creds = lakehouse.resolve_credentials(settings, environ={})
    assert (creds.fluss_password, creds.trino_password) == ("from-the-file", "trino-from-the-file")
