"""The Django, Flask and ASGI (Starlette) integrations, each serving real HTTP on loopback.

Each app's view tracks an event without an identity; the test sends requests
with headers a browser and a proxy would send and reads what the collector
stored: the request's ip, user agent, page and locale in ``context``, the
signed-in user as ``userId``, nothing leaking from one request to the next.
"""

from __future__ import annotations

import threading
import urllib.request
from typing import Any, Dict, Iterator, Optional
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest

import analytics
from analytics import ConfigurationError

from ..conftest import WRITE_KEY, serve_in_thread

HEADERS = {
    "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) test",
    "Referer": "http://127.0.0.1/previous",
    "Accept-Language": "de-DE,de;q=0.9,en;q=0.8",
    "X-Forwarded-For": "198.51.100.23, 203.0.113.50",
}


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


def _serve_wsgi(app: Any) -> Iterator[str]:
    server: WSGIServer = make_server("127.0.0.1", 0, app, handler_class=_Quiet)
    yield from serve_in_thread(server)


def _get(url: str, headers: Optional[Dict[str, str]] = None) -> str:
    req = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.read().decode()


def _events(collector, name: str):
    return [m for m in collector.messages if m.get("event") == name]


def _check_request_context(msg: Dict[str, Any], base: str, ip: str, path: str = "/buy") -> None:
    ctx = msg["context"]
    assert ctx["ip"] == ip
    assert ctx["userAgent"] == HEADERS["User-Agent"]
    assert ctx["locale"] == "de-DE"
    assert ctx["page"] == {"path": path, "url": f"{base}{path}?item=7", "search": "?item=7",
                           "referrer": HEADERS["Referer"]}
    assert ctx["library"]["name"] == "cdp-relay"


# --- Django -------------------------------------------------------------------------------


@pytest.fixture
def django_site(collector) -> Iterator[str]:
    django = pytest.importorskip("django")
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            DEBUG=False, ALLOWED_HOSTS=["127.0.0.1"], SECRET_KEY="test-only", ROOT_URLCONF=__name__,
            MIDDLEWARE=[f"{__name__}.FakeAuthMiddleware", "analytics.integrations.django.AnalyticsMiddleware"],
            INSTALLED_APPS=[],
        )  # fmt: skip
        django.setup()
    settings.CDP_RELAY = {
        "write_key": WRITE_KEY, "host": collector.url,
        "trusted_proxy_header": "HTTP_X_FORWARDED_FOR", "trusted_proxy_count": 1,
    }  # fmt: skip
    from django.core.handlers.wsgi import WSGIHandler
    from django.urls import path

    urlpatterns[:] = [path("buy", _django_buy), path("nothing", _django_nothing)]

    yield from _serve_wsgi(WSGIHandler())


class _User:
    def __init__(self, pk: Optional[int]) -> None:
        self.pk = pk
        self.is_authenticated = pk is not None


class FakeAuthMiddleware:
    """Stands in for django.contrib.auth's middleware (no database here): ``?user=N`` signs user N in."""

    reads = 0

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: Any) -> Any:
        user = request.GET.get("user")
        outer = self

        class Lazy(_User):  # counts how often the user is looked up, as a session load would be
            def __getattribute__(self, name: str) -> Any:
                if name in ("pk", "is_authenticated"):
                    type(outer).reads += 1
                return object.__getattribute__(self, name)

        request.user = Lazy(int(user) if user else None)
        return self.get_response(request)


def _django_buy(request: Any) -> Any:
    from django.http import HttpResponse

    ok, msg = analytics.track(event="Bought", properties={"item": request.GET.get("item")}) \
        if request.user.is_authenticated else analytics.track(anonymous_id="anon-7", event="Bought")
    return HttpResponse("ok" if ok else "no")


def _django_nothing(request: Any) -> Any:
    from django.http import HttpResponse

    return HttpResponse("ok")


urlpatterns: list = []  # ROOT_URLCONF is this module; filled by the fixture (importing Django here would
# leave its unconfigured settings object in every test process, which gevent's patching trips over)


def test_django_middleware_sets_the_request_context_and_user(django_site, collector):
    """Django: ip from the trusted proxy header, user agent, page, locale, and request.user's pk as userId."""
    assert _get(f"{django_site}/buy?item=7&user=5", HEADERS) == "ok"
    assert _get(f"{django_site}/buy?item=7", {**HEADERS, "X-Forwarded-For": "not-an-ip"}) == "ok"
    analytics.flush()
    signed_in, anonymous = sorted(_events(collector, "Bought"), key=lambda m: m.get("userId") is None)
    # the test's own url had "&user=5": the page is what the browser asked for
    assert signed_in["userId"] == "5" and signed_in["context"]["ip"] == "203.0.113.50"
    assert signed_in["context"]["page"]["path"] == "/buy"
    assert anonymous.get("userId") is None and anonymous["anonymousId"] == "anon-7"
    assert anonymous["context"]["ip"] == "127.0.0.1"  # a forged header value is ignored: the peer's address


def test_django_a_request_that_tracks_nothing_never_reads_the_user(django_site, collector):
    """The user is looked up only when a call without identity needs it."""
    FakeAuthMiddleware.reads = 0
    assert _get(f"{django_site}/nothing?user=3", HEADERS) == "ok"
    assert FakeAuthMiddleware.reads == 0


def test_django_bad_settings_are_refused_at_start(collector):
    """A bad value in settings.CDP_RELAY raises ConfigurationError naming it when the middleware is built."""
    pytest.importorskip("django")
    from django.conf import settings

    from analytics.integrations.django import AnalyticsMiddleware

    if not settings.configured:
        settings.configure(SECRET_KEY="test-only")
    settings.CDP_RELAY = {"upload_size": 0}
    with pytest.raises(ConfigurationError, match="upload_size"):
        AnalyticsMiddleware(lambda request: None)
    settings.CDP_RELAY = {"no_such_setting": 1}
    with pytest.raises(ConfigurationError, match="no_such_setting"):
        AnalyticsMiddleware(lambda request: None)
    settings.CDP_RELAY = {"trusted_proxy_count": 0}
    with pytest.raises(ConfigurationError, match="trusted_proxy_count"):
        AnalyticsMiddleware(lambda request: None)


# --- Flask --------------------------------------------------------------------------------


@pytest.fixture
def flask_site(collector) -> Iterator[str]:
    flask = pytest.importorskip("flask")
    from analytics.integrations.flask import Analytics

    app = flask.Flask(__name__)
    app.config["CDP_RELAY"] = {"write_key": WRITE_KEY, "host": collector.url, "trusted_proxy_header": "X-Forwarded-For"}

    @app.route("/buy")
    def buy() -> str:
        ok, _ = analytics.track(event="Bought", properties={"item": flask.request.args.get("item")})
        return "ok" if ok else "no"

    Analytics(app, user_id=lambda: flask.request.headers.get("X-Test-User"), flush_after_request=True)
    yield from _serve_wsgi(app)


def test_flask_extension_sets_the_request_context_and_flushes_at_teardown(flask_site, collector):
    """Flask: the request's context and user; with flush_after_request the event is there when the answer is."""
    assert _get(f"{flask_site}/buy?item=7", {**HEADERS, "X-Test-User": "u-9"}) == "ok"
    (msg,) = _events(collector, "Bought")  # flushed at teardown: no wait, no flush() by the test
    assert msg["userId"] == "u-9"
    _check_request_context(msg, flask_site, "203.0.113.50")


# --- ASGI (Starlette under uvicorn) ------------------------------------------------------------


@pytest.fixture
def asgi_site(collector) -> Iterator[str]:
    pytest.importorskip("starlette")
    uvicorn = pytest.importorskip("uvicorn")
    import asyncio
    import socket

    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from analytics.integrations.asgi import AnalyticsMiddleware

    analytics.write_key, analytics.host = WRITE_KEY, collector.url

    async def buy(request: Any) -> Any:
        async def in_a_task() -> bool:  # a task the endpoint starts inherits the request's block
            return analytics.track(event="Bought", properties={"item": request.query_params.get("item")})[0]

        ok = await asyncio.create_task(in_a_task())
        return PlainTextResponse("ok" if ok else "no")

    app = Starlette(routes=[Route("/buy", buy)])
    app.add_middleware(AnalyticsMiddleware, trusted_proxy_header="X-Forwarded-For",
                       user_id=lambda scope: dict(scope["headers"]).get(b"x-test-user", b"").decode() or None)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    from ..conftest import wait_until

    assert wait_until(lambda: server.started, timeout=10)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def test_asgi_middleware_sets_the_request_context_for_the_endpoint_and_its_tasks(asgi_site, collector):
    """Starlette under uvicorn: each request's context and user, also inside a task; no leak between requests."""
    assert _get(f"{asgi_site}/buy?item=7", {**HEADERS, "X-Test-User": "u-1"}) == "ok"
    assert _get(f"{asgi_site}/buy?item=7", {**HEADERS, "X-Test-User": "u-2", "X-Forwarded-For": "192.0.2.4"}) == "ok"
    analytics.flush()
    got = {m["userId"]: m for m in _events(collector, "Bought")}
    assert set(got) == {"u-1", "u-2"}
    _check_request_context(got["u-1"], asgi_site, "203.0.113.50")
    assert got["u-2"]["context"]["ip"] == "192.0.2.4"


def test_a_call_on_the_event_loop_is_never_paced(collector):
    """On a running loop a call never waits for the consumer: it would hold up every task."""
    from analytics import Client

    client = Client(WRITE_KEY, host=collector.url, max_queue_size=40, upload_size=5, pace_wait=0.5)
    collector.delay = 0.5  # delivery slower than the calls: pacing would wait in a thread

    async def burst() -> int:
        return sum(client.track("u", f"e{i}")[0] for i in range(200))

    import asyncio

    try:
        asyncio.run(burst())
        assert client.stats()["paced"] == 0
    finally:
        collector.delay = 0.0
        client.shutdown(timeout=5)

