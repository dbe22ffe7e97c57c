"""The collector's inspector: its JSON routes over HTTP, and the page in a real headless Chromium.

The browser tests use Debian's chromium through playwright (``pip install playwright``;
no ``playwright install``).  They skip, saying why, when either is missing, unless
CDP_RELAY_REQUIRE_BROWSER=1 (as CI sets it), where a missing browser fails them.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest
import requests

from analytics import Client, RetryPolicy
from analytics.collector import Collector

from .conftest import WRITE_KEY

TIMEOUT = 10
FAST = RetryPolicy(max_retries=2, base=0.01, cap=0.02)


@pytest.fixture(params=["memory", "sqlite"])
def inspected(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Collector]:
    """A collector accepting WRITE_KEY, with its records in memory or in an SQLite file."""
    db = None if request.param == "memory" else str(tmp_path / "inspector.db")
    with Collector(write_keys={WRITE_KEY}, db_path=db) as c:
        yield c


def send_mix(collector: Collector, gzip: bool = True) -> None:
    """30 tracks (10 'Signed Up', 20 'Viewed'), 5 identifies, 2 pages, in batches of 10."""
    with Client(WRITE_KEY, host=collector.url, gzip=gzip, upload_size=10, max_in_flight=1, retry_policy=FAST) as c:
        for i in range(30):
            c.track(f"user-{i % 3}", "Signed Up" if i % 3 == 0 else "Viewed", {"i": i}, message_id=f"t-{i}")
        for i in range(5):
            c.identify(f"user-{i}", {"email": f"u{i}@example.com"}, message_id=f"i-{i}")
        c.page(anonymous_id="anon-XYZ", category="Docs", name="Pricing", message_id="p-0")
        c.page("user-1", name="Home", message_id="p-1")


def get(collector: Collector, path: str, status: int = 200) -> Any:
    r = requests.get(collector.url + path, timeout=TIMEOUT)
    assert r.status_code == status, (path, r.text)
    assert r.headers["Content-Type"] == "application/json"
    return r.json()


# -- the JSON routes ---------------------------------------------------------------------------------


def test_events_newest_first_with_filters(inspected: Collector) -> None:
    """Events come newest first; type, event (substring), user (substring of either id) and batch filter them."""
    send_mix(inspected)
    data = get(inspected, "/_collector/events")
    assert data["latest"] == 37 and data["matching"] == 37 and data["kept"] is True
    assert [e["id"] for e in data["events"]] == list(range(37, 0, -1))
    assert data["events"][0]["message_id"] == "p-1" and data["events"][-1]["message_id"] == "t-0"
    assert get(inspected, "/_collector/events?type=identify")["matching"] == 5
    signed = get(inspected, "/_collector/events?type=track&event=signed")
    assert signed["matching"] == 10 and {e["event"] for e in signed["events"]} == {"Signed Up"}
    assert [e["message_id"] for e in get(inspected, "/_collector/events?user=xyz")["events"]] == ["p-0"]
    assert get(inspected, "/_collector/events?user=user-1&type=track")["matching"] == 10
    assert [e["event"] for e in get(inspected, "/_collector/events?event=pric")["events"]] == ["Pricing"]
    batch_one = get(inspected, "/_collector/events?batch=1")
    assert [e["message_id"] for e in batch_one["events"]] == [f"t-{i}" for i in range(9, -1, -1)]
    page = get(inspected, "/_collector/events?limit=5&before=20")
    assert [e["id"] for e in page["events"]] == [19, 18, 17, 16, 15] and page["matching"] == 37


def test_one_event_in_full_with_its_batch(inspected: Collector) -> None:
    """/_collector/event?id=N: the whole message, and its batch's size and gzip ratio."""
    send_mix(inspected)
    data = get(inspected, "/_collector/event?id=3")
    assert data["message"] == inspected.messages[2]
    s = data["summary"]
    assert s["message_id"] == "t-2" and s["batch_id"] == 1 and s["batch_messages"] == 10
    assert s["compressed_size"] < s["raw_size"] and 0 < s["gzip_ratio"] < 1
    assert s["key_hint"] == WRITE_KEY[:4] + "…"
    get(inspected, "/_collector/event?id=99", status=404)
    for bad in ("/_collector/event", "/_collector/event?id=x", "/_collector/events?limit=0",
                "/_collector/events?limit=9999", "/_collector/batches?before=-1"):
        assert get(inspected, bad, status=400)["code"] == "bad_request"


def test_batches_with_sizes_and_gzip_ratio(inspected: Collector) -> None:
    """Batches newest first, with message count, raw and gzipped bytes, ratio, key hint and user agent."""
    send_mix(inspected, gzip=True)
    send_mix(inspected, gzip=False)
    data = get(inspected, "/_collector/batches")
    assert data["total"] == len(data["batches"]) == 8
    newest, oldest = data["batches"][0], data["batches"][-1]
    assert newest["id"] == 8 and newest["compressed_size"] is None and newest["gzip_ratio"] is None
    assert oldest["id"] == 1 and oldest["messages"] == 10
    assert oldest["gzip_ratio"] == round(oldest["compressed_size"] / oldest["raw_size"], 4)
    assert oldest["user_agent"].startswith("cdp-relay/") and oldest["key_hint"] == WRITE_KEY[:4] + "…"
    assert [b["id"] for b in get(inspected, "/_collector/batches?limit=2&before=5")["batches"]] == [4, 3]


def test_refused_requests_and_why(inspected: Collector) -> None:
    """Refusals newest first with status, code, reason, method and path; faults and dropped ones too."""
    body = json.dumps({"batch": [], "sentAt": "2024-01-01T00:00:00Z"})
    requests.post(inspected.url + "/v1/batch", data=body, auth=("nope", ""), timeout=TIMEOUT)
    requests.post(inspected.url + "/v1/batch", data="{", auth=(WRITE_KEY, ""), timeout=TIMEOUT)
    requests.get(inspected.url + "/v1/nothing", timeout=TIMEOUT)
    inspected.fail_next(1, status=503)
    requests.post(inspected.url + "/v1/batch", data=body, auth=(WRITE_KEY, ""), timeout=TIMEOUT)
    data = get(inspected, "/_collector/refusals")
    assert data["total"] == 4
    assert [(r["status"], r["code"], r["method"], r["path"]) for r in data["refusals"]] == [
        (503, "fault", "POST", "/v1/batch"),
        (404, "not_found", "GET", "/v1/nothing"),
        (400, "bad_request", "POST", "/v1/batch"),
        (401, "unauthorized", "POST", "/v1/batch"),
    ]
    assert data["refusals"][3]["reason"] == "unknown write key"
    assert data["refusals"][2]["reason"].startswith("body is not valid JSON")


def test_the_page_and_its_files(inspected: Collector) -> None:
    """/ and /inspector serve the page with a strict CSP; its script and style are served; none is counted."""
    for path in ("/", "/inspector"):
        r = requests.get(inspected.url + path, timeout=TIMEOUT)
        assert r.status_code == 200 and r.headers["Content-Type"] == "text/html; charset=utf-8"
        assert "script-src 'self'" in r.headers["Content-Security-Policy"]
        assert "'unsafe-inline'" not in r.headers["Content-Security-Policy"]
        assert '<script src="/_collector/static/inspector.js"' in r.text
    js = requests.get(inspected.url + "/_collector/static/inspector.js", timeout=TIMEOUT)
    assert js.status_code == 200 and js.headers["Content-Type"].startswith("text/javascript")
    assert ".innerHTML" not in js.text and "insertAdjacentHTML" not in js.text  # textContent only
    css = requests.get(inspected.url + "/_collector/static/inspector.css", timeout=TIMEOUT)
    assert css.status_code == 200 and css.headers["Content-Type"].startswith("text/css")
    assert requests.get(inspected.url + "/_collector/static/secrets.py", timeout=TIMEOUT).status_code == 404
    assert requests.post(inspected.url + "/", timeout=TIMEOUT).status_code == 405
    assert inspected.stats()["requests"] == 1  # only the POST / above, refused with 405


def test_without_kept_messages_the_page_says_so() -> None:
    """A collector with keep_messages=False has no events to list, and says so."""
    with Collector(keep_messages=False) as c:
        send_mix(c)
        data = get(c, "/_collector/events")
        assert data["events"] == [] and data["kept"] is False and data["latest"] == 0


# -- the page in a real browser --------------------------------------------------------------------


def _chromium() -> Optional[str]:
    for candidate in (os.environ.get("CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                      shutil.which("chromium-browser")):
        if candidate and os.path.exists(candidate):
            return candidate
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for the module (Debian's, driven by playwright)."""
    required = os.environ.get("CDP_RELAY_REQUIRE_BROWSER") == "1"
    problem = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        problem = "playwright is not installed (pip install playwright)"
    executable = _chromium()
    if problem is None and executable is None:
        problem = "no chromium found (apt-get install chromium, or set CHROMIUM=/path/to/chromium)"
    if problem is not None:
        if required:
            pytest.fail(f"CDP_RELAY_REQUIRE_BROWSER=1 but {problem}")
        pytest.skip(problem)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    # playwright evaluates its wait_for_function strings with eval, which the page's CSP forbids;
    # without the CSP the hostile-content test is stricter: escaping alone must hold
    context = browser.new_context(bypass_csp=True)
    pg = context.new_page()
    pg.set_default_timeout(10_000)
    errors: List[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    pg.errors = errors
    try:
        yield pg
    finally:
        context.close()


def rows(pg: Any) -> List[Dict[str, str]]:
    """The events table as dicts (the text the browser shows)."""
    return pg.eval_on_selector_all(
        "#events-table tbody tr[data-id]",
        "trs => trs.map(tr => ({id: tr.dataset.id, type: tr.children[2].textContent,"
        " event: tr.children[3].textContent, user: tr.children[4].textContent,"
        " messageId: tr.children[6].textContent}))",
    )


def wait_rows(pg: Any, n: int) -> None:
    pg.wait_for_function(f"document.querySelectorAll('#events-table tbody tr[data-id]').length === {n}")


def test_browser_shows_sdk_events_live(page: Any, inspected: Collector) -> None:
    """The page lists what the SDK sent, newest first, and picks up new events without a reload."""
    page.goto(inspected.url + "/")
    page.wait_for_selector("body[data-loaded=true]")
    assert "no messages yet" in page.text_content("#events-table tbody")
    send_mix(inspected)
    wait_rows(page, 37)
    shown = rows(page)
    assert shown[0]["messageId"] == "p-1" and shown[-1]["messageId"] == "t-0"
    assert shown[0]["type"] == "page" and shown[0]["event"] == "Home"
    page.wait_for_function("document.getElementById('c-messages').textContent === '37'")
    with Client(WRITE_KEY, host=inspected.url, max_in_flight=1, retry_policy=FAST) as c:
        c.track("late-user", "Arrived Later", message_id="late-1")
    wait_rows(page, 38)
    assert rows(page)[0]["messageId"] == "late-1"
    assert page.errors == []


def test_browser_filters_narrow_the_list(page: Any, inspected: Collector) -> None:
    """Type, event name and user id filters narrow the list; Clear brings everything back."""
    send_mix(inspected)
    page.goto(inspected.url + "/")
    wait_rows(page, 37)
    page.select_option("#filter-type", "identify")
    wait_rows(page, 5)
    assert {r["type"] for r in rows(page)} == {"identify"}
    page.select_option("#filter-type", "track")
    page.fill("#filter-event", "signed")
    wait_rows(page, 10)
    assert {r["event"] for r in rows(page)} == {"Signed Up"}
    page.fill("#filter-user", "user-0")
    wait_rows(page, 10)
    page.fill("#filter-user", "user-1")
    page.wait_for_selector("#events-table tbody tr.empty")
    assert "no message matches" in page.text_content("#events-table tbody")
    assert "type=track" in page.url and "user=user-1" in page.url
    page.click("#clear-filters")
    wait_rows(page, 37)
    assert page.errors == []


def test_browser_opens_one_message(page: Any, inspected: Collector) -> None:
    """Clicking an event shows its full JSON and batch; the URL keeps it, so a reload opens it again."""
    send_mix(inspected)
    page.goto(inspected.url + "/")
    wait_rows(page, 37)
    page.click("#events-table tbody tr[data-id='3']")
    page.wait_for_selector("#detail:not([hidden])")
    page.wait_for_function("document.getElementById('detail-json').textContent.includes('t-2')")
    shown = json.loads(page.text_content("#detail-json"))
    assert shown == inspected.messages[2]
    meta = page.text_content("#detail-meta")
    assert "#1: 10 messages" in meta and "gzipped" in meta
    assert "message=3" in page.url
    page.reload()
    page.wait_for_function("document.getElementById('detail-json').textContent.includes('t-2')")
    page.click("#close-detail")
    page.wait_for_selector("#detail", state="hidden")
    assert page.errors == []


def test_browser_shows_hostile_content_as_text(page: Any, inspected: Collector) -> None:
    """Event names, ids and properties holding HTML and script are shown as text and never run."""
    hostile = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>'
    with Client(WRITE_KEY, host=inspected.url, max_in_flight=1, retry_policy=FAST) as c:
        c.track(hostile, hostile, {"html": hostile, "</pre><b>": "<svg onload=window.__xss=3>"},
                message_id="<b>id</b>")
    page.goto(inspected.url + "/")
    wait_rows(page, 1)
    [row] = rows(page)
    assert row["event"] == hostile and row["user"] == hostile and row["messageId"] == "<b>id</b>"
    page.click("#events-table tbody tr[data-id='1']")
    page.wait_for_function("document.getElementById('detail-json').textContent.includes('svg onload')")
    assert json.loads(page.text_content("#detail-json"))["properties"]["html"] == hostile
    assert page.evaluate("window.__xss") is None
    assert page.eval_on_selector_all("main img, main script, main svg, main b", "els => els.length") == 0
    assert page.text_content("#detail-title") == "track: " + hostile


def test_browser_batches_refusals_and_counters(page: Any, inspected: Collector) -> None:
    """The Batches tab shows sizes and gzip ratio, Refused shows why, the counters add up."""
    send_mix(inspected, gzip=True)
    body = json.dumps({"batch": [], "sentAt": "2024-01-01T00:00:00Z"})
    requests.post(inspected.url + "/v1/batch", data=body, auth=("intruder", ""), timeout=TIMEOUT)
    page.goto(inspected.url + "/")
    wait_rows(page, 37)
    page.wait_for_function("document.getElementById('c-refused').textContent === '1'")
    assert page.text_content("#c-batches") == "4" and page.text_content("#c-unique") == "37"
    assert page.text_content("#c-ratio").endswith("%")
    page.click("#tab-batches")
    page.wait_for_function("document.querySelectorAll('#batches-table tbody tr[data-id]').length === 4")
    first = page.eval_on_selector("#batches-table tbody tr[data-id='1']",
                                  "tr => Array.from(tr.children).map(td => td.textContent)")
    assert first[2] == "10" and first[5].endswith("%") and first[6] == WRITE_KEY[:4] + "…"
    page.click("#tab-refusals")
    page.wait_for_selector("#refusals-table tbody tr[data-id]")
    refusal = page.text_content("#refusals-table tbody tr[data-id='1']")
    assert "401" in refusal and "unknown write key" in refusal and "POST /v1/batch" in refusal
    # a batch's count links to its messages
    page.click("#tab-batches")
    page.click("#batches-table tbody tr[data-id='2'] a")
    wait_rows(page, 10)
    assert {r["messageId"] for r in rows(page)} == {f"t-{i}" for i in range(10, 20)}
    assert page.errors == []
