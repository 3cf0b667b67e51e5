"""``/_preview/<path>``, ``/_sizes`` and the workers' ``/_describe`` and ``/_render``,
over HTTP, with a real front, real workers and a stub origin."""

from __future__ import annotations

import io
import json
from ipaddress import ip_network

from PIL import Image
from tornado.httpclient import HTTPResponse
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port
from tornado.web import Application

from phizer.web.front import FrontState, make_front_app
from tests.http_support import PoolTestCase, ServerPool, StubServer, http_origin, make_config, url
from tests.imagetools import encode, photo
from tests.preview_support import PreviewDom, dims, read_image

JPEG = encode(photo(400, 300), "JPEG", quality=90)
SIZES = {
    "s100": "100x100",
    "sq100": "100 square quality=70",
    "l200": "200x100 landscape",
    "w120": "120x90 format=webp",
    "huge": "4000x4000",
}
FORMATS = {"JPEG": "JPEG", "WebP": "WEBP", "AVIF": "AVIF"}
ACCEPT_ALL = "image/avif,image/webp,*/*"
IMAGE_QUALITY = 80


def animated_gif() -> bytes:
    frames = [photo(60, 40).rotate(180 * k).quantize(64) for k in range(2)] + [
        photo(60, 40).transpose(Image.Transpose.FLIP_LEFT_RIGHT).quantize(64)
    ]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=80)
    return buffer.getvalue()


class PreviewTestCase(PoolTestCase):
    def get_app(self) -> Application:
        self.pool = ServerPool(self.io_loop)
        files = {"photo.jpg": JPEG, "anim.gif": animated_gif()}
        self.origin, origin_port = self.pool.stub(StubServer(files=files))
        self.config = make_config(
            http_origin("master", origin_port),
            sizes=SIZES,
            num_workers=2,
            auto_format=("AVIF", "WEBP"),
            image_quality=IMAGE_QUALITY,
        )
        self.worker_urls = [url(self.pool.worker(self.config)[1]) for _ in range(2)]
        state = FrontState(self.config, self.worker_urls, self.pool.client())
        return make_front_app(self.config, state)

    def page(self, query: str = "", path: str = "photo.jpg") -> tuple[HTTPResponse, PreviewDom]:
        response = self.get(f"/_preview/{path}{query}")
        self.assertEqual(response.code, 200, response.body[:300])
        return response, PreviewDom(response.body.decode("utf-8"))

    def served(self, path: str) -> bytes:
        response = self.get(path, headers={"Accept": ACCEPT_ALL})
        self.assertEqual(response.code, 200, response.body[:300])
        return response.body


class TestPreviewPage(PreviewTestCase):
    def test_served_images_are_the_fronts_own_answers(self) -> None:
        response, dom = self.page()
        self.assertEqual(response.headers["Content-Type"], "text/html; charset=utf-8")
        self.assertEqual(response.headers["Cache-Control"], "no-store")
        self.assertEqual(response.headers["X-Content-Type-Options"], "nosniff")
        self.assertEqual(dom.sizes(), list(SIZES))
        for code in SIZES:
            with self.subTest(size=code):
                figure = dom.figure(code, "served")
                self.assertEqual(figure.data, self.served(f"/{code}/photo.jpg"))
                image_format, size = read_image(figure.data)
                self.assertEqual(size, figure.shown_dims)
                self.assertEqual(len(figure.data), figure.shown_bytes)
                self.assertTrue(figure.caption["format"].upper().startswith(image_format))

    def test_the_basics_need_no_javascript(self) -> None:
        _, dom = self.page()
        for figure in dom.figures:
            # In the HTML as sent: everything but the browser's own reading.
            self.assertEqual(figure.shown_bytes, len(figure.data))
            self.assertEqual(figure.caption["decoded"], "\u2014")

    def test_the_policy_names_the_pages_own_nonce(self) -> None:
        response, dom = self.page()
        policy = response.headers["Content-Security-Policy"]
        [style] = dom.styles
        [script] = dom.scripts
        self.assertEqual(style["nonce"], script["nonce"])
        self.assertIn(f"'nonce-{style['nonce']}'", policy)
        self.assertIn("default-src 'none'", policy)
        self.assertNotIn("unsafe", policy)
        other = self.get("/_preview/photo.jpg").headers["Content-Security-Policy"]
        self.assertNotEqual(other, policy)  # a fresh nonce per response

    def test_the_originals_facts(self) -> None:
        _, dom = self.page()
        self.assertEqual(dom.facts["format"], "JPEG")
        self.assertEqual(dims(dom.facts["pixels"]), (400, 300))
        self.assertEqual(dom.facts["bytes"].split(" ")[0], f"{len(JPEG):,}")
        self.assertEqual(dom.facts["frames"], "1")
        _, animated = self.page(path="anim.gif")
        self.assertEqual((animated.facts["format"], animated.facts["frames"]), ("GIF", "3"))

    def test_every_format_side_by_side(self) -> None:
        _, dom = self.page("?format=all")
        for code in ("s100", "sq100", "l200", "w120"):
            served = dom.figure(code, "served")
            for label, image_format in FORMATS.items():
                with self.subTest(size=code, format=label):
                    figure = dom.figure(code, label)
                    self.assertEqual(read_image(figure.data), (image_format, served.shown_dims))
                    self.assertEqual(figure.shown_bytes, len(figure.data))
                    cell = dom.cells[(code, "bytes", label)]
                    self.assertEqual(cell, f"{len(figure.data):,} B")
        # The configured qualities, on the JPEG scale the operator wrote.
        self.assertEqual(dom.figure("s100", "JPEG").caption["quality"], str(IMAGE_QUALITY))
        self.assertEqual(dom.figure("sq100", "JPEG").caption["quality"], "70")
        self.assertEqual(dom.figure("s100", "served").caption["format"], "AVIF (image/avif)")
        self.assertEqual(dom.figure("w120", "served").caption["format"], "WebP (image/webp)")

    def test_one_format_view_shows_that_format(self) -> None:
        _, dom = self.page("?format=webp")
        for code in ("s100", "sq100", "l200"):
            [figure] = [f for f in dom.figures if f.size == code]
            self.assertEqual((figure.variant, read_image(figure.data)[0]), ("WebP", "WEBP"))

    def test_a_size_at_max_dimension_shows_the_untouched_original(self) -> None:
        _, dom = self.page("?format=all")
        self.assertEqual(dom.figure("huge", "served").data, JPEG)
        self.assertEqual([f.variant for f in dom.figures if f.size == "huge"], ["served"])

    def test_a_crop_from_the_query_is_the_crop_urls_image(self) -> None:
        response, dom = self.page("?crop=0x0/500x1000")
        for code in ("s100", "sq100"):
            with self.subTest(size=code):
                figure = dom.figure(code, "served")
                self.assertEqual(figure.data, self.served(f"/{code}/0x0/500x1000/photo.jpg"))
        # s100 keeps the left half; the kept box is drawn by a nonced rule.
        html = response.body.decode()
        self.assertIn("#kept-0{left:0.000%;top:0.000%;width:50.000%;height:100.000%}", html)

    def test_head_answers_without_a_body(self) -> None:
        response = self.get("/_preview/photo.jpg", method="HEAD")
        self.assertEqual((response.code, response.body), (200, b""))

    def test_bad_requests_get_plain_errors(self) -> None:
        cases = {
            "/_preview/missing.jpg": 404,
            "/_preview/": 404,
            "/_preview/photo.jpg?crop=1x1": 400,
            "/_preview/photo.jpg?crop=0x0/2000x10": 400,
            "/_preview/photo.jpg?format=gif": 400,
            "/_preview/100x0/900x900/photo.jpg?crop=0x0/10x10": 400,
            "/_preview/..%2Fphoto.jpg": 400,
            "/_preview/a/../photo.jpg": 400,
        }
        for path, status in cases.items():
            with self.subTest(path=path):
                response = self.get(path)
                self.assertEqual(response.code, status, response.body[:200])
                self.assertEqual(response.headers["Content-Type"], "text/plain; charset=utf-8")

    def test_a_hostile_path_is_text(self) -> None:
        self.origin.files["<b>x<i>.jpg"] = JPEG
        response, dom = self.page(path="%3Cb%3Ex%3Ci%3E.jpg")
        self.assertNotIn(b"<b>x", response.body)
        self.assertTrue(any("<b>x<i>.jpg" in text for text in dom.texts))
        self.assertEqual(dom.figure("s100", "served").shown_dims, (100, 75))


class TestSizes(PreviewTestCase):
    def test_sizes_as_json(self) -> None:
        response = self.get("/_sizes")
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers["Content-Type"], "application/json; charset=utf-8")
        answer = json.loads(response.body)
        self.assertEqual(answer["auto_format"], ["avif", "webp"])
        by_code = {size["code"]: size for size in answer["sizes"]}
        self.assertEqual(list(by_code), list(SIZES))
        self.assertEqual(
            {k: by_code["sq100"][k] for k in ("width", "height", "constraint", "quality")},
            {"width": 100, "height": 100, "constraint": "square", "quality": 70},
        )
        self.assertEqual(by_code["s100"]["quality"], IMAGE_QUALITY)
        self.assertEqual(by_code["w120"]["format"], "webp")
        self.assertIsNone(by_code["s100"]["format"])
        self.assertEqual([k for k, v in by_code.items() if v["unresized"]], ["huge"])


class TestAccess(PreviewTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.servers: list[HTTPServer] = []

    def tearDown(self) -> None:
        for server in self.servers:
            server.stop()
            self.io_loop.run_sync(server.close_all_connections, timeout=5)
        super().tearDown()

    def refusing_front(self) -> str:
        """A front (trusting X-Forwarded-For) that admits admin requests from 10.0.0.0/8 only."""
        config = make_config(
            self.config.master,
            sizes=SIZES,
            num_workers=2,
            admin_allow=(ip_network("10.0.0.0/8"),),
        )
        state = FrontState(config, self.worker_urls, self.pool.client())
        sock, port = bind_unused_port()
        server = HTTPServer(make_front_app(config, state))  # as phizer serves: no xheaders
        server.add_sockets([sock])
        self.servers.append(server)
        return url(port)

    def test_peers_outside_admin_allow_get_403(self) -> None:
        base = self.refusing_front()
        spoofed = {"X-Forwarded-For": "10.1.2.3", "X-Real-Ip": "10.1.2.3"}
        for path in ("/_preview/photo.jpg", "/_sizes"):
            for headers in ({}, spoofed):
                with self.subTest(path=path, headers=headers):
                    response = self.get(path, base, headers=headers)
                    self.assertEqual(response.code, 403)
                    self.assertNotIn(b"<html", response.body)
        self.assertEqual(self.origin.counts["photo.jpg"], 0)  # refused before any work
        self.assertEqual(self.get("/s100/photo.jpg", base).code, 200)


class TestWorkerRoutes(PreviewTestCase):
    def worker(self) -> str:
        return self.worker_urls[0]

    def test_describe_reports_facts_and_an_upright_copy(self) -> None:
        response = self.get("/_describe/any/photo.jpg", self.worker())
        self.assertEqual(response.code, 200)
        answer = json.loads(response.body)
        self.assertEqual(answer["facts"]["image_format"], "JPEG")
        self.assertEqual((answer["facts"]["width"], answer["facts"]["height"]), (400, 300))
        self.assertEqual(answer["cache"], "miss")
        again = self.get("/_describe/any/photo.jpg", self.worker())
        self.assertEqual(json.loads(again.body)["cache"], "hit")

    def test_render_makes_the_asked_format(self) -> None:
        for name, image_format in (("jpeg", "JPEG"), ("webp", "WEBP"), ("AVIF", "AVIF")):
            with self.subTest(format=name):
                response = self.get(f"/_render/sq100/photo.jpg?format={name}", self.worker())
                self.assertEqual(response.code, 200, response.body[:200])
                self.assertEqual(read_image(response.body), (image_format, (100, 100)))
                self.assertGreater(float(response.headers["X-Phizer-Render-Ms"]), 0)

    def test_render_refuses_what_it_cannot_make(self) -> None:
        cases = {
            "/_render/sq100/photo.jpg?format=gif": 400,
            "/_render/sq100/photo.jpg": 400,
            "/_render/nope/photo.jpg?format=jpeg": 404,
            "/_render/sq100/missing.jpg?format=jpeg": 404,
            "/_describe/any/missing.jpg": 404,
        }
        for path, status in cases.items():
            with self.subTest(path=path):
                self.assertEqual(self.get(path, self.worker()).code, status)


class TestUnreadableWorkers(PreviewTestCase):
    def front_over(self, worker_url: str) -> str:
        config = make_config(self.config.master, sizes=SIZES, num_workers=1)
        state = FrontState(config, [worker_url], self.pool.client())
        return url(self.pool.start(make_front_app(config, state)))

    def test_a_worker_answering_nonsense_is_a_502(self) -> None:
        for body in (b"not json", b"[1, 2]", b'{"facts": {"width": 1}}', b'{"facts": 3}'):
            with self.subTest(body=body):
                _, port = self.pool.stub(StubServer(default=body))
                response = self.get("/_preview/photo.jpg", self.front_over(url(port)))
                self.assertEqual(response.code, 502)
                self.assertEqual(response.headers["Content-Type"], "text/plain; charset=utf-8")

    def test_a_worker_that_is_down_is_a_503(self) -> None:
        _, port = self.pool.reserve_port()
        response = self.get("/_preview/photo.jpg", self.front_over(url(port)))
        self.assertEqual(response.code, 503)
