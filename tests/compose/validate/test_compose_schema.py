"""Every rendered compose variant against the Compose Specification JSON schema.

The schema is the one Docker Compose itself validates with: `schema/compose-spec.json` in the Go module
github.com/compose-spec/compose-go/v2, at the version docker/compose v2.40.3 requires (its go.mod). It is fetched
with `go mod download` into Go's module cache (verified against the Go checksum database), never committed.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml
from compose_helpers import VARIANTS, rendered

from sagaz_lakehouse.targets.local import distributions

COMPOSE_GO = "github.com/compose-spec/compose-go/v2@v2.9.1"


def go_binary() -> str:
    found = distributions.find_go()  # where `up` and scripts/tools/*.sh look too
    if not found:
        pytest.fail("Go is needed to fetch the Compose JSON schema (go mod download); install it or put it on PATH",
                    pytrace=False)
    return found


@pytest.fixture(scope="module")
def schema() -> dict:
    result = subprocess.run([go_binary(), "mod", "download", "-json", COMPOSE_GO], capture_output=True, text=True,
                            timeout=300, check=False, cwd="/")
    if result.returncode != 0:
        pytest.fail(f"go mod download {COMPOSE_GO} failed: {result.stderr or result.stdout}", pytrace=False)
    path = Path(json.loads(result.stdout)["Dir"]) / "schema" / "compose-spec.json"
    return json.loads(path.read_text())


@pytest.mark.parametrize("name", list(VARIANTS))
def test_variant_matches_compose_spec(schema, name):
    import jsonschema

    _, _, files = rendered(VARIANTS[name])
    document = yaml.safe_load(next(f.content for f in files if f.path == "compose.yaml"))
    validator = jsonschema.Draft7Validator(schema)
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)


def test_schema_rejects_a_broken_file(schema):
    """The validator can fail: an unknown service key and volumes given as a mapping are caught."""
    import jsonschema

    _, _, files = rendered({})
    document = yaml.safe_load(next(f.content for f in files if f.path == "compose.yaml"))
    document["services"]["minio"]["helthcheck"] = {"test": ["CMD", "true"]}
    document["services"]["zookeeper"]["volumes"] = {"zookeeper-data": "/data"}
    errors = [e.message for e in jsonschema.Draft7Validator(schema).iter_errors(document)]
    assert any("helthcheck" in m for m in errors)
    assert len(errors) >= 2, errors
