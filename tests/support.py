"""Helpers shared by the test suites (importable as `support`: tests/ is on sys.path via its conftest)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def cache_dir() -> Path:
    """The download/build cache shared with `make tools` (outside the clone)."""
    return Path(os.environ.get("SAGAZ_LAKEHOUSE_LOCAL__CACHE_DIR", "~/.cache/sagaz-lakehouse")).expanduser()


def tool(name: str) -> Path:
    """A binary installed by `make tools`; a missing one fails the test (never a silent skip)."""
    path = cache_dir() / "bin" / name
    if not path.exists():
        pytest.fail(f"{path} is missing: run `make tools` (scripts/install-tools.sh) first", pytrace=False)
    return path
