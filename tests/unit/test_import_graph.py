"""The package's import graph (scripts/import_graph.py, read with ast): no circles, no import back up the layering
that docs/architecture.md documents, and every module placed in a layer."""

from __future__ import annotations

import importlib.util
import sys

from support import REPO


def import_graph():
    spec = importlib.util.spec_from_file_location("import_graph", REPO / "scripts" / "import_graph.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclass-free, but keep it importable as itself
    spec.loader.exec_module(module)
    return module


GRAPH = import_graph()
EDGES = GRAPH.graph(REPO)


def test_every_module_has_a_layer():
    assert GRAPH.unplaced(EDGES) == [], "add the new module to LAYERS in scripts/import_graph.py (and the doc)"


def test_no_import_circles():
    assert GRAPH.circles(EDGES) == []


def test_no_module_imports_one_above_it():
    assert [f"{a or 'sagaz_lakehouse'} -> {b}" for a, b in GRAPH.upward(EDGES)] == []


def test_the_graph_sees_lazy_and_type_only_imports():
    # cli imports nearly everything inside its commands; the package face only under TYPE_CHECKING
    assert {"loader", "doctor", "targets.base"} <= EDGES["cli"]
    assert {"loader", "sagaz"} <= EDGES[""]
