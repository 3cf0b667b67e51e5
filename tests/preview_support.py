"""Reading the preview page back: its figures, tables, facts, styles and scripts.

The HTTP tests read the page as the front sends it; the browser test reads
the DOM that chromium dumps after the page's script ran. Both go through
``PreviewDom``, so both check the same things: what each figure says next
to the bytes of its ``data:`` image.
"""

from __future__ import annotations

import base64
import io
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

from PIL import Image

_NUMBER = re.compile(r"[\d,]+")
_DIMS = re.compile(r"^(\d+)\u00d7(\d+)")


@dataclass
class Figure:
    size: str
    variant: str
    img: dict[str, str] = field(default_factory=dict)
    caption: dict[str, str] = field(default_factory=dict)

    @property
    def data(self) -> bytes:
        return data_uri_bytes(self.img["src"])

    @property
    def shown_bytes(self) -> int:
        return first_number(self.caption["bytes"])

    @property
    def shown_dims(self) -> tuple[int, int]:
        return dims(self.caption["dims"])


class PreviewDom(HTMLParser):
    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.figures: list[Figure] = []
        self.cells: dict[tuple[str, str, str], str] = {}  # (size, row, variant) -> text
        self.facts: dict[str, str] = {}
        self.images: list[dict[str, str]] = []
        self.scripts: list[dict[str, str]] = []
        self.styles: list[dict[str, str]] = []
        self.attribute_names: set[str] = set()
        self.texts: list[str] = []
        self._figure: Figure | None = None
        self._table: str | None = None
        self._capture: tuple[str, ...] | None = None
        self._captured: list[str] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        self.attribute_names.update(attributes)
        classes = attributes.get("class", "").split()
        if tag == "figure" and "variant" in classes:
            self._figure = Figure(attributes["data-size"], attributes["data-variant"])
            self.figures.append(self._figure)
        elif tag == "img":
            self.images.append(attributes)
            if self._figure is not None:
                self._figure.img = attributes
        elif tag == "dd" and self._figure is not None and classes:
            self._start_capture("caption", classes[0])
        elif tag == "dd" and "data-fact" in attributes:
            self._start_capture("fact", attributes["data-fact"])
        elif tag == "table" and "formats" in classes:
            self._table = attributes["data-size"]
        elif tag == "td" and self._table is not None:
            self._start_capture("cell", self._table, classes[0], attributes["data-variant"])
        elif tag == "script":
            self.scripts.append(attributes)
        elif tag == "style":
            self.styles.append(attributes)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("dd", "td") and self._capture is not None:
            text = "".join(self._captured).strip()
            kind, *key = self._capture
            if kind == "caption" and self._figure is not None:
                self._figure.caption[key[0]] = text
            elif kind == "fact":
                self.facts[key[0]] = text
            elif kind == "cell":
                self.cells[(key[0], key[1], key[2])] = text
            self._capture = None
        elif tag == "figure":
            self._figure = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        self.texts.append(data)
        if self._capture is not None:
            self._captured.append(data)

    def _start_capture(self, *key: str) -> None:
        self._capture = key
        self._captured = []

    def figure(self, size: str, variant: str) -> Figure:
        found = [f for f in self.figures if f.size == size and f.variant == variant]
        assert len(found) == 1, f"{len(found)} figures for {size}/{variant}"
        return found[0]

    def sizes(self) -> list[str]:
        seen: list[str] = []
        for figure in self.figures:
            if figure.size not in seen:
                seen.append(figure.size)
        return seen


def data_uri_bytes(src: str) -> bytes:
    head, _, payload = src.partition(",")
    assert head.startswith("data:") and head.endswith(";base64"), head[:60]
    return base64.b64decode(payload, validate=True)


def read_image(data: bytes) -> tuple[str, tuple[int, int]]:
    """Pillow's format and size of ``data``, from its header."""
    with Image.open(io.BytesIO(data)) as image:
        return image.format or "", image.size


def first_number(text: str) -> int:
    match = _NUMBER.search(text)
    assert match is not None, text
    return int(match.group().replace(",", ""))


def dims(text: str) -> tuple[int, int]:
    match = _DIMS.match(text)
    assert match is not None, text
    return int(match.group(1)), int(match.group(2))
