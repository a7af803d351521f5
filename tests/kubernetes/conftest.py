"""Fixtures for the Kubernetes manifest tests (helpers live in manifest_helpers.py)."""

from __future__ import annotations

import pytest
from manifest_helpers import VARIANTS, Rendered, render_variant


@pytest.fixture(scope="session", params=list(VARIANTS), ids=list(VARIANTS))
def variant(request) -> Rendered:
    return render_variant(VARIANTS[request.param])


@pytest.fixture(scope="session")
def default() -> Rendered:
    return render_variant({})
