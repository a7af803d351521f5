"""The README's module map (its Development section) names every module and package of sagaz_lakehouse."""

from __future__ import annotations

import re

from support import REPO

PACKAGE = REPO / "sagaz_lakehouse"


def module_map() -> str:
    readme = (REPO / "README.md").read_text()
    start = readme.index("## Development")
    block = re.search(r"```text\n(.*?)```", readme[start:], re.S)
    assert block, "the Development section has no ```text module map"
    return block.group(1)


def entries(text: str) -> set[str]:
    """Paths the map names: `name.py` or `name/` words, nested under the folder lines above them."""
    found: set[str] = set()
    folders: list[tuple[int, str]] = []
    for line in text.splitlines():
        match = re.match(r"^( *)([\w.]+/|[\w.]+\.py)\s", line + " ")
        if not match:
            continue
        indent, name = len(match.group(1)), match.group(2)
        folders = [(depth, folder) for depth, folder in folders if depth < indent]
        path = "".join(folder for _, folder in folders) + name
        found.add(path)
        if name.endswith("/"):
            folders.append((indent, name))
    return found


def modules() -> set[str]:
    found = set()
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(REPO)
        if path.name == "__init__.py":
            found.add(f"{relative.parent}/")
        else:
            found.add(str(relative))
    return found


def test_every_module_is_in_the_readme_module_map():
    named = entries(module_map())
    missing = sorted(m for m in modules() if m not in named and m != "sagaz_lakehouse/")
    assert missing == [], f"README.md's module map (Development) lacks {missing}"


def test_the_map_names_no_module_that_is_gone():
    named = {n for n in entries(module_map()) if n.startswith("sagaz_lakehouse/")}
    gone = sorted(n for n in named if not (REPO / n).exists())
    assert gone == [], f"README.md's module map names {gone}, which do not exist"
