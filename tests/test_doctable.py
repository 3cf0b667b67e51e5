"""The README's option tables agree with the declarations (phizer/config/doctable.py)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from phizer.config import doctable
from phizer.config.options import PROPERTIES

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.mark.parametrize("heading", list(doctable.SECTIONS))
def test_readme_table_matches_the_declarations(heading):
    in_readme = doctable.tables_in(README.read_text(encoding="utf-8"))[heading]
    expected = doctable.table(doctable.SECTIONS[heading])
    assert in_readme == expected, (
        f"README.md {heading} differs from phizer/config/options.py: "
        "run python -m phizer.config.doctable README.md"
    )


def test_every_option_has_one_row():
    for heading, declared in doctable.SECTIONS.items():
        rows = doctable.tables_in(README.read_text(encoding="utf-8"))[heading][2:]
        names = [row.split("|")[1].strip().strip("`") for row in rows]
        assert names == list(declared)


def test_a_changed_declaration_shows_as_a_difference():
    text = README.read_text(encoding="utf-8")
    changed = dict(PROPERTIES)
    changed["max_age"] = dataclasses.replace(PROPERTIES["max_age"], default=60)
    heading = "### `[properties]`"
    assert doctable.tables_in(text)[heading] != doctable.table(changed)


def test_rewrite_replaces_only_the_tables():
    text = """\
# t

### `[properties]`

Intro.

| option | default | meaning |
|---|---|---|
| `stale` | `1` | gone |

After.

### `[cache]`

| option | default | meaning |
|---|---|---|

End.
"""
    rewritten = doctable.rewrite(text)
    assert "stale" not in rewritten
    assert "Intro.\n\n| option |" in rewritten
    assert "|\n\nAfter." in rewritten
    assert rewritten.endswith("|\n\nEnd.\n")
    assert doctable.rewrite(rewritten) == rewritten
    tables = doctable.tables_in(rewritten)
    assert tables["### `[properties]`"] == doctable.table(PROPERTIES)


def test_main_writes_the_file(tmp_path):
    path = tmp_path / "README.md"
    path.write_text("### `[properties]`\n\n| x |\n\n### `[cache]`\n\n| y |\n", encoding="utf-8")
    assert doctable.main([str(path)]) == 0
    assert doctable.tables_in(path.read_text(encoding="utf-8"))["### `[properties]`"] == (
        doctable.table(PROPERTIES)
    )
