"""The decoded cache: an original decoded once, every size made from it or its levels."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterable
from unittest import mock

import pytest
from PIL import Image
from tornado.testing import gen_test
from tornado.web import Application

import phizer.web.worker as worker_module
from phizer.cache.lru import ENTRY_OVERHEAD
from phizer.config.sizes import SizeSpec, parse_size_spec
from phizer.imaging.decoded import DecodedOriginal, decode_once
from phizer.imaging.geometry import (
    Crop,
    ResizePlan,
    has_headroom,
    level_sizes,
    pick_level,
    plan_resize,
    working_size,
)
from phizer.imaging.pipeline import OutputOptions, Rendered, plan_for, render, render_from
from phizer.imaging.source import open_original
from tests.http_support import (
    PoolTestCase,
    ServerPool,
    StubServer,
    count_requests,
    http_origin,
    make_config,
    url,
)
from tests.imagetools import decode, encode, photo, ssim


def cost(key: str, nbytes: int) -> int:
    return nbytes + len(key) + ENTRY_OVERHEAD


SIZES = {
    "t96": "96 square",
    "s220": "220x220",
    "p200": "200x300 portrait",
    "m640": "640x640",
    "huge": "4000x4000",
}
SPECS = {code: parse_size_spec(code, raw)[0] for code, raw in SIZES.items()}
OPTIONS = OutputOptions(image_quality=90)
MAX_DIMENSION = 3000


def _source(width: int = 2400, height: int = 1600) -> Image.Image:
    """Photo-like: gradients, hard edges and fine noise, so resampling shows."""
    base = photo(width, height)
    noise = Image.effect_noise((width, height), 40).convert("RGB")
    return Image.blend(base, noise, 0.25)


# Large enough that DCT scaling applies at the working size (1280 wide).
JPEG = encode(_source(3600, 2400), "JPEG", quality=92)
FULL = (3600, 2400)
AS_PNG = {code: parse_size_spec(code, raw + " format=png")[0] for code, raw in SIZES.items()}


def decode_original(
    data: bytes, specs: Iterable[SizeSpec], options: OutputOptions, max_dimension: int
) -> DecodedOriginal | None:
    """The worker's decode-once step; None for an animation served animated."""
    fresh = open_original(data, options.animated, options.max_frames, not options.strip_metadata)
    if fresh.facts.frames > 1:
        return None
    return decode_once(fresh, specs, max_dimension)


def render_decoded(
    decoded: DecodedOriginal, spec: SizeSpec, crop: Crop | None, options: OutputOptions
) -> Rendered | None:
    """The image made from ``decoded``; None when it holds too few pixels for it."""
    plan = plan_for(decoded.full_size, spec, crop, MAX_DIMENSION)
    if not decoded.can_make(plan):
        return None
    return render_from(decoded, plan, spec, options)


# --- geometry -------------------------------------------------------------------


def test_working_size_leaves_twice_the_largest_output() -> None:
    width, height = working_size(2400, 1600, SPECS.values(), MAX_DIMENSION)
    # m640 fits 2400x1600 into 640x427: twice that is 1280 wide.
    assert (width, height) == (1280, 854)
    for spec in SPECS.values():
        if spec.code != "huge":
            assert has_headroom(plan_resize(2400, 1600, spec), (2400, 1600), (width, height))


def test_working_size_is_never_above_the_source() -> None:
    assert working_size(500, 400, SPECS.values(), MAX_DIMENSION) == (500, 400)


def test_sizes_at_max_dimension_do_not_widen_the_working_size() -> None:
    only_huge = [SPECS["huge"], SPECS["t96"]]
    width, _ = working_size(2400, 1600, only_huge, MAX_DIMENSION)
    assert width < 400


def test_a_tight_crop_has_no_headroom_at_the_working_size() -> None:
    plan = plan_resize(2400, 1600, SPECS["m640"], Crop(0, 0, 200, 200))
    assert not has_headroom(plan, (2400, 1600), (1280, 854))
    assert has_headroom(plan, (2400, 1600), (2400, 1600))


# --- imaging ----------------------------------------------------------------------


def test_pick_level_takes_the_exact_output_or_the_smallest_with_headroom() -> None:
    full = (2400, 1600)
    levels = [(1280, 854), (640, 426), (220, 146)]
    assert pick_level(levels, plan_resize(*full, SPECS["m640"]), full) == 1  # exact
    assert pick_level(levels, plan_resize(*full, SPECS["s220"]), full) == 2  # exact
    # 96 square needs 192 source pixels: the 640 level has 426.
    assert pick_level(levels, plan_resize(*full, SPECS["t96"]), full) == 1
    # 200x300 portrait needs 600 rows: only the working-size decode has them.
    assert pick_level(levels, plan_resize(*full, SPECS["p200"]), full) == 0
    assert pick_level(levels[1:], plan_resize(*full, SPECS["p200"]), full) is None


def test_decoded_original_is_small_and_upright() -> None:
    decoded = decode_original(JPEG, SPECS.values(), OPTIONS, MAX_DIMENSION)
    assert decoded is not None
    assert decoded.full_size == FULL
    # DCT scaling to the smallest scale that keeps the working size (1280
    # wide for m640): 3600 x 3/8.
    working = working_size(*FULL, SPECS.values(), MAX_DIMENSION)
    assert decoded.base.size == (1350, 900)
    assert working[0] <= decoded.base.width < 2 * working[0]
    assert decoded.levels == {}
    # Counted as Pillow holds it: 4 bytes per RGB pixel.
    assert decoded.nbytes == 1350 * 900 * 4


def test_levels_are_made_when_asked_for_and_kept() -> None:
    decoded = decode_original(JPEG, SPECS.values(), OPTIONS, MAX_DIMENSION)
    assert decoded is not None
    first = render_decoded(decoded, SPECS["m640"], None, OPTIONS)
    assert list(decoded.levels) == [(640, 426)]
    assert decoded.nbytes == (1350 * 900 + 640 * 426) * 4
    # s220 (220x146) is made from the 640 level, which has 2x headroom.
    sources = []
    original_source_for = decoded.source_for

    def spy(plan):
        found = original_source_for(plan)
        sources.append(found.size)
        return found

    with mock.patch.object(decoded, "source_for", side_effect=spy):
        assert render_decoded(decoded, SPECS["s220"], None, OPTIONS) is not None
    assert set(sources) == {(640, 426)}
    assert list(decoded.levels) == [(640, 426), (220, 146)]
    # A kept level is encoded as it is: a repeat gives the same bytes.
    assert render_decoded(decoded, SPECS["m640"], None, OPTIONS) == first
    # Crops are no level: t96 (square) is made from the 640 level, nothing kept.
    assert render_decoded(decoded, SPECS["t96"], None, OPTIONS) is not None
    assert list(decoded.levels) == [(640, 426), (220, 146)]


def test_a_level_is_made_through_the_next_larger_configured_size() -> None:
    decoded = decode_original(JPEG, SPECS.values(), OPTIONS, MAX_DIMENSION)
    assert decoded is not None
    assert decoded.planned == ((640, 426), (220, 146))
    # Asked first, s220 is made from m640's level, which is made (and kept) first.
    assert render_decoded(decoded, SPECS["s220"], None, OPTIONS) is not None
    assert list(decoded.levels) == [(640, 426), (220, 146)]


def _plans(width: int, height: int, codes: Iterable[str]) -> list[ResizePlan]:
    return [plan_resize(width, height, SPECS[code]) for code in codes]


def test_level_sizes_are_the_whole_image_outputs_largest_first() -> None:
    # t96 (square) and p200 (portrait, cropped) take part of the image: no level.
    codes = ("t96", "s220", "p200", "m640", "s220")
    assert level_sizes(_plans(2400, 1600, codes), (2400, 1600)) == ((640, 426), (220, 146))
    # Sizes the source already fits in (or grows to) are no level.
    assert level_sizes(_plans(500, 400, codes), (500, 400)) == ((220, 176),)
    assert level_sizes(_plans(640, 426, ["m640"]), (640, 426)) == ()


def test_the_decode_is_let_go_once_the_levels_serve_every_configured_size() -> None:
    # p200 (200x300 portrait) needs 600 rows: only the decode has them.
    keeps = decode_original(JPEG, SPECS.values(), OPTIONS, MAX_DIMENSION)
    served = [SPECS["t96"], SPECS["s220"], SPECS["m640"]]
    lets_go = decode_original(JPEG, served, OPTIONS, MAX_DIMENSION)
    assert keeps is not None and lets_go is not None
    for decoded in (keeps, lets_go):
        assert render_decoded(decoded, SPECS["m640"], None, OPTIONS) is not None
    # The 640 level has 2x headroom for t96 and s220 too: the decode can go.
    assert keeps.base is not None
    assert lets_go.base is None
    assert lets_go.nbytes == 640 * 426 * 4
    assert render_decoded(lets_go, SPECS["s220"], None, OPTIONS) is not None
    assert lets_go.nbytes == (640 * 426 + 220 * 146) * 4
    assert render_decoded(lets_go, SPECS["t96"], None, OPTIONS) is not None
    # Without the decode, what needs more pixels goes back to the original.
    assert render_decoded(lets_go, SPECS["p200"], None, OPTIONS) is None
    assert render_decoded(lets_go, SPECS["t96"], Crop(0, 0, 300, 300), OPTIONS) is None


def test_no_level_is_larger_than_the_source() -> None:
    small = encode(_source(500, 400), "JPEG", quality=92)
    decoded = decode_original(small, SPECS.values(), OPTIONS, MAX_DIMENSION)
    assert decoded is not None
    # m640 grows a 500x400 source to 640x512: made from the decode, never kept
    # (an upscaled level would be a poor source for smaller sizes).
    made = render_decoded(decoded, AS_PNG["m640"], None, OPTIONS)
    assert made is not None and decode(made.data).size == (640, 512)
    assert decoded.levels == {}


@pytest.mark.parametrize("code", ["t96", "s220", "p200", "m640"])
def test_every_size_from_the_decoded_original_matches_a_full_decode(code: str) -> None:
    # PNG output, so only the resampling path is compared (no lossy encoder).
    spec = AS_PNG[code]
    decoded = decode_original(JPEG, AS_PNG.values(), OPTIONS, MAX_DIMENSION)
    assert decoded is not None and decoded.base.width < FULL[0]
    made = render_decoded(decoded, spec, None, OPTIONS)
    assert made is not None and made.content_type == "image/png"
    fast = decode(made.data)
    # The reference: full decode, one LANCZOS resize of the same region.
    source = Image.open(io.BytesIO(JPEG)).convert("RGB")
    plan = plan_resize(*source.size, spec)
    reference = source.resize(plan.size, Image.Resampling.LANCZOS, box=plan.box)
    assert fast.size == reference.size
    assert ssim(fast, reference) >= 0.98


def test_images_with_alpha_keep_only_the_decode() -> None:
    # A cascade would round premultiplied colours once per level.
    rgba = _source(1200, 800).convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize((1200, 800)))
    specs = [SPECS["s220"], SPECS["m640"]]
    decoded = decode_original(encode(rgba, "PNG"), specs, OPTIONS, MAX_DIMENSION)
    assert decoded is not None
    for spec in specs:
        assert render_decoded(decoded, spec, None, OPTIONS) is not None
    assert decoded.base.mode == "RGBA" and decoded.levels == {}


def test_render_decoded_declines_what_needs_more_pixels() -> None:
    decoded = decode_original(JPEG, SPECS.values(), OPTIONS, MAX_DIMENSION)
    assert decoded is not None
    assert render_decoded(decoded, SPECS["m640"], Crop(0, 0, 200, 200), OPTIONS) is None
    # A size at source scale (at or above max_dimension) with a crop, too.
    assert render_decoded(decoded, SPECS["huge"], Crop(0, 0, 500, 500), OPTIONS) is None


def test_animations_served_animated_are_not_decoded_once() -> None:
    frames = [photo(60, 40).rotate(angle) for angle in (0, 90, 180)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=50)
    animated = OutputOptions(animated=True)
    assert decode_original(buffer.getvalue(), SPECS.values(), animated, MAX_DIMENSION) is None
    still = decode_original(buffer.getvalue(), SPECS.values(), OPTIONS, MAX_DIMENSION)
    assert still is not None


def test_orientation_is_applied_before_caching() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways
    sideways = encode(_source(1600, 2400).rotate(90, expand=True), "JPEG", exif=exif.tobytes())
    decoded = decode_original(sideways, SPECS.values(), OPTIONS, MAX_DIMENSION)
    assert decoded is not None and decoded.full_size == (1600, 2400)
    made = render_decoded(decoded, AS_PNG["s220"], None, OPTIONS)
    direct = render(sideways, AS_PNG["s220"], None, OPTIONS)
    assert made is not None
    upright_plan = plan_resize(1600, 2400, SPECS["s220"])
    assert decode(made.data).size == decode(direct.data).size == upright_plan.size
    assert ssim(decode(made.data), decode(direct.data)) >= 0.98


# --- the worker and the front -----------------------------------------------------


class TestDecodedCacheOverHttp(PoolTestCase):
    def get_app(self) -> Application:
        self.pool = ServerPool(self.io_loop)
        self.origin, self.origin_port = self.pool.stub(StubServer(files={"photo.jpg": JPEG}))
        # Originals are not kept (the cache is too small): only decoded images are.
        config = make_config(
            http_origin("master", self.origin_port), sizes=SIZES, client_cache_size=1000
        )
        app, self.state = self.pool.worker_app(config)
        return app

    def test_every_size_of_an_original_costs_one_fetch_and_one_decode(self) -> None:
        caches = []
        for code in ("m640", "t96", "s220", "p200"):
            response = self.get(f"/{code}/photo.jpg")
            self.assertEqual(response.code, 200)
            caches.append(response.headers["X-Phizer-Cache"])
        self.assertEqual(self.origin.counts["photo.jpg"], 1)
        self.assertEqual(caches, ["miss", "decoded", "decoded", "decoded"])
        self.assertEqual(self.state.decoded.stats.hits, 3)
        self.assertEqual(self.state.decoded.stats.misses, 1)  # one miss, counted once
        self.assertEqual(len(self.state.decoded), 1)

    @gen_test(timeout=20)
    async def test_sizes_waiting_on_one_fetch_share_one_decode(self) -> None:
        self.origin.delays["photo.jpg"] = 10
        decodes = mock.patch(
            "phizer.web.worker.decode_once", wraps=worker_module.decode_once
        ).start()
        self.addCleanup(mock.patch.stopall)
        codes = ("m640", "t96", "s220", "p200")
        waiting = [asyncio.ensure_future(self.aget(f"/{code}/photo.jpg")) for code in codes]
        await self.origin.wait_for_requests(1)
        self.origin.release()
        responses = await asyncio.gather(*waiting)
        self.assertEqual([r.code for r in responses], [200] * 4)
        self.assertEqual(self.origin.counts["photo.jpg"], 1)
        self.assertEqual(decodes.call_count, 1)
        # m640 and s220 are levels, s220 made from m640's (t96 and p200 are crops).
        decoded = self.state.decoded.get("photo.jpg")
        assert decoded is not None
        self.assertEqual(list(decoded.levels), [(640, 426), (220, 146)])
        # The cache counts the levels too.
        self.assertEqual(self.state.decoded.size, cost("photo.jpg", decoded.nbytes))

    def test_a_level_made_later_is_counted_by_the_cache(self) -> None:
        self.assertEqual(self.get("/t96/photo.jpg").code, 200)
        decoded = self.state.decoded.get("photo.jpg")
        assert decoded is not None
        self.assertEqual(decoded.levels, {})
        self.assertEqual(self.get("/m640/photo.jpg").code, 200)
        self.assertEqual(list(decoded.levels), [(640, 426)])
        self.assertEqual(self.state.decoded.size, cost("photo.jpg", decoded.nbytes))

    def test_a_tight_crop_is_made_from_the_full_original(self) -> None:
        self.assertEqual(self.get("/s220/photo.jpg").code, 200)
        response = self.get("/m640/0x0/200x200/photo.jpg")
        self.assertEqual(response.code, 200)
        self.assertEqual(decode(response.body).size, (640, 426))
        # The decoded image was too small, so the original was fetched again.
        self.assertEqual(self.origin.counts["photo.jpg"], 2)
        self.assertEqual(len(self.state.decoded), 1)

    def test_sizes_at_max_dimension_still_get_the_original_bytes(self) -> None:
        self.assertEqual(self.get("/s220/photo.jpg").code, 200)
        self.assertEqual(self.get("/huge/photo.jpg").body, JPEG)
        # A photo small enough to be decoded whole could make the huge size
        # from its decode; it still gets the original's bytes.
        self.origin.files["small.jpg"] = small = encode(_source(300, 200), "JPEG")
        self.assertEqual(self.get("/s220/small.jpg").code, 200)
        self.assertEqual(self.get("/huge/small.jpg").body, small)

    def test_decoded_cache_size_zero_turns_it_off(self) -> None:
        config = make_config(
            http_origin("master", self.origin_port), sizes=SIZES, decoded_cache_size=0
        )
        base = url(self.pool.worker(config)[1])
        for code in ("m640", "t96"):
            response = self.get(f"/{code}/photo.jpg", base)
            self.assertEqual(response.code, 200)
            self.assertNotEqual(response.headers["X-Phizer-Cache"], "decoded")


class TestFrontCacheOff(PoolTestCase):
    """resized_cache_size = 0 turns off the front's cache alone."""

    def get_app(self) -> Application:
        self.pool = ServerPool(self.io_loop)
        self.origin, origin_port = self.pool.stub(StubServer(files={"photo.jpg": JPEG}))
        config = make_config(http_origin("master", origin_port), sizes=SIZES, resized_cache_size=0)
        worker_app, self.worker = self.pool.worker_app(config)
        self.worker_requests = count_requests(worker_app)
        app, self.front = self.pool.front_app(config, [url(self.pool.start(worker_app))])
        return app

    def test_every_request_reaches_the_worker_but_the_origin_once(self) -> None:
        for _ in range(3):
            self.assertEqual(self.get("/s220/photo.jpg").code, 200)
        self.assertEqual(len(self.worker_requests), 3)
        self.assertEqual(len(self.front.results.memory), 0)
        self.assertEqual(self.origin.counts["photo.jpg"], 1)
        self.assertEqual(self.worker.decoded.stats.hits, 2)


class TestTheDecodeIsLetGo(PoolTestCase):
    """Sizes that are all levels (or crops of one): the large decode goes
    once the levels are made, whatever order the sizes are asked in."""

    def get_app(self) -> Application:
        self.pool = ServerPool(self.io_loop)
        self.origin, self.origin_port = self.pool.stub(StubServer(files={"photo.jpg": JPEG}))
        sizes = {code: SIZES[code] for code in ("t96", "s220", "m640")}
        config = make_config(http_origin("master", self.origin_port), sizes=sizes)
        app, self.state = self.pool.worker_app(config)
        return app

    def test_the_decode_goes_when_the_levels_are_made(self) -> None:
        self.assertEqual(self.get("/t96/photo.jpg").code, 200)
        decoded = self.state.decoded.get("photo.jpg")
        assert decoded is not None
        self.assertIsNotNone(decoded.base)  # t96 is a crop: no level yet
        # s220 goes through m640's level (the next larger configured size),
        # and with both levels made every size is served without the decode.
        self.assertEqual(self.get("/s220/photo.jpg").code, 200)
        self.assertIsNone(decoded.base)
        self.assertEqual(list(decoded.levels), [(640, 426), (220, 146)])
        self.assertEqual(self.state.decoded.size, cost("photo.jpg", decoded.nbytes))
        # Every size is still served, from the levels, without a new fetch.
        for code in ("t96", "s220", "m640"):
            self.assertEqual(self.get(f"/{code}/photo.jpg").headers["X-Phizer-Cache"], "decoded")
        self.assertEqual(self.origin.counts["photo.jpg"], 1)
