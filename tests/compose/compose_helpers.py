"""Rendering helpers shared by the compose tests: the variants every validator runs on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

import sagaz_lakehouse as lakehouse
from sagaz_lakehouse import config, render, tls
from sagaz_lakehouse.config import Credentials, Settings

# Distinctive prod credentials: any appearance outside .env (the S3 keys) or the secret files (the passwords, Trino's
# key) is a leak. `$`, quotes and a backslash exercise the .env quoting.
PROD_CREDENTIALS = Credentials("prod-access-7Hq2", "prod-secret-$x'\"\\-Zk91", "prod-fluss-password-Wd3",
                               "prod-trino-password-Rf8",
                               tls.self_signed_keystore(("127.0.0.1", "localhost", "trino")))

VARIANTS: dict[str, dict[str, Any]] = {
    "dev-1-tablet": {},
    "dev-3-tablets": {"replicas.tablet_servers": "3"},
    "prod-1-tablet": {"profile": "prod"},
    "prod-3-tablets-trino-workers": {"profile": "prod", "replicas.tablet_servers": "3",
                                     "replicas.trino_workers": "2", "replicas.flink_taskmanagers": "2"},
    "dev-trino-workers-moved-ports": {"replicas.trino_workers": "1", "ports.trino": "18080",
                                      "ports.minio": "19000", "ports.fluss_tablet": "19200"},
}


def settings_for(overrides: dict[str, Any]) -> Settings:
    return lakehouse.load_settings(None, {"target": "compose", **overrides}, environ={})


def credentials_for(settings: Settings) -> Credentials:
    return PROD_CREDENTIALS if settings.profile == "prod" else config.DEV_CREDENTIALS


def rendered(overrides: dict[str, Any]) -> tuple[Settings, Credentials, list[render.RenderedFile]]:
    settings = settings_for(overrides)
    creds = credentials_for(settings)
    from sagaz_lakehouse.targets.base import render as render_target

    return settings, creds, render_target(settings, creds, "compose")


def write_variant(overrides: dict[str, Any], out: Path) -> tuple[Settings, Credentials, Path]:
    settings, creds, files = rendered(overrides)
    render.write_files(files, out)
    return settings, creds, out / "compose.yaml"


def compose_document(files: list[render.RenderedFile]) -> dict[str, Any]:
    return yaml.safe_load(next(f.content for f in files if f.path == "compose.yaml"))
