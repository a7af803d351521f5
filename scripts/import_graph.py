#!/usr/bin/env python3
"""The package's import graph, read from the code with ``ast``: its circles, the imports that run back up the
documented layering (LAYERS, docs/architecture.md), and a Mermaid picture of it.

    python3 scripts/import_graph.py                 # circles and upward imports; exit 1 when there is any
    python3 scripts/import_graph.py --mermaid       # the picture, for docs/architecture.md
    python3 scripts/import_graph.py --root DIR      # another checkout (its layering is not checked)

Every import counts, wherever it stands (module level, inside a function, under ``if TYPE_CHECKING``): a lazy
import is still a dependency. Standard library only; tests/unit/test_import_graph.py runs the same checks.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterable
from pathlib import Path

PACKAGE = "sagaz_lakehouse"
# Bottom to top: a module imports only from its own layer or the ones below (and never in a circle). A name covers a
# module and, ending in ".*", everything below a package.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("foundation", ("errors", "version", "versions", "profiles", "tasks", "maintenance", "render", "artifacts", "tls",
                    "saga_events", "spool", "queries", "sqlgateway", "targets")),  # targets: the registry, names only
    ("settings", ("config",)),
    ("stack model", ("stack", "addresses", "security", "identities", "components", "components.*")),
    ("targets", ("targets.*",)),  # base, probes and one package per target
    ("settings loader", ("loader",)),
    ("clients and analytics", ("clients", "store_probe", "tables", "fluss_cluster", "lake_health", "lake_maintenance",
                               "analytics", "spark", "report",
                               "dashboards", "sagaz", "simulate")),
    ("commands and public face", ("doctor", "cli", "__main__", "")),  # "": the package itself (__init__.py)
]
# Packages drawn as one box in the picture (drivers and kube: how the targets were spread before their packages).
BOXES = ("components", "queries", "targets.local", "targets.compose", "targets.kubernetes", "drivers", "kube")

Graph = dict[str, set[str]]


def modules(root: Path) -> dict[str, Path]:
    """Every module of the package under ``root``: dotted name (without the package prefix) → file."""
    found = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = path.relative_to(root / PACKAGE).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports(path: Path, name: str, known: Iterable[str]) -> set[str]:
    """The package's modules that ``path`` (module ``name``) imports."""
    known = set(known)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's own package upwards
                anchor = package.split(".") if package else []
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join([PACKAGE, *anchor, *([base] if base else [])])
            # `from package import module` names that module; `from module import name`, the module itself.
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}"[len(PACKAGE) + 1:] in known else base
                       for alias in node.names]
        else:
            continue
        for target in targets:
            if target != PACKAGE and not target.startswith(PACKAGE + "."):
                continue
            dotted = target[len(PACKAGE) + 1:]
            while dotted and dotted not in known:  # an attribute of a module: the module
                dotted = dotted.rpartition(".")[0]
            if dotted in known and dotted != name:
                out.add(dotted)
    return out


def graph(root: Path) -> Graph:
    mods = modules(root)
    return {name: imports(path, name, mods) for name, path in mods.items()}


def circles(edges: Graph) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(edges.get(node, ())):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            members = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                members.append(member)
                if member == node:
                    break
            if len(members) > 1:
                found.append(sorted(members))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for node in sorted(edges):
        if node not in index:
            visit(node)
    return sorted(found)


def layer_of(name: str) -> int:
    """The index of ``name``'s layer in LAYERS (ValueError: a module the layering does not place)."""
    for number, (_, members) in enumerate(LAYERS):
        for member in members:
            if name == member or (member.endswith(".*") and name.startswith(member[:-1])):
                return number
    raise ValueError(f"{PACKAGE}.{name} is in no layer of scripts/import_graph.py LAYERS" if name else
                     f"{PACKAGE} (the package face) is in no layer")


def upward(edges: Graph) -> list[tuple[str, str]]:
    """Every import from a module to one of a higher layer."""
    return sorted((a, b) for a, targets in edges.items() for b in targets if layer_of(b) > layer_of(a))


def unplaced(edges: Graph) -> list[str]:
    out = []
    for name in edges:
        try:
            layer_of(name)
        except ValueError:
            out.append(name)
    return sorted(out)


# ---------------------------------------------------------------------------------------------- the picture


def box(name: str) -> str:
    return next((b for b in BOXES if name == b or name.startswith(b + ".")), name)


def boxed(edges: Graph) -> Graph:
    out: Graph = {}
    for a, targets in edges.items():
        out.setdefault(box(a), set())
        out[box(a)] |= {box(b) for b in targets if box(b) != box(a)}
    return out


def reduced(edges: Graph) -> Graph:
    """Without the edges another path already implies (the picture keeps only what carries structure); edges inside
    a circle are all kept."""
    in_circle = {m for c in circles(edges) for m in c}

    def reachable(start: str, skip: tuple[str, str]) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            node = todo.pop()
            for succ in edges.get(node, ()):
                if (node, succ) != skip and succ not in seen:
                    seen.add(succ)
                    todo.append(succ)
        return seen

    return {a: {b for b in targets if (a in in_circle and b in in_circle) or b not in reachable(a, (a, b))}
            for a, targets in edges.items()}


def node_id(name: str) -> str:
    return (name or "package").replace(".", "_").replace("__", "")


def label(name: str) -> str:
    if not name:
        return "__init__ (public API)"
    if name == "targets":
        return "targets/__init__ (registry)"
    return name.replace(".", "/") + ("/" if name in BOXES else "")


def mermaid(edges: Graph, layered: bool) -> str:
    picture = boxed(edges)
    loops = {m for c in circles(picture) for m in c}
    lines = ["flowchart BT"]
    if layered:
        for number, (title, _) in enumerate(LAYERS):
            members = sorted(n for n in picture if layer_of(n) == number)
            lines.append(f'  subgraph L{number}["{number + 1}. {title}"]')
            lines += [f'    {node_id(n)}["{label(n)}"]' for n in members]
            lines.append("  end")
    else:
        lines += [f'  {node_id(n)}["{label(n)}"]' for n in sorted(picture)]
    kept = reduced(picture)
    red = []
    arrows = [(source, target) for source in sorted(kept) for target in sorted(kept[source])]
    for number, (source, target) in enumerate(arrows):
        lines.append(f"  {node_id(source)} --> {node_id(target)}")
        if source in loops and target in loops:
            red.append(str(number))
    if red:
        lines.append(f"  linkStyle {','.join(red)} stroke:#d33,stroke-width:3px")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent,
                        help="the checkout to read (default: this one)")
    parser.add_argument("--mermaid", action="store_true", help="print the picture instead of the checks")
    args = parser.parse_args(argv)
    edges = graph(args.root)
    layered = not unplaced(edges)
    if args.mermaid:
        print(mermaid(edges, layered), end="")
        return 0
    found = circles(edges)
    ups = upward(edges) if layered else []
    print(f"{len(edges)} modules, {sum(map(len, edges.values()))} imports, {len(found)} circle(s)"
          + (f", {len(ups)} import(s) back up the layering" if layered else
             f"; not in the layering: {', '.join(unplaced(edges))}"))
    for circle in found:
        print("  circle: " + " -> ".join(circle))
    for a, b in ups:
        print(f"  back up: {a or PACKAGE} ({LAYERS[layer_of(a)][0]}) imports {b} ({LAYERS[layer_of(b)][0]})")
    return 1 if found or ups else 0


if __name__ == "__main__":
    raise SystemExit(main())
