"""The README's code map is the truth: a package imports only packages
listed below it there."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "phizer"


def code_map_order() -> tuple[list[str], list[set[str]]]:
    """The README's code map rows, top first, as ``phizer.<name>`` names."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("### Code map", 1)[1].split("\n## ", 1)[0]
    order: list[set[str]] = []
    for row in re.findall(r"^\| (`phizer/[^|]*)\|", section, re.M):
        names = re.findall(r"`phizer/([a-z_]+)(?:\.py|/)`", row)
        order.append({f"phizer.{name}" for name in names})
    return [name for row in order for name in sorted(row)], order


def layer_of(module: str, rows: list[set[str]]) -> int | None:
    parts = module.split(".")
    name = ".".join(parts[:2])
    for index, row in enumerate(rows):
        if name in row:
            return index
    return None


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.startswith("phizer.")}


def test_every_package_is_in_the_code_map() -> None:
    names, _ = code_map_order()
    present = {f"phizer.{p.stem}" for p in PACKAGE.iterdir() if p.suffix == ".py" or p.is_dir()}
    present -= {"phizer.__init__", "phizer.__main__", "phizer.__pycache__"}
    assert present <= set(names), present - set(names)


def test_imports_only_go_down_the_code_map() -> None:
    _, rows = code_map_order()
    upward = []
    for path in PACKAGE.rglob("*.py"):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        own = layer_of(module, rows)
        if own is None:
            continue
        for imported in imports_of(path):
            theirs = layer_of(imported, rows)
            same_package = imported.split(".")[:2] == module.split(".")[:2]
            if theirs is not None and theirs < own and not same_package:
                upward.append(f"{module} imports {imported}")
    assert not upward, upward
