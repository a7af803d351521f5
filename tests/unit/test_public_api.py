"""The public API (sagaz_lakehouse/__init__.py): every documented name resolves, nothing heavy is imported until a
name is used, and a stack can be loaded, laid out and rendered through it alone."""

from __future__ import annotations

import subprocess
import sys

import sagaz_lakehouse as lakehouse
from sagaz_lakehouse.config import PLACEHOLDER_CREDENTIALS


def test_every_public_name_resolves_and_is_listed_once():
    assert sorted(lakehouse.__all__) == sorted({"__version__", *lakehouse.EXPORTS})
    for name in lakehouse.__all__:
        assert getattr(lakehouse, name) is not None, name


def test_importing_the_package_loads_no_module_of_it():
    code = ("import sys, sagaz_lakehouse; print(sorted(m for m in sys.modules if m.startswith('sagaz_lakehouse.')"
            " and m != 'sagaz_lakehouse.version'))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_a_stack_through_the_public_api_alone():
    settings = lakehouse.load_settings(overrides={"target": "compose"}, environ={})
    target = lakehouse.target_of(settings)
    assert target.name == "compose" and target is lakehouse.get_target("compose")
    assert "compose" in lakehouse.TARGET_NAMES
    stack = target.stack(settings)
    assert "fluss-tablet-1" in [name for _, name in stack.instances()]
    assert any(f.path == "compose.yaml" for f in target.render(settings, PLACEHOLDER_CREDENTIALS))
    assert lakehouse.build_stack(settings, lakehouse.View.INTERNAL).names == stack.names
