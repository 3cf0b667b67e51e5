"""Reading the INI file the way the 2012 phizer's ConfigParser did.

It merged a section given twice, let the last of an option given twice
win, applied ``[DEFAULT]`` to every section and expanded ``%(name)s``;
``%`` elsewhere stayed as written. The Python 3 parser does all that with
``strict=False`` and ``LegacyInterpolation``; ``layout`` finds what it
merges silently, so each such line gets a warning.
"""

from __future__ import annotations

import configparser
import re
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field

# As Python 2's ConfigParser: nested references, at most this deep.
MAX_DEPTH = 10
_REFERENCE = re.compile(r"%\(([^)]*)\)s")


class LegacyInterpolation(configparser.Interpolation):
    """``%(name)s`` is the option ``name`` of the same section or of
    ``[DEFAULT]``; a value without ``%(`` is kept as written (``25%``)."""

    def before_get(
        self,
        parser: MutableMapping[str, Mapping[str, str]],
        section: str,
        option: str,
        value: str,
        defaults: Mapping[str, str],
    ) -> str:
        raw = value
        for _ in range(MAX_DEPTH):
            if "%(" not in value:
                return value
            # Names are looked up as written in the file: lower case.
            value = _REFERENCE.sub(lambda m: f"%({m[1].lower()})s", value)
            try:
                value = value % defaults
            except KeyError as err:
                raise configparser.InterpolationMissingOptionError(
                    option, section, raw, str(err.args[0])
                ) from None
            except (ValueError, TypeError):
                raise configparser.InterpolationSyntaxError(
                    option, section, f"'%' must be written '%%' next to %(name)s in {raw!r}"
                ) from None
        if "%(" in value:
            raise configparser.InterpolationDepthError(option, section, raw)
        return value


def new_parser() -> configparser.ConfigParser:
    return configparser.ConfigParser(interpolation=LegacyInterpolation(), strict=False)


@dataclass
class Layout:
    """What the file holds, section by section, before any merging."""

    # Options written in each section (lower case), over all its copies.
    own: dict[str, set[str]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def own_options(self, section: str) -> set[str]:
        return self.own.get(section, set())


def layout(text: str, default_section: str = configparser.DEFAULTSECT) -> Layout:
    """Sections and options as the file writes them, and a warning for each
    section or option given again (line numbers count from 1)."""
    result = Layout()
    first_section: dict[str, int] = {}
    first_option: dict[tuple[str, str], int] = {}
    section: str | None = None
    in_value = False
    option_indent = 0
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if not stripped or stripped[0] in "#;":
            continue
        if in_value and indent > option_indent:
            continue  # a continuation line of a value
        in_value = False
        header = configparser.ConfigParser.SECTCRE.match(stripped)
        if header:
            section = header["header"]
            if section in first_section:
                result.warnings.append(
                    f"[{section}] is given again on line {number} (first on line "
                    f"{first_section[section]}): merged into one section, as the 2012 phizer did"
                )
            else:
                first_section[section] = number
            result.own.setdefault(section, set())
            continue
        match = configparser.ConfigParser.OPTCRE.match(stripped)
        if section is None or not match:
            continue  # the parser itself refuses the file
        name = match["option"].strip().lower()
        key = (section, name)
        if key in first_option:
            result.warnings.append(
                f"[{section}] {name} is given again on line {number} (first on line "
                f"{first_option[key]}): the last value wins, as in the 2012 phizer"
            )
        else:
            first_option[key] = number
        result.own[section].add(name)
        in_value, option_indent = True, indent
    if result.own.get(default_section):
        names = ", ".join(sorted(result.own[default_section]))
        result.warnings.append(
            f"[{default_section}] applies its options ({names}) to every section, as in the "
            "2012 phizer; write them in the sections that use them instead"
        )
    return result
