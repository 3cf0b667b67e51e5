"""End-to-end: output formats and Accept negotiation through the real ``phizer`` command.

One instance negotiates (``auto_format = avif, webp``, animations kept),
another runs with negotiation off; both share one origin. Renders are
counted from the workers' resize histograms in ``/_metrics``.
"""

from __future__ import annotations

import http.client
import io
import random
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from tests.e2e_support import HOST, OriginServer, PhizerProcess, Response, serving_origin
from tests.imagetools import encode, photo, similar
from tests.metrics_support import samples

NUM_WORKERS = 2
SIZES = {
    "s100": "100x100",
    "png100": "100x100 format=png",
}
BOTH = "image/avif,image/webp,*/*"
WEBP_ONLY = "image/webp,*/*"
SOURCE = photo(800, 600)
FRAMES = 4


def animated_gif(width: int, height: int, frames: int) -> bytes:
    """A GIF whose frames differ (a moving square), so none is dropped as a duplicate."""
    images = []
    for index in range(frames):
        frame = Image.new("RGB", (width, height), (40, 80, 160))
        left = index * width // frames
        ImageDraw.Draw(frame).rectangle((left, 10, left + 30, 40), fill=(250, 200, 0))
        images.append(frame)
    buffer = io.BytesIO()
    images[0].save(buffer, "GIF", save_all=True, append_images=images[1:], duration=80, loop=0)
    return buffer.getvalue()


ORIGINALS = {
    "photo.jpg": encode(SOURCE, "JPEG", quality=95),
    "anim.gif": animated_gif(200, 150, FRAMES),
    "burst.jpg": encode(photo(640, 480), "JPEG", quality=95),
}


@pytest.fixture(scope="module")
def origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OriginServer]:
    with serving_origin(tmp_path_factory.mktemp("origin"), ORIGINALS) as server:
        yield server


def _start(workdir: Path, origin: OriginServer, **properties: object) -> Iterator[PhizerProcess]:
    process = PhizerProcess(
        workdir, origin, sizes=SIZES, properties=properties, num_workers=NUM_WORKERS
    )
    try:
        yield process.start()
    finally:
        process.stop()


@pytest.fixture(scope="module")
def negotiating(
    tmp_path_factory: pytest.TempPathFactory, origin: OriginServer
) -> Iterator[PhizerProcess]:
    yield from _start(
        tmp_path_factory.mktemp("negotiating"), origin, auto_format="avif, webp", animated="true"
    )


@pytest.fixture(scope="module")
def plain(
    tmp_path_factory: pytest.TempPathFactory, origin: OriginServer
) -> Iterator[PhizerProcess]:
    yield from _start(tmp_path_factory.mktemp("plain"), origin)


def ask(process: PhizerProcess, path: str, accept: str | None, **headers: str) -> Response:
    """GET ``path`` with exactly the given headers (no Accept when ``accept`` is None)."""
    sent: Mapping[str, str] = {**headers, **({"Accept": accept} if accept is not None else {})}
    connection = http.client.HTTPConnection(HOST, process.port, timeout=15)
    try:
        connection.request("GET", path, headers=dict(sent))
        answer = connection.getresponse()
        return Response(answer.status, answer.headers, answer.read())
    finally:
        connection.close()


def opened(response: Response) -> Image.Image:
    """The image, checked against its Content-Type."""
    assert response.status == 200, (response.status, response.body[:200])
    image = Image.open(io.BytesIO(response.body))
    image.load()
    assert response.header("Content-Type") == f"image/{image.format.lower()}"
    return image


def renders(process: PhizerProcess) -> float:
    """Images the workers have rendered so far (their resize histograms)."""
    response = process.get("/_metrics")
    assert response.status == 200, response.body[:200]
    found = samples(response.body.decode("utf-8"))
    return sum(
        value
        for (name, labels), value in found.items()
        if name == "phizer_resize_duration_seconds_count" and dict(labels)["worker"] != "front"
    )


# --------------------------------------------------------------------------
# Negotiation on


@pytest.mark.parametrize(
    ("accept", "fmt"),
    [
        (BOTH, "AVIF"),
        ("image/webp,image/avif,*/*", "AVIF"),  # the configured order decides
        (WEBP_ONLY, "WEBP"),
        ("image/avif;q=0, image/webp", "WEBP"),
        ("image/avif", "AVIF"),
        ("*/*", "JPEG"),
        ("image/*,*/*;q=0.8", "JPEG"),
        (None, "JPEG"),
    ],
)
def test_accept_picks_the_format(negotiating: PhizerProcess, accept: str | None, fmt: str) -> None:
    response = ask(negotiating, "/s100/photo.jpg", accept)
    image = opened(response)
    assert image.format == fmt
    assert image.size == (100, 75)
    assert similar(image, SOURCE.resize((100, 75), Image.Resampling.LANCZOS))
    assert response.header("Vary") == "Accept"


def test_each_variant_has_its_own_etag_and_304(negotiating: PhizerProcess) -> None:
    path = "/s100/photo.jpg"
    tags = {accept: ask(negotiating, path, accept).header("ETag") for accept in (BOTH, WEBP_ONLY)}
    tags["*/*"] = ask(negotiating, path, "*/*").header("ETag")
    assert len(set(tags.values())) == 3, tags
    for accept, tag in tags.items():
        assert tag is not None
        not_modified = ask(negotiating, path, accept, **{"If-None-Match": tag})
        assert not_modified.status == 304, accept
        assert not_modified.body == b""
        assert not_modified.header("Vary") == "Accept"
        assert not_modified.header("ETag") == tag
    # the AVIF variant's tag does not validate the WebP variant
    other = ask(negotiating, path, WEBP_ONLY, **{"If-None-Match": tags[BOTH]})
    assert opened(other).format == "WEBP"


@pytest.mark.parametrize("accept", [BOTH, WEBP_ONLY, "*/*", None])
def test_size_format_wins_over_accept(negotiating: PhizerProcess, accept: str | None) -> None:
    response = ask(negotiating, "/png100/photo.jpg", accept)
    image = opened(response)
    assert (image.format, image.size) == ("PNG", (100, 75))
    assert response.header("Vary") == "Accept"


def _spellings(count: int, seed: int) -> list[str]:
    """``count`` distinct Accept headers that all accept AVIF and WebP explicitly."""
    rng = random.Random(seed)
    extras = ["image/apng", "image/svg+xml", "image/*", "*/*", "text/html", "image/png"]
    headers: set[str] = set()
    while len(headers) < count:
        items = [
            f"image/avif;q=0.{rng.randint(1, 9)}",
            rng.choice(["IMAGE/WEBP", "image/webp", "Image/WebP;q=1"]),
            *rng.sample(extras, rng.randint(0, len(extras))),
        ]
        rng.shuffle(items)
        headers.add(rng.choice([",", ", ", " ,\t"]).join(items))
    return sorted(headers)


def test_a_burst_of_accept_variants_renders_once(negotiating: PhizerProcess) -> None:
    spellings = _spellings(50, seed=7)
    assert len(set(spellings)) == 50
    before = renders(negotiating)
    with ThreadPoolExecutor(max_workers=16) as pool:
        responses = list(
            pool.map(lambda accept: ask(negotiating, "/s100/burst.jpg", accept), spellings)
        )
    assert {r.status for r in responses} == {200}
    assert {r.header("Content-Type") for r in responses} == {"image/avif"}
    assert len({r.body for r in responses}) == 1
    assert renders(negotiating) - before == 1
    # another offer set is another variant: exactly one more render
    with ThreadPoolExecutor(max_workers=8) as pool:
        webp = list(
            pool.map(
                lambda n: ask(negotiating, "/s100/burst.jpg", f"image/webp;q=0.{n}, */*"),
                range(1, 10),
            )
        )
    assert {r.header("Content-Type") for r in webp} == {"image/webp"}
    assert renders(negotiating) - before == 2


@pytest.mark.parametrize("accept", [BOTH, WEBP_ONLY, None])
def test_animation_is_never_flattened(negotiating: PhizerProcess, accept: str | None) -> None:
    response = ask(negotiating, "/s100/anim.gif", accept)
    image = opened(response)
    assert image.size == (100, 75)
    assert getattr(image, "n_frames", 1) > 1, (image.format, accept)
    assert image.format in ("GIF", "WEBP")  # formats that animate
    assert response.header("Vary") == "Accept"
    if accept is None:
        assert image.format == "GIF"


# --------------------------------------------------------------------------
# Negotiation off


@pytest.mark.parametrize("accept", [BOTH, WEBP_ONLY, "image/avif", None])
def test_off_keeps_the_source_format_without_vary(plain: PhizerProcess, accept: str | None) -> None:
    response = ask(plain, "/s100/photo.jpg", accept)
    image = opened(response)
    assert (image.format, image.size) == ("JPEG", (100, 75))
    assert response.header("Vary") is None
    etag = response.header("ETag")
    assert etag is not None
    not_modified = ask(plain, "/s100/photo.jpg", accept, **{"If-None-Match": etag})
    assert not_modified.status == 304
    assert not_modified.header("Vary") is None
