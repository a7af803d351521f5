"""The real Docker Compose (built from the Go module proxy by scripts/tools/compose.sh, `make tools`) parses every
rendered variant: `docker-compose config --quiet` loads, interpolates and validates the project without an engine.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from compose_helpers import VARIANTS, write_variant
from support import tool

from sagaz_lakehouse import identities
from sagaz_lakehouse import stack as s
from sagaz_lakehouse.components.trino import TRINO_S3_ROLE


def compose(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # The calling shell's S3_* variables would win over .env: keep them out, as the driver does.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("S3_", "SAGAZ_LAKEHOUSE_S3_"))}
    return subprocess.run([str(tool("docker-compose")), "--project-directory", str(project), "-f",
                           str(project / "compose.yaml"), *args], capture_output=True, text=True, timeout=60,
                          env=env, check=False)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_docker_compose_config_accepts_variant(tmp_path, name):
    write_variant(VARIANTS[name], tmp_path)
    result = compose(tmp_path, "config", "--quiet")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("name", ["dev-1-tablet", "prod-3-tablets-trino-workers"])
def test_credentials_reach_containers_only_through_env(tmp_path, name):
    settings, creds, _ = write_variant(VARIANTS[name], tmp_path)
    result = compose(tmp_path, "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]

    def env(service: str, key: str) -> str:
        # `config` prints the canonical form, where a literal '$' is written '$$'.
        return services[service]["environment"][key].replace("$$", "$")

    # compose fills environment entries from .env, byte for byte (quotes, '$', '#', backslashes survive) ...
    assert env(s.MINIO, "MINIO_ROOT_PASSWORD") == creds.secret_key
    lake, fluss_s3 = identities.s3_identity(settings, TRINO_S3_ROLE), identities.s3_identity(settings, "fluss")
    assert (env(s.TRINO, lake.access_var), env(s.TRINO, lake.secret_var)) == creds.s3_keys(lake.role)
    # ... while server.yaml keeps the reference for the container's envsubst.
    tablet = f"{s.TABLET}-{settings.replicas.tablet_servers - 1}"
    fluss = env(tablet, "FLUSS_PROPERTIES")
    assert fluss_s3.secret_key in fluss
    assert creds.secret_key not in fluss
    assert env(tablet, fluss_s3.secret_var) == creds.s3_keys(fluss_s3.role)[1]
    if settings.profile == "prod":  # one identity per role: the root secret reaches MinIO and the bucket task only
        holders = {name for name, svc in services.items()
                   if any(creds.secret_key in env(name, key) for key in svc.get("environment") or {})}
        assert holders == {s.MINIO, s.CREATE_BUCKET}


def test_missing_env_file_is_a_clear_error(tmp_path):
    write_variant({}, tmp_path)
    (tmp_path / ".env").unlink()
    result = compose(tmp_path, "config", "--quiet")
    assert result.returncode != 0
    assert "S3_ACCESS_KEY is missing" in result.stderr or "S3_SECRET_KEY is missing" in result.stderr


def test_docker_compose_config_rejects_a_broken_file(tmp_path):
    """The validator can fail: a depends_on on a service that does not exist."""
    write_variant({}, tmp_path)
    path = tmp_path / "compose.yaml"
    path.write_text(path.read_text().replace("      minio:\n        condition: service_healthy",
                                             "      minio-typo:\n        condition: service_healthy", 1))
    result = compose(tmp_path, "config", "--quiet")
    assert result.returncode != 0
    assert "minio-typo" in result.stderr
