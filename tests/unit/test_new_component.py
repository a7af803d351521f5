"""A new component is its module under components/ and one line in components.REGISTRY (docs/architecture.md):
one the targets have never seen, registered that way, is laid out by all three with no other change."""

from __future__ import annotations

import pytest

import sagaz_lakehouse as lakehouse
from sagaz_lakehouse import components
from sagaz_lakehouse import stack as s
from sagaz_lakehouse.config import PLACEHOLDER_CREDENTIALS, Settings


def grafana(settings: Settings, view: s.View) -> s.Component:
    """What components/grafana.py would hold (docs/architecture.md shows it whole)."""

    def setup(at: s.Instance) -> s.Setup:
        def command(ctx: s.NativeContext) -> s.Process:
            return s.Process([str(ctx.home / "bin" / "grafana"), "server", f"--homepath={ctx.home}"])

        return s.Setup(container=s.Container(user=472, probe_tool="wget"),
                       native=s.Native("grafana", command, tree={".": ("grafana",)}))

    return s.Component("grafana", "grafana", "grafana/grafana:12.0.0", "12.0.0", "Grafana (dashboards)", setup,
                       ports=(s.Port("http", 3000, 0, published=False),),
                       health=s.Health("http", "http", "/api/health"), memory="256Mi")


@pytest.fixture
def registered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(components, "REGISTRY", (*components.REGISTRY, grafana))  # the one line


@pytest.mark.parametrize("target", ["local", "compose", "kubernetes"])
def test_a_registered_component_is_laid_out_by_every_target(registered, target):
    settings = lakehouse.load_settings(overrides={"target": target}, environ={})
    stack = lakehouse.target_of(settings).stack(settings)
    assert stack.names[-2:] == ["grafana", "prometheus"]  # in registry order, Prometheus last
    rendered = "\n".join(f.content for f in lakehouse.target_of(settings).render(settings, PLACEHOLDER_CREDENTIALS))
    if target != "local":  # the local target's files are the components' own (Grafana brings none)
        assert "grafana/grafana:12.0.0" in rendered and "/api/health" in rendered
