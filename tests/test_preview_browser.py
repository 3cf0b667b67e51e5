"""The preview page in a real browser: the real ``phizer`` command, headless chromium.

Chromium loads ``/_preview/<path>`` from the running front and dumps the
DOM after the page's script wrote each image's natural size into it. Every
image must have decoded (natural width > 0), and every number the page
shows must be the truth about the bytes it shows: the browser's decoded
size, Pillow's reading of the bytes, the byte count, and, for the served
column, the very bytes the front serves at ``/<size>/<path>``.
"""

from __future__ import annotations

import http.client
import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from tests.browser_support import dump_dom, require_chromium
from tests.e2e_support import OriginServer, PhizerProcess, serving_origin
from tests.icc_profiles import adobe_rgb_like
from tests.imagetools import encode, photo
from tests.ports import HOST
from tests.preview_support import PreviewDom, dims, first_number, read_image

SIZES = {
    "s100": "100x100",
    "sq80": "80 square",
    "p100": "100x150 portrait",
    "l150": "150x100 landscape",
    "w120": "120x90 format=webp quality=70",
}
FORMATS = {"JPEG": "JPEG", "WebP": "WEBP", "AVIF": "AVIF"}
ACCEPT = "image/avif,image/webp,*/*"


def rotated_photo() -> bytes:
    """Stored 300x200 with EXIF orientation 6 (upright 200x300), with an ICC profile."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(photo(300, 200), "JPEG", exif=exif.tobytes(), icc_profile=adobe_rgb_like())


def animated_gif() -> bytes:
    frames = [photo(90, 60).rotate(180 * k).quantize(64) for k in range(3)]
    frames[2] = frames[2].transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=80)
    return buffer.getvalue()


FILES = {
    "photos/rotated.jpg": rotated_photo(),
    "alpha.png": encode(photo(160, 120, "RGBA"), "PNG"),
    "anim.gif": animated_gif(),
}


@pytest.fixture(scope="module")
def chromium() -> str:
    return require_chromium()


@pytest.fixture(scope="module")
def phizer(tmp_path_factory: pytest.TempPathFactory, chromium: str) -> Iterator[PhizerProcess]:
    root = tmp_path_factory.mktemp("preview-browser")
    with serving_origin(root / "origin", FILES) as origin:
        process = _start(root, origin)
        try:
            yield process
        finally:
            process.stop()


def _start(root: Path, origin: OriginServer) -> PhizerProcess:
    properties = {"auto_format": "avif, webp", "animated": "true"}
    return PhizerProcess(root / "phizer", origin, sizes=SIZES, properties=properties).start()


def served_bytes(port: int, path: str) -> bytes:
    connection = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        connection.request("GET", path, headers={"Accept": ACCEPT})
        response = connection.getresponse()
        body = response.read()
        assert response.status == 200, (path, response.status, body[:200])
        return body
    finally:
        connection.close()


def load(chromium: str, phizer: PhizerProcess, target: str) -> PreviewDom:
    run = dump_dom(chromium, f"http://{HOST}:{phizer.port}/_preview/{target}")
    assert run.csp_violations() == []
    dom = PreviewDom(run.stdout)
    assert dom.sizes() == list(SIZES), run.stdout[:500]
    return dom


def check_images_decoded(dom: PreviewDom) -> None:
    assert dom.images
    for image in dom.images:
        width, height = image.get("data-natural-width"), image.get("data-natural-height")
        assert width and int(width) > 0 and height and int(height) > 0, image.get("alt")


def check_figures_tell_the_truth(dom: PreviewDom) -> None:
    for figure in dom.figures:
        where = f"{figure.size}/{figure.variant}"
        image_format, size = read_image(figure.data)
        natural = int(figure.img["data-natural-width"]), int(figure.img["data-natural-height"])
        assert figure.shown_dims == size == natural, where
        assert dims(figure.caption["decoded"]) == natural, where
        assert figure.shown_bytes == len(figure.data), where
        assert figure.caption["format"].upper().startswith(image_format), where
        if figure.variant in FORMATS:
            assert image_format == FORMATS[figure.variant], where
        cell = dom.cells[(figure.size, "bytes", figure.variant)]
        assert first_number(cell) == len(figure.data), where


def check_served_is_what_the_front_serves(
    dom: PreviewDom, phizer: PhizerProcess, path: str, crop: str = ""
) -> None:
    for code in SIZES:
        url = f"/{code}/{crop + '/' if crop else ''}{path}"
        assert dom.figure(code, "served").data == served_bytes(phizer.port, url), url


def test_every_size_and_format_of_a_rotated_photo(chromium: str, phizer: PhizerProcess) -> None:
    dom = load(chromium, phizer, "photos/rotated.jpg?format=all")
    check_images_decoded(dom)
    check_figures_tell_the_truth(dom)
    check_served_is_what_the_front_serves(dom, phizer, "photos/rotated.jpg")
    assert [f.variant for f in dom.figures if f.size == "s100"] == ["served", *FORMATS]
    assert dims(dom.facts["pixels"]) == (300, 200)
    assert "upright 200\u00d7300" in dom.facts["pixels"]
    assert dom.facts["orientation"].startswith("6:")
    assert dom.facts["icc"].startswith("Adobe RGB (1998) primaries, test copy")
    # Upright 200x300: s100 fits 67x100, the served image is AVIF.
    assert dom.figure("s100", "served").shown_dims == (66, 100)
    assert read_image(dom.figure("s100", "served").data)[0] == "AVIF"


def test_a_crop_with_alpha(chromium: str, phizer: PhizerProcess) -> None:
    crop = "100x100/900x900"
    dom = load(chromium, phizer, f"alpha.png?format=all&crop={crop}")
    check_images_decoded(dom)
    check_figures_tell_the_truth(dom)
    check_served_is_what_the_front_serves(dom, phizer, "alpha.png", crop)
    # Every size crops, so every size draws the kept region on the original.
    kept = [image for image in dom.images if "keeps" in image.get("alt", "")]
    assert len(kept) == len(SIZES)


def test_an_animation(chromium: str, phizer: PhizerProcess) -> None:
    dom = load(chromium, phizer, "anim.gif")
    check_images_decoded(dom)
    check_figures_tell_the_truth(dom)
    check_served_is_what_the_front_serves(dom, phizer, "anim.gif")
    assert (dom.facts["format"], dom.facts["frames"]) == ("GIF", "3")
    # animated = true: the served s100 is still an animation (WebP, what the browser accepts).
    with Image.open(io.BytesIO(dom.figure("s100", "served").data)) as served:
        assert (served.format, getattr(served, "n_frames", 1)) == ("WEBP", 3)
