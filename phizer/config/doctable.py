"""The README's option tables, generated from the declarations.

``python -m phizer.config.doctable README.md`` rewrites the tables under
"### `[properties]`" and "### `[cache]`" in place; the tests fail while
the README and the declarations differ.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence

from phizer.config.options import CACHE, PROPERTIES, Option

HEADER = ("| option | default | meaning |", "|---|---|---|")
# README heading -> the options its table lists.
SECTIONS: Mapping[str, Mapping[str, Option]] = {
    "### `[properties]`": PROPERTIES,
    "### `[cache]`": CACHE,
}


def table(declared: Mapping[str, Option]) -> list[str]:
    return [*HEADER, *(_row(declaration) for declaration in declared.values())]


def _row(declaration: Option) -> str:
    meaning = declaration.help
    limits = declaration.range_text()
    if limits is not None:
        meaning += f"; {limits}"
    return f"| `{declaration.name}` | {declaration.doc_default()} | {meaning} |"


def find_table(lines: Sequence[str], heading: str) -> tuple[int, int]:
    """Start and end (exclusive) of the first table after ``heading``;
    ``ValueError`` when the heading or its table is missing."""
    start = next(i for i, line in enumerate(lines) if line.startswith(heading))
    first = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("|"))
    last = first
    while last < len(lines) and lines[last].startswith("|"):
        last += 1
    return first, last


def tables_in(text: str) -> dict[str, list[str]]:
    """Each heading's table as the README has it."""
    lines = text.splitlines()
    found = {}
    for heading in SECTIONS:
        first, last = find_table(lines, heading)
        found[heading] = lines[first:last]
    return found


def rewrite(text: str) -> str:
    lines = text.splitlines()
    for heading, declared in SECTIONS.items():
        first, last = find_table(lines, heading)
        lines[first:last] = table(declared)
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m phizer.config.doctable README.md", file=sys.stderr)
        return 2
    with open(argv[0], encoding="utf-8") as handle:
        text = handle.read()
    updated = rewrite(text)
    if updated != text:
        with open(argv[0], "w", encoding="utf-8") as handle:
            handle.write(updated)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
