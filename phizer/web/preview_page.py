"""The preview page as HTML: self-contained, every value escaped, one nonce.

Images are ``data:`` URIs of the very bytes the numbers describe, so what
the page shows and what it says cannot drift apart. Styles and the one
script carry the response's nonce, which the Content-Security-Policy
names; nothing else may run or load. Without JavaScript everything but
the browser's own reading of each image's size is there.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from html import escape
from urllib.parse import urlencode

from phizer import __version__
from phizer.imaging.geometry import Box
from phizer.web.preview_model import TIMES, Preview, SizePreview, Variant, geometry_text
from phizer.web.urls import ImageRequest

# Query values of the view switch and how the page names them.
VIEW_NAMES = {
    "served": "As served",
    "jpeg": "JPEG",
    "webp": "WebP",
    "avif": "AVIF",
    "all": "All side by side",
}
FORMAT_VIEWS = ("jpeg", "webp", "avif")
MISSING = "—"
# Larger images are described but not embedded (a size at max_dimension
# serves the original, which may be tens of megabytes).
INLINE_LIMIT = 8 * 1024 * 1024
# What a data: URI may name as its type; anything else is sent as bytes.
_IMAGE_TYPE = re.compile(r"^image/[a-z0-9.+-]{1,40}$")

_CSS = """
:root{color-scheme:light;--ink:#1d2327;--muted:#5f6b73;--line:#d9dee2;--accent:#0b63c5;
--card:#fff;--page:#f3f5f7;--keep:#e8590c}
*{box-sizing:border-box}
body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
color:var(--ink);background:var(--page)}
header,section.original,main,footer,p.note{max-width:1240px;margin:0 auto;padding:0 20px}
header{padding-top:18px}
h1{font-size:22px;margin:0 0 10px;word-break:break-all}
h2{font-size:17px;margin:0 0 10px}
code{font:13px/1.3 ui-monospace,SFMono-Regular,Menlo,monospace;background:#e9edf0;
padding:1px 5px;border-radius:4px}
nav.views{display:flex;flex-wrap:wrap;gap:6px;margin:8px 0}
nav.views a{padding:4px 12px;border:1px solid var(--line);border-radius:999px;
color:var(--accent);text-decoration:none;background:var(--card)}
nav.views a[aria-current]{background:var(--accent);color:#fff;border-color:var(--accent)}
form.crop{display:flex;gap:8px;align-items:center;margin:8px 0 14px;color:var(--muted)}
form.crop input[type=text]{font:inherit;padding:3px 8px;border:1px solid var(--line);
border-radius:6px;width:14em}
form.crop button{font:inherit;padding:3px 12px;border-radius:6px;border:1px solid var(--accent);
background:var(--card);color:var(--accent)}
section.original,article.size{background:var(--card);border:1px solid var(--line);
border-radius:10px;padding:16px;margin-bottom:16px}
section.original{display:flex;gap:20px;flex-wrap:wrap;align-items:flex-start}
section.original figure{margin:0;max-width:300px}
section.original img{max-width:100%;height:auto;display:block;border-radius:6px}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:4px 16px;margin:0}
dl.facts dt{color:var(--muted)}dl.facts dd{margin:0}
p.note{color:var(--muted);margin-bottom:12px}
main{display:grid;grid-template-columns:repeat(auto-fill,minmax(560px,1fr));gap:16px}
main article.size{margin:0}
main.view-all{grid-template-columns:1fr}
.geometry{color:var(--muted);font-weight:normal;font-size:14px;margin-left:6px}
.figures{display:flex;flex-wrap:wrap;gap:14px;align-items:flex-start}
figure{margin:0}
figure.variant img{display:block;max-width:100%;height:auto;
background:repeating-conic-gradient(#eee 0 25%,#fff 0 50%) 0 0/16px 16px;
border:1px solid var(--line)}
figure.variant{max-width:100%}
figcaption{font-size:13px;margin-top:6px}
figcaption dl{display:grid;grid-template-columns:max-content auto;gap:0 10px;margin:0}
figcaption dt{color:var(--muted)}figcaption dd{margin:0}
figcaption small{display:block;color:var(--muted)}
figcaption .label{font-weight:600;margin-bottom:2px}
.error{color:#b3261e}
figure.kept{width:220px}
figure.kept .frame{position:relative;line-height:0}
figure.kept img{width:100%;height:auto;border-radius:4px}
figure.kept .box{position:absolute;border:2px solid var(--keep);
box-shadow:0 0 0 9999px rgba(0,0,0,.25);border-radius:2px}
figure.kept .frame{overflow:hidden;border-radius:4px}
.table{overflow-x:auto}
table.formats{border-collapse:collapse;margin-top:12px;font-size:13px;width:100%}
table.formats th,table.formats td{border-top:1px solid var(--line);padding:4px 6px;
text-align:right;vertical-align:top}
table.formats small{color:var(--muted);display:block}
table.formats th:first-child,table.formats td:first-child{text-align:left;color:var(--muted)}
table.formats thead th{border-top:0}
table.formats a{color:var(--accent);text-decoration:none}
table.formats .least{color:#137333;font-weight:600}
footer{color:var(--muted);font-size:12px;padding-bottom:24px}
"""

# Each image's size as the browser decoded it: shown, and readable by tests.
_SCRIPT = """
addEventListener("load", () => {
  for (const img of document.images) {
    img.dataset.naturalWidth = img.naturalWidth;
    img.dataset.naturalHeight = img.naturalHeight;
    const out = img.closest("figure")?.querySelector(".decoded");
    if (out) out.textContent = img.naturalWidth
      ? img.naturalWidth + "\\u00d7" + img.naturalHeight : "failed";
  }
});
"""


def content_security_policy(nonce: str) -> str:
    """Nothing loads or runs but this response's own nonced style and script
    and its ``data:`` images; forms go back to this front only."""
    return (
        "default-src 'none'; img-src data:; "
        f"style-src 'nonce-{nonce}'; script-src 'nonce-{nonce}'; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )


def render_page(preview: Preview, nonce: str) -> str:
    boxes = "".join(
        _box_rule(index, size.kept) for index, size in enumerate(preview.sizes) if size.kept
    )
    title = escape(preview.path)
    parts = [
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>phizer preview: {title}</title>",
        f'<style nonce="{escape(nonce)}">{_CSS}{boxes}</style></head><body>',
        _header(preview),
        _original(preview),
        f'<p class="note">{escape(_served_note(preview.served_offers))}</p>',
        f'<main class="view-{escape(preview.view)}">',
        *(_size(preview, index, size) for index, size in enumerate(preview.sizes)),
        "</main>",
        f"<footer>phizer {escape(__version__)}</footer>",
        f'<script nonce="{escape(nonce)}">{_SCRIPT}</script>',
        "</body></html>\n",
    ]
    return "\n".join(parts)


# --- pieces ------------------------------------------------------------------------


def _header(preview: Preview) -> str:
    crop = preview.crop.to_segments() if preview.crop else ""
    links = []
    for view, name in VIEW_NAMES.items():
        current = ' aria-current="page"' if view == preview.view else ""
        href = escape(view_link(view, crop))
        links.append(f'<a href="{href}"{current}>{escape(name)}</a>')
    return (
        f"<header><h1>Preview of <code>{escape(preview.path)}</code></h1>"
        f'<nav class="views" aria-label="format">{"".join(links)}</nav>'
        '<form class="crop" method="get"><label>Crop '
        f'<input type="text" name="crop" value="{escape(crop)}" '
        'placeholder="tlxXtly/brxXbry" aria-label="crop points in thousandths"></label>'
        f'<input type="hidden" name="format" value="{escape(preview.view)}">'
        "<button>Preview</button> (thousandths of the width and height, e.g. 100x0/900x1000)"
        "</form></header>"
    )


def view_link(view: str, crop: str) -> str:
    """A link to this page in another view, keeping the crop."""
    query = {"format": view}
    if crop:
        query["crop"] = crop
    return "?" + urlencode(query, safe="/")


def _original(preview: Preview) -> str:
    facts = preview.facts
    pixels = f"{facts.width}{TIMES}{facts.height}"
    if facts.upright != (facts.width, facts.height):
        pixels += f" (upright {facts.upright[0]}{TIMES}{facts.upright[1]})"
    if facts.icc_bytes:
        icc = f"{facts.icc_description or 'unnamed'} ({facts.icc_bytes:,} B)"
    else:
        icc = "none"
    frames = MISSING if facts.frames is None else f"{facts.frames:,}"
    alpha = "with alpha" if facts.has_alpha else "no alpha"
    rows = [
        ("format", "Format", facts.image_format),
        ("pixels", "Pixels", pixels),
        ("bytes", "Bytes", bytes_text(facts.nbytes)),
        ("mode", "Mode", f"{facts.mode}, {alpha}"),
        ("icc", "ICC profile", icc),
        ("orientation", "EXIF orientation", f"{facts.orientation}: {facts.orientation_name}"),
        ("frames", "Frames", frames),
        ("cache", "Worker cache", preview.original_cache),
    ]
    facts_html = "".join(
        f'<dt>{escape(name)}</dt><dd data-fact="{key}">{escape(value)}</dd>'
        for key, name, value in rows
    )
    thumbnail = data_uri(preview.thumbnail_type, preview.thumbnail)
    return (
        '<section class="original"><figure>'
        f'<img src="{escape(thumbnail)}" alt="the original, upright" data-role="original">'
        f'</figure><div><h2>Original</h2><dl class="facts">{facts_html}</dl></div></section>'
    )


def _served_note(offers: tuple[str, ...]) -> str:
    if offers:
        names = ", ".join(_format_name(name) for name in offers)
        return (
            f"“As served” is what a browser that accepts {names} gets (auto_format); "
            "JPEG, WebP and AVIF are each size made in that format. Times are this "
            "page's own requests; a cache hit costs no resize."
        )
    return (
        "“As served” is what every client gets (auto_format = none: the source's "
        "format unless the size names one); JPEG, WebP and AVIF are each size made "
        "in that format. Times are this page's own requests; a cache hit costs no resize."
    )


def _size(preview: Preview, index: int, size: SizePreview) -> str:
    spec = size.spec
    shown = _shown_variants(preview.view, size)
    figures = [_figure(preview, size, variant) for variant in shown]
    if size.kept is not None:
        figures.append(_kept_figure(preview, index, size))
    note = ""
    if size.unresized:
        note = (
            '<p class="note">A side is at or above max_dimension: the original is served '
            "at its own scale" + (" (cropped)" if preview.crop else ", untouched") + ".</p>"
        )
    code = escape(spec.code)
    return (
        f'<article class="size" id="size-{code}" data-size="{code}">'
        f'<h2><code>{code}</code><span class="geometry">{escape(geometry_text(spec))}</span></h2>'
        f'{note}<div class="figures">{"".join(figures)}</div>'
        f"{_formats_table(preview, size)}</article>"
    )


def _shown_variants(view: str, size: SizePreview) -> list[Variant]:
    if view == "all":
        return [size.served, *size.formats]
    if view in FORMAT_VIEWS and size.formats:
        return [size.formats[FORMAT_VIEWS.index(view)]]
    return [size.served]


def _figure(preview: Preview, size: SizePreview, variant: Variant) -> str:
    code = escape(size.spec.code)
    label = escape(_variant_title(variant))
    attrs = f'data-size="{code}" data-variant="{escape(variant.label)}"'
    if variant.error is not None or not variant.data:
        message = escape(variant.error or "no image")
        return (
            f'<figure class="variant" {attrs}><figcaption><div class="label">{label}</div>'
            f'<div class="error">{message}</div></figcaption></figure>'
        )
    link = escape(_image_url(size, preview))
    if variant.nbytes > INLINE_LIMIT:
        picture = f'<p class="note">Larger than {_binary(INLINE_LIMIT)}: not shown here.'
        if variant.label == "served":
            picture += f' <a href="{link}">Open it</a>.'
        picture += "</p>"
    else:
        image = escape(data_uri(variant.content_type, variant.data))
        alt = escape(f"{size.spec.code}: {_variant_title(variant)}")
        picture = f'<img src="{image}" alt="{alt}">'
        if variant.label == "served":
            picture = f'<a href="{link}">{picture}</a>'
    rows = [
        ("dims", "Pixels", escape(f"{variant.width}{TIMES}{variant.height}")),
        ("format", "Format", escape(f"{variant.format_name} ({variant.content_type})")),
        ("bytes", "Bytes", escape(bytes_text(variant.nbytes))),
        ("quality", "Quality", MISSING if variant.quality is None else str(variant.quality)),
        ("time", "Time", time_html(variant)),
        ("decoded", "In this browser", MISSING),
    ]
    caption = "".join(
        f'<dt>{escape(name)}</dt><dd class="{key}">{value}</dd>' for key, name, value in rows
    )
    return (
        f'<figure class="variant" {attrs}>{picture}<figcaption>'
        f'<div class="label">{label}</div><dl>{caption}</dl></figcaption></figure>'
    )


def _kept_figure(preview: Preview, index: int, size: SizePreview) -> str:
    assert size.kept is not None
    _, _, width, height = size.kept
    image = escape(data_uri(preview.thumbnail_type, preview.thumbnail))
    alt = escape(f"the region of the original that {size.spec.code} keeps")
    return (
        f'<figure class="kept" data-size="{escape(size.spec.code)}" data-variant="kept">'
        f'<div class="frame"><img src="{image}" alt="{alt}">'
        f'<div class="box" id="kept-{index}"></div></div>'
        f"<figcaption>Kept: {width:.1f}% {TIMES} {height:.1f}% of the original</figcaption>"
        "</figure>"
    )


def _box_rule(index: int, box: Box | None) -> str:
    assert box is not None
    left, top, width, height = box
    position = f"left:{left:.3f}%;top:{top:.3f}%;width:{width:.3f}%;height:{height:.3f}%"
    return f"#kept-{index}{{{position}}}"


def _formats_table(preview: Preview, size: SizePreview) -> str:
    variants = [size.served, *size.formats]
    crop = preview.crop.to_segments() if preview.crop else ""
    heads = []
    for variant in variants:
        view = "served" if variant.label == "served" else variant.label.lower()
        title = escape(_variant_title(variant))
        heads.append(f'<th scope="col"><a href="{escape(view_link(view, crop))}">{title}</a></th>')
    least = min((v.nbytes for v in variants if v.error is None and v.data), default=None)
    rows = [
        ("bytes", "Bytes", lambda v: f"{v.nbytes:,} B"),
        ("dims", "Pixels", lambda v: f"{v.width}{TIMES}{v.height}"),
        ("quality", "Quality", lambda v: MISSING if v.quality is None else str(v.quality)),
    ]
    body = []
    for key, name, value in rows:
        cells = []
        for variant in variants:
            attrs = f'class="{key}" data-variant="{escape(variant.label)}"'
            if variant.error is not None or not variant.data:
                text = (variant.error or MISSING) if key == "bytes" else MISSING
                cells.append(f'<td {attrs}><span class="error">{escape(text)}</span></td>')
                continue
            if key == "bytes" and variant.nbytes == least and len(variants) > 1:
                attrs = f'class="{key} least" data-variant="{escape(variant.label)}"'
            cells.append(f"<td {attrs}>{escape(value(variant))}</td>")
        body.append(f'<tr><th scope="row">{name}</th>{"".join(cells)}</tr>')
    times = "".join(_time_cell(variant) for variant in variants)
    body.append(f'<tr><th scope="row">Time</th>{times}</tr>')
    return (
        f'<div class="table"><table class="formats" data-size="{escape(size.spec.code)}">'
        f"<thead><tr><th></th>{''.join(heads)}</tr></thead><tbody>{''.join(body)}</tbody>"
        "</table></div>"
    )


def _time_cell(variant: Variant) -> str:
    return f'<td class="time" data-variant="{escape(variant.label)}">{time_html(variant)}</td>'


def time_html(variant: Variant) -> str:
    """The request's time, and below it how it was answered (cache, resize time)."""
    if variant.total_ms is None:
        return MISSING
    details = _time_details(variant)
    small = f"<small>{escape(details)}</small>" if details else ""
    return f"{variant.total_ms:.1f} ms{small}"


# --- text --------------------------------------------------------------------------


def _variant_title(variant: Variant) -> str:
    if variant.label == "served":
        return f"As served ({variant.format_name})" if variant.image_format else "As served"
    return variant.label


def _format_name(name: str) -> str:
    return {"WEBP": "WebP", "AVIF": "AVIF", "JPEG": "JPEG"}.get(name, name)


def _image_url(size: SizePreview, preview: Preview) -> str:
    """The front's own URL for this size of this image."""
    return ImageRequest(size.spec.code, preview.crop, preview.path).key


def bytes_text(count: int) -> str:
    """Exact bytes first (what tests and people compare), then a rounded size."""
    if count < 1024:
        return f"{count:,} B"
    return f"{count:,} B ({_binary(count)})"


def _binary(count: int) -> str:
    value = float(count)
    for unit in ("KiB", "MiB", "GiB"):
        value /= 1024
        if value < 1024:
            return f"{value:.1f} {unit}"
    return f"{value:.1f} TiB"


def _time_details(variant: Variant) -> str:
    made = f"made in {variant.made_ms:.1f} ms" if variant.made_ms is not None else ""
    return _join([variant.cache or "", made])


def _join(words: Iterable[str]) -> str:
    return ", ".join(word for word in words if word)


def data_uri(content_type: str, data: bytes) -> str:
    if not _IMAGE_TYPE.match(content_type):
        content_type = "application/octet-stream"
    return f"data:{content_type};base64,{base64.b64encode(data).decode('ascii')}"
