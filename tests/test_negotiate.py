"""Content negotiation (phizer/negotiate.py), and how the front and a worker use it.

The pure functions are tested directly. The front is tested over HTTP in
front of a fake worker that answers one body per offer set, and the worker
with ``render`` replaced by a recorder, so both sides are checked without
depending on which formats the imaging code can encode.
"""

from __future__ import annotations

import asyncio
from typing import Any
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tornado.testing import gen_test
from tornado.web import Application, RequestHandler

from phizer.imaging.pipeline import Rendered
from phizer.web.negotiate import accepted_types, offers_for, variant_key
from phizer.web.protocol import offers_query, parse_offers
from phizer.web.urls import parse_request_path
from tests.http_support import (
    Arrivals,
    PoolTestCase,
    ServerPool,
    StubServer,
    http_origin,
    make_config,
    url,
)
from tests.imagetools import encode, photo

BOTH = ("AVIF", "WEBP")
CHROME = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"
FIREFOX_OLD = "image/webp,*/*"
SAFARI_OLD = "image/png,image/svg+xml,image/*;q=0.8,video/*;q=0.8,*/*;q=0.5"


# --- offers_for ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (CHROME, ("AVIF", "WEBP")),
        (FIREFOX_OLD, ("WEBP",)),
        (SAFARI_OLD, ()),
        ("image/webp,image/avif", ("AVIF", "WEBP")),  # configured order, not the client's
        ("image/avif", ("AVIF",)),
        ("IMAGE/AVIF, Image/WebP", ("AVIF", "WEBP")),
        ("  image/webp  ;  q=0.5 ,image/avif;Q=1", ("AVIF", "WEBP")),
        ("image/avif;q=0, image/webp", ("WEBP",)),
        ("image/avif;q=0.000,image/webp;q=0.001", ("WEBP",)),
        ("image/avif;q=0.0;foo=bar", ()),
        ("image/avif;level=1;q=1.000", ("AVIF",)),
        ("image/avif;charset=x", ("AVIF",)),
        ("*/*", ()),
        ("image/*", ()),
        ("image/*;q=1, */*;q=1", ()),
        ("", ()),
        ("text/html,application/xhtml+xml", ()),
    ],
)
def test_offers_for(accept: str, expected: tuple[str, ...]) -> None:
    assert offers_for(accept, BOTH) == expected


@pytest.mark.parametrize(
    "accept",
    [
        "image/avif;q=2",  # above 1
        "image/avif;q=-1",
        "image/avif;q=0.5000",  # more than three decimals
        "image/avif;q=",
        "image/avif;q",
        "image/avif;q=abc",
        "image/avif;q=1e0",
        "image/avif;q=.5",
        "image/avif;q=1.5",
        "image/avif, image/avif;q=0",  # contradicts itself: the lower weight wins
        "image/avif;q=0, image/avif",
        "image / avif",
        "imageavif",
        "image/avif/x",
        "avif",
        "image/avif-extra",
        "image/avifx, ximage/avif",
        "\x00image/avif\x00",
    ],
)
def test_unreadable_or_refused_elements_do_not_offer(accept: str) -> None:
    assert offers_for(accept, ("AVIF",)) == ()


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        ("garbage;;;,,,image/webp", ("WEBP",)),
        (",,,", ()),
        (";", ()),
        ("image/webp;q=abc,image/avif", ("AVIF",)),
        ("image/avif;;q=1", ("AVIF",)),
        ("image/avif;q=0.9;q=0", ("AVIF",)),  # the first q is the weight
        ("\u00e9\u00e8, image/webp", ("WEBP",)),
    ],
)
def test_garbage_elements_are_skipped(accept: str, expected: tuple[str, ...]) -> None:
    assert offers_for(accept, BOTH) == expected


@pytest.mark.parametrize("auto_format", [(), ("WEBP",), ("AVIF",), ("WEBP", "AVIF")])
def test_only_configured_formats_are_offered_in_configured_order(auto_format) -> None:
    assert offers_for(CHROME, auto_format) == auto_format


def test_off_or_no_header_offers_nothing() -> None:
    assert offers_for(CHROME, ()) == ()
    assert offers_for(None, BOTH) == ()


def test_accepted_types_keeps_the_lowest_weight_of_a_repeated_type() -> None:
    weights = accepted_types("image/webp;q=0.7, text/html, IMAGE/WEBP;q=0.2, */*;q=0.1")
    assert weights == {"image/webp": 0.2, "text/html": 1.0, "*/*": 0.1}


# The pieces Accept headers are made of, in any arrangement.
_PIECES = ["image/avif", "image/webp", "image/*", "*/*", ";q=", ",", ";", " ", "\t", "0", "1", "."]
_ACCEPT_TEXT = st.lists(st.sampled_from([*_PIECES, *"avifwebpq=/"]), max_size=30).map("".join)


@settings(max_examples=300, deadline=None)
@given(_ACCEPT_TEXT, st.sampled_from([(), ("AVIF",), ("WEBP",), BOTH, ("WEBP", "AVIF")]))
def test_offers_are_an_ordered_subset_of_the_configuration(accept, auto_format) -> None:
    offers = offers_for(accept, auto_format)
    assert offers == tuple(name for name in auto_format if name in offers)
    explicit = {item.split(";")[0].strip().lower() for item in accept.split(",")}
    for name in offers:  # only ever offered when named explicitly
        assert f"image/{name.lower()}" in explicit


# --- the front-to-worker hop -------------------------------------------------------


def test_variant_keys_are_distinct_and_cannot_collide_with_a_path() -> None:
    key = parse_request_path("/s100/a.jpg").key
    keys = {variant_key(key, offers) for offers in [(), ("AVIF",), ("WEBP",), BOTH]}
    assert len(keys) == 4
    assert variant_key(key, ()) == key
    # a file literally named like a variant is encoded, so it is another key
    lookalike = parse_request_path("/s100/a.jpg|avif").key
    assert lookalike not in keys


def test_offers_query_round_trips_through_parse_offers() -> None:
    for offers in [("AVIF",), ("WEBP",), BOTH]:
        query = offers_query(offers)
        name, _, value = query.removeprefix("?").partition("=")
        assert name == "offers"
        assert parse_offers([value], BOTH) == offers
    assert offers_query(()) == ""


@pytest.mark.parametrize(
    ("values", "allowed", "expected"),
    [
        (["AVIF,WEBP"], BOTH, BOTH),
        (["webp,avif"], BOTH, BOTH),  # the worker's configured order
        (["WEBP"], BOTH, ("WEBP",)),
        (["AVIF,WEBP"], ("WEBP",), ("WEBP",)),  # not offered by this config
        (["AVIF,WEBP"], (), ()),
        (["PNG,EPS,../x,AVIF"], BOTH, ("AVIF",)),
        (["JPEG"], BOTH, ()),
        ([""], BOTH, ()),
        ([], BOTH, ()),
        (["AVIF", "WEBP"], BOTH, BOTH),
        ([" avif , ,webp "], BOTH, BOTH),
    ],
)
def test_parse_offers_keeps_only_allowed_names(values, allowed, expected) -> None:
    assert parse_offers(values, allowed) == expected


# --- the front, in front of a fake worker -------------------------------------------


class _FakeWorker(RequestHandler):
    """Answers a distinct body per ``offers`` value; records every URI."""

    def initialize(self, seen: Arrivals, bodies: dict[str, tuple[str, bytes]]) -> None:
        self.seen = seen
        self.bodies = bodies

    def get(self) -> None:
        self.seen.add(self.request.uri)
        content_type, body = self.bodies[self.get_query_argument("offers", "")]
        self.set_header("Content-Type", content_type)
        self.finish(body)


_VARIANTS = {
    "": ("image/jpeg", encode(photo(20, 10), "JPEG")),
    "AVIF,WEBP": ("image/avif", b"pretend avif"),
    "AVIF": ("image/avif", b"pretend avif only"),
    "WEBP": ("image/webp", b"pretend webp"),
}


class TestFrontNegotiation(PoolTestCase):
    def get_app(self) -> Application:
        self.pool = ServerPool(self.io_loop)
        self.seen = Arrivals()
        worker = Application([(r"/.*", _FakeWorker, {"seen": self.seen, "bodies": _VARIANTS})])
        self.worker_url = url(self.pool.start(worker))
        app, self.state = self.pool.front_app(self.config(auto_format=BOTH), [self.worker_url])
        return app

    def config(self, **settings: Any):
        return make_config(http_origin("master", 9), **settings)

    def ask(self, path: str, accept: str | None, base: str | None = None, **headers: str):
        if accept is not None:
            headers["Accept"] = accept
        return self.get(path, base, headers=headers)

    def test_each_offer_set_is_one_variant(self) -> None:
        cases = [
            (CHROME, "image/avif"),
            (FIREFOX_OLD, "image/webp"),
            ("*/*", "image/jpeg"),
            (None, "image/jpeg"),
            ("image/avif;q=0, image/webp", "image/webp"),
        ]
        for accept, content_type in cases:
            response = self.ask("/s100/a.jpg", accept)
            self.assertEqual(response.code, 200)
            self.assertEqual(response.headers["Content-Type"], content_type, accept)
            self.assertEqual(response.headers["Vary"], "Accept")
        # one worker request per distinct offer set, carrying exactly that set
        expected = ["/s100/a.jpg?offers=AVIF,WEBP", "/s100/a.jpg?offers=WEBP", "/s100/a.jpg"]
        self.assertEqual(self.seen.items, expected)

    def test_hits_and_304_carry_vary_and_the_variant_etag(self) -> None:
        first = self.ask("/s100/a.jpg", CHROME)
        other = self.ask("/s100/a.jpg", FIREFOX_OLD)
        self.assertNotEqual(first.headers["ETag"], other.headers["ETag"])
        hit = self.ask("/s100/a.jpg", "image/webp;q=0.9, image/avif")
        self.assertEqual(hit.body, first.body)
        self.assertEqual(hit.headers["ETag"], first.headers["ETag"])
        self.assertEqual(hit.headers["Vary"], "Accept")
        not_modified = self.ask("/s100/a.jpg", CHROME, **{"If-None-Match": first.headers["ETag"]})
        self.assertEqual(not_modified.code, 304)
        self.assertEqual(not_modified.headers["Vary"], "Accept")
        # another variant's ETag does not match this one
        changed = self.ask("/s100/a.jpg", CHROME, **{"If-None-Match": other.headers["ETag"]})
        self.assertEqual(changed.code, 200)
        self.assertEqual(len(self.seen), 2)

    @gen_test(timeout=20)
    async def test_many_accept_spellings_of_one_offer_set_make_one_worker_request(self) -> None:
        spellings = [
            f"image/webp;q=0.{n % 9 + 1}, image/avif, text/x-{n};q=0.{n % 7}, */*;q=0.{n % 5}"
            for n in range(40)
        ]
        requests = [
            self.http_client.fetch(self.get_url("/s100/a.jpg"), headers={"Accept": accept})
            for accept in spellings
        ]
        responses = await asyncio.gather(*requests)
        self.assertEqual({r.headers["Content-Type"] for r in responses}, {"image/avif"})
        self.assertEqual(self.seen.items, ["/s100/a.jpg?offers=AVIF,WEBP"])
        self.assertEqual(len(self.state.results.memory), 1)

    def test_off_sends_no_offers_and_no_vary(self) -> None:
        _, base = self.start_front(self.config())
        response = self.ask("/s100/a.jpg", CHROME, base)
        self.assertEqual(response.headers["Content-Type"], "image/jpeg")
        self.assertNotIn("Vary", response.headers)
        self.assertEqual(self.seen.items, ["/s100/a.jpg"])

    def test_only_configured_formats_reach_the_worker(self) -> None:
        _, base = self.start_front(self.config(auto_format=("WEBP",)))
        self.assertEqual(self.ask("/s100/a.jpg", CHROME, base).headers["Vary"], "Accept")
        self.assertEqual(self.seen.items, ["/s100/a.jpg?offers=WEBP"])

    def test_errors_do_not_carry_vary(self) -> None:
        response = self.ask("/nope/a.jpg", CHROME)
        self.assertEqual(response.code, 404)
        self.assertNotIn("Vary", response.headers)

    def start_front(self, config):
        app, state = self.pool.front_app(config, [self.worker_url])
        return state, url(self.pool.start(app))


# --- the worker, with render replaced by a recorder -----------------------------------


class TestWorkerOffers(PoolTestCase):
    def get_app(self) -> Application:
        self.pool = ServerPool(self.io_loop)
        _origin, port = self.pool.stub(StubServer(files={"a.jpg": encode(photo(40, 30), "JPEG")}))
        # Decoded cache off, so every request reaches the recorded render_from().
        self.config = make_config(
            http_origin("master", port), auto_format=BOTH, decoded_cache_size=0
        )
        app, _state = self.pool.worker_app(self.config)
        self.offers: list[tuple[str, ...]] = []
        patcher = mock.patch("phizer.web.worker.render_from", side_effect=self._render)
        patcher.start()
        self.addCleanup(patcher.stop)
        return app

    def _render(self, *args: Any, offers: tuple[str, ...] = (), **kwargs: Any) -> Rendered:
        self.offers.append(offers)
        return Rendered(b"rendered", "image/jpeg")

    def test_offers_reach_render_validated(self) -> None:
        queries = {
            "": (),
            "?offers=AVIF,WEBP": BOTH,
            "?offers=WEBP": ("WEBP",),
            "?offers=webp,avif": BOTH,
            "?offers=PNG,BMP": (),
            "?offers=AVIF&offers=TIFF": ("AVIF",),
            "?other=1": (),
        }
        for query, expected in queries.items():
            self.offers.clear()
            response = self.get("/s100/a.jpg" + query)
            self.assertEqual(response.code, 200, query)
            self.assertEqual(self.offers, [expected], query)

    def test_a_worker_without_auto_format_ignores_offers(self) -> None:
        config = make_config(self.config.master, decoded_cache_size=0)
        base = url(self.pool.worker(config)[1])
        self.assertEqual(self.get("/s100/a.jpg?offers=AVIF,WEBP", base).code, 200)
        self.assertEqual(self.offers, [()])
