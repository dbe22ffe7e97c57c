"""The collector's inspector: its JSON routes over HTTP, and the page in a real headless Chromium.

The browser tests use Debian's chromium through playwright (``pip install playwright``;
no ``playwright install``).  They skip, saying why, when either is missing, unless
CDP_RELAY_REQUIRE_BROWSER=1 (as CI sets it), where a missing browser fails them.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest
import requests

from analytics import Client, RetryPolicy
from analytics.collector import Collector

from ..conftest import WRITE_KEY

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


# -- issue 19: paging, payload search, every API's traffic, raw requests, export ---------------------


def post_batch(collector: Collector, messages: List[Dict[str, Any]], key: str = WRITE_KEY, **extra: Any) -> int:
    body = json.dumps({"batch": messages, **extra})
    return requests.post(collector.url + "/v1/batch", data=body, auth=(key, ""), timeout=TIMEOUT).status_code


def store_many(collector: Collector, n: int) -> None:
    """``n`` tracks ``m-1``..``m-n`` (message id N is ``m-N``), in batches of 250, straight over HTTP."""
    for start in range(1, n + 1, 250):
        stop = min(n + 1, start + 250)
        batch = [{"type": "track", "event": "Many", "userId": f"u-{i % 7}", "messageId": f"m-{i}",
                  "properties": {"i": i}} for i in range(start, stop)]
        assert post_batch(collector, batch, sentAt="2024-01-01T00:00:00Z") == 200


def test_events_page_back_through_every_message(inspected: Collector) -> None:
    """before= pages back through all of 1,234 messages, 500 at a time, each once, newest first."""
    store_many(inspected, 1234)
    seen: List[int] = []
    before = None
    for _ in range(10):
        page = get(inspected, "/_collector/events?limit=500" + (f"&before={before}" if before else ""))
        assert page["matching"] == page["latest"] == 1234
        if not page["events"]:
            break
        seen += [e["id"] for e in page["events"]]
        before = page["events"][-1]["id"]
    assert seen == list(range(1234, 0, -1))


def test_search_inside_payloads(inspected: Collector) -> None:
    """q= finds messages by anything in their JSON: traits, properties, context, keys with values."""
    send_mix(inspected)
    with Client(WRITE_KEY, host=inspected.url, max_in_flight=1, retry_policy=FAST) as c:
        c.track("u-x", "Bought", {"plan": "Pro Max", "city": "Zürich"}, context={"campaign": {"name": "spring-sale"}},
                message_id="b-1")
        c.identify("u-y", {"plan": "free"}, message_id="b-2")
    assert {e["message_id"] for e in get(inspected, "/_collector/events?q=EXAMPLE.com")["events"]} == \
        {f"i-{i}" for i in range(5)}  # traits.email, any case
    assert [e["message_id"] for e in get(inspected, "/_collector/events?q=spring-sale")["events"]] == ["b-1"]
    assert [e["message_id"] for e in get(inspected, "/_collector/events?q=z%C3%BCrich")["events"]] == ["b-1"]
    assert [e["message_id"] for e in get(inspected, '/_collector/events?q=plan":"free')["events"]] == ["b-2"]
    both = get(inspected, "/_collector/events?q=plan&type=identify")
    assert both["matching"] == 1 and both["events"][0]["message_id"] == "b-2"
    assert get(inspected, "/_collector/events?q=%25")["matching"] == 0  # % is literal, not a wildcard
    assert get(inspected, '/_collector/events?q="i":7}')["events"][0]["message_id"] == "t-7"


def test_export_the_filtered_messages_as_json_lines(inspected: Collector) -> None:
    """/_collector/export: the messages matching the filters, oldest first, one JSON object a line."""
    send_mix(inspected)
    r = requests.get(inspected.url + "/_collector/export", params={"type": "track", "event": "signed"},
                     timeout=TIMEOUT)
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/x-ndjson"
    assert "attachment" in r.headers["Content-Disposition"]
    lines = r.text.splitlines()
    assert [json.loads(line) for line in lines] == [m for m in inspected.messages if m.get("event") == "Signed Up"]
    everything = requests.get(inspected.url + "/_collector/export", timeout=TIMEOUT).text.splitlines()
    assert [json.loads(line) for line in everything] == inspected.messages


def _auth(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def send_every_api(collector: Collector) -> None:
    """One request to each API the collector serves, one to no API, and a refused one of each kind."""
    url = collector.url
    assert post_batch(collector, [{"type": "track", "event": "DP", "userId": "u", "messageId": "dp-1"}],
                      sentAt="2024-01-01T00:00:00Z", context={"library": {"name": "dp-lib"}}) == 200
    op = {"type": "person", "action": "identify", "identifiers": {"id": "42"}, "attributes": {"plan": "track-pro"}}
    r = requests.post(url + "/api/v2/batch", json={"batch": [op]}, auth=("site-1", "track-secret"), timeout=TIMEOUT)
    assert r.status_code == 200
    r = requests.get(url + "/v1/segments", headers={"Authorization": "Bearer app-secret"}, timeout=TIMEOUT)
    assert r.status_code == 200
    command = {"name": "customers/events", "data": {"customer_ids": {"registered": "42"}, "event_type": "br-buy",
                                                    "timestamp": 1700000000}}
    r = requests.post(url + "/track/v2/projects/proj-1/batch", json={"commands": [command]},
                      auth=("br-key", "br-secret"), timeout=TIMEOUT)
    assert r.status_code == 200
    # refused: a bad write key on Data Pipelines, a Track API body that is not JSON, a Bloomreach batch
    # without commands (with its token in the URL), a path no API serves
    assert post_batch(collector, [], key="wrong-key", sentAt="x") == 401
    r = requests.post(url + "/api/v2/entity", data=b"{nope", auth=("site-1", "track-secret"), timeout=TIMEOUT)
    assert r.status_code == 400
    r = requests.post(url + "/track/v2/projects/proj-1/batch?access_token=br-token-secret", json={"oops": 1},
                      timeout=TIMEOUT)
    assert r.status_code == 400
    assert requests.get(url + "/v2/nothing?x=1", timeout=TIMEOUT).status_code == 404


def test_every_api_s_requests_are_kept_with_the_api_named(inspected: Collector) -> None:
    """/_collector/requests lists every API's requests, named; /_collector/request shows one raw,
    credentials redacted, the body as received and why it was refused."""
    send_every_api(inspected)
    listed = get(inspected, "/_collector/requests")
    got = [(r["api"], r["method"], r["path"], r["status"]) for r in listed["requests"]]
    assert got == [
        (None, "GET", "/v2/nothing", 404),
        ("Bloomreach", "POST", "/track/v2/projects/proj-1/batch", 400),
        ("Track API", "POST", "/api/v2/entity", 400),
        ("Data Pipelines", "POST", "/v1/batch", 401),
        ("Bloomreach", "POST", "/track/v2/projects/proj-1/batch", 200),
        ("App API", "GET", "/v1/segments", 200),
        ("Track API", "POST", "/api/v2/batch", 200),
        ("Data Pipelines", "POST", "/v1/batch", 200),
    ]
    assert listed["matching"] == 8 and listed["apis"] == ["Data Pipelines", "Track API", "App API", "Bloomreach"]
    assert [r["api"] for r in get(inspected, "/_collector/requests?api=Track%20API")["requests"]] == ["Track API"] * 2
    assert [r["path"] for r in get(inspected, "/_collector/requests?api=other")["requests"]] == ["/v2/nothing"]
    refused = get(inspected, "/_collector/requests?refused=1")
    assert refused["matching"] == 4 and all(r["status"] >= 400 for r in refused["requests"])
    by_id = {r["id"]: get(inspected, f"/_collector/request?id={r['id']}")["request"] for r in listed["requests"]}
    dumped = json.dumps(by_id)
    for secret in ("track-secret", "app-secret", "br-secret", "br-token-secret", "wrong-key",
                   base64.b64encode(b"wrong-key:").decode()):
        assert secret not in dumped, secret
    nothing, br_bad, track_bad, dp_bad, br_ok, app_ok, track_ok, dp_ok = (by_id[r["id"]] for r in listed["requests"])
    assert track_bad["body"] == "{nope" and "not valid JSON" in track_bad["reason"]
    assert track_bad["headers"]["Authorization"] == "<redacted>"
    assert json.loads(track_ok["body"]) == {"batch": [{"type": "person", "action": "identify",
                                                       "identifiers": {"id": "42"}, "attributes": {"plan": "track-pro"}}]}
    assert dp_bad["reason"] == "unknown write key" and dp_bad["code"] == "unauthorized"
    assert json.loads(dp_bad["body"]) == {"batch": [], "sentAt": "x"}
    assert dp_ok["body"] is None and dp_ok["batch_id"] == 1  # its messages and envelope are with the batch
    assert "access_token=<redacted>" in br_bad["query"] and json.loads(br_bad["body"]) == {"oops": 1}
    assert "commands" in br_bad["reason"]
    assert json.loads(br_ok["body"])["commands"][0]["data"]["event_type"] == "br-buy"
    assert json.loads(br_ok["answer"])["success"] is True
    assert app_ok["method"] == "GET" and json.loads(app_ok["answer"])["segments"]
    assert nothing["api"] is None and nothing["query"] == "x=1" and "no route" in nothing["reason"]
    # a refusal links to its raw request
    refusal = get(inspected, "/_collector/refusals")["refusals"][-1]
    assert refusal["code"] == "unauthorized" and refusal["request_id"] == dp_bad["id"]
    get(inspected, "/_collector/request?id=999", status=404)
    assert get(inspected, "/_collector/requests?api=Nope", status=400)["code"] == "bad_request"


def test_a_batch_s_envelope_and_an_absent_sent_at(inspected: Collector) -> None:
    """/_collector/batch?id= shows the envelope (sentAt and the other top-level members) and headers
    (Authorization redacted); a batch without sentAt says so (null) and its messages say it too."""
    assert post_batch(inspected, [{"type": "track", "event": "E", "userId": "u", "messageId": "e-1"}],
                      sentAt="2024-05-05T05:05:05Z", context={"ip": "10.0.0.1"}, writeKey="leak") == 200
    assert post_batch(inspected, [{"type": "track", "event": "E", "userId": "u", "messageId": "e-2"}]) == 200
    first = get(inspected, "/_collector/batch?id=1")["batch"]
    assert first["sent_at"] == "2024-05-05T05:05:05Z"
    assert first["envelope"] == {"sentAt": "2024-05-05T05:05:05Z", "context": {"ip": "10.0.0.1"},
                                 "writeKey": "<redacted>"}
    assert first["headers"]["Authorization"] == "<redacted>" and "leak" not in json.dumps(first)
    second = get(inspected, "/_collector/batch?id=2")["batch"]
    assert second["sent_at"] is None and second["envelope"] == {}
    assert get(inspected, "/_collector/event?id=2")["summary"]["sent_at"] is None
    assert [b["sent_at"] for b in get(inspected, "/_collector/batches")["batches"]] == [None, "2024-05-05T05:05:05Z"]
    get(inspected, "/_collector/batch?id=3", status=404)


def test_without_kept_messages_no_request_is_kept() -> None:
    """keep_messages=False (long load runs) keeps no request bodies either."""
    with Collector(write_keys={WRITE_KEY}, keep_messages=False) as c:
        send_every_api(c)
        data = get(c, "/_collector/requests")
        assert data == {"requests": [], "matching": 0, "apis": list(Collector.API_NAMES), "kept": False}
        assert all(r.request_id is None for r in c.refused)


# -- issue 19 in the browser ----------------------------------------------------------------------


def first_row_id(pg: Any, table: str = "events-table") -> str:
    return pg.eval_on_selector(f"#{table} tbody tr[data-id]", "tr => tr.dataset.id")


def wait_first_row(pg: Any, expected: int, table: str = "events-table") -> None:
    pg.wait_for_function(f"(document.querySelector('#{table} tbody tr[data-id]') || {{dataset: {{}}}})"
                         f".dataset.id === '{expected}'")


def table_ids(pg: Any, table: str = "events-table") -> List[int]:
    return [int(i) for i in pg.eval_on_selector_all(f"#{table} tbody tr[data-id]", "trs => trs.map(t => t.dataset.id)")]


def test_browser_pages_through_every_message(page: Any, inspected: Collector) -> None:
    """Older/Newer/Newest page through all of 1,234 messages (not just the newest 500), 100 a page;
    a page of older messages stays put while new ones arrive."""
    store_many(inspected, 1234)
    page.goto(inspected.url + "/")
    wait_first_row(page, 1234)
    assert page.is_disabled("#pager-events .newer") and page.is_disabled("#pager-events .newest")
    seen = table_ids(page)
    for _ in range(20):
        if page.is_disabled("#pager-events .older"):
            break
        page.click("#pager-events .older")
        wait_first_row(page, seen[-1] - 1)
        seen += table_ids(page)
    assert seen == list(range(1234, 0, -1))
    assert "#1,134–#1" not in page.text_content("#pager-events")
    assert "messages #34–#1" in page.text_content("#pager-events") and "before=35" in page.url
    page.click("#pager-events .newer")
    wait_first_row(page, 134)
    store_many_more = [{"type": "track", "event": "Late", "userId": "u", "messageId": "late-1"}]
    assert post_batch(inspected, store_many_more) == 200
    page.wait_for_function("document.getElementById('c-messages').textContent === '1,235'")
    assert table_ids(page)[0] == 134  # the page shown does not move
    page.click("#pager-events .newest")
    wait_first_row(page, 1235)
    assert page.errors == []


def test_browser_searches_inside_payloads(page: Any, inspected: Collector) -> None:
    """The payload search box finds messages by their properties, traits and context."""
    send_mix(inspected)
    with Client(WRITE_KEY, host=inspected.url, max_in_flight=1, retry_policy=FAST) as c:
        c.track("u-x", "Bought", {"plan": "Pro Max"}, context={"campaign": {"name": "spring-sale"}}, message_id="b-1")
    page.goto(inspected.url + "/")
    wait_rows(page, 38)
    page.fill("#filter-q", "spring-sale")
    wait_rows(page, 1)
    assert rows(page)[0]["messageId"] == "b-1" and "q=spring-sale" in page.url
    page.fill("#filter-q", "example.com")  # identify traits
    wait_rows(page, 5)
    assert {r["type"] for r in rows(page)} == {"identify"}
    page.fill("#filter-q", '"i":2}')  # a property, written as it is in the message's JSON
    wait_rows(page, 1)
    assert rows(page)[0]["messageId"] == "t-2"
    assert page.errors == []


def test_browser_shows_every_api_s_traffic_named(page: Any, inspected: Collector) -> None:
    """Track API, App API and Bloomreach requests appear on the Requests tab beside the Data Pipelines
    ones, each with its API named; the API filter and "refused only" narrow the list."""
    send_every_api(inspected)
    page.goto(inspected.url + "/")
    page.click("#tab-requests")
    page.wait_for_function("document.querySelectorAll('#requests-table tbody tr[data-id]').length === 8")
    shown = page.eval_on_selector_all("#requests-table tbody tr[data-id]",
                                      "trs => trs.map(tr => [tr.children[2].textContent, tr.children[3].textContent,"
                                      " tr.children[4].textContent])")
    assert shown == [
        ["no API", "GET /v2/nothing", "404"],
        ["Bloomreach", "POST /track/v2/projects/proj-1/batch", "400"],
        ["Track API", "POST /api/v2/entity", "400"],
        ["Data Pipelines", "POST /v1/batch", "401"],
        ["Bloomreach", "POST /track/v2/projects/proj-1/batch", "200"],
        ["App API", "GET /v1/segments", "200"],
        ["Track API", "POST /api/v2/batch", "200"],
        ["Data Pipelines", "POST /v1/batch", "200"],
    ]
    page.select_option("#filter-api", "App API")
    page.wait_for_function("document.querySelectorAll('#requests-table tbody tr[data-id]').length === 1")
    page.click("#requests-table tbody tr[data-id]")
    page.wait_for_function("document.getElementById('detail-title').textContent.startsWith('App API: GET /v1/segments')")
    answer = page.text_content("#detail-extra .json-block:nth-child(2) pre")
    assert json.loads(answer)["segments"]
    page.select_option("#filter-api", "")
    page.check("#filter-refused")
    page.wait_for_function("document.querySelectorAll('#requests-table tbody tr[data-id]').length === 4")
    assert "tab=requests" in page.url and "refused=1" in page.url
    assert page.errors == []


def detail_blocks(pg: Any) -> Dict[str, str]:
    """The detail panel's JSON blocks: label -> text."""
    return dict(pg.eval_on_selector_all("#detail .json-block", "bs => bs.map(b => [b.querySelector('.label')"
                                        ".textContent, b.querySelector('pre').textContent])"))


def test_browser_shows_a_refused_request_raw_and_a_batch_envelope(page: Any, inspected: Collector) -> None:
    """Clicking a refused request shows why, its headers without the key and its body as received;
    clicking a batch shows its envelope (sentAt, or that it was absent) and headers."""
    send_every_api(inspected)
    assert post_batch(inspected, [{"type": "track", "event": "E", "userId": "u", "messageId": "no-sent-at"}]) == 200
    page.goto(inspected.url + "/")
    page.click("#tab-refusals")
    page.wait_for_function("document.querySelectorAll('#refusals-table tbody tr[data-id]').length === 4")
    page.click("#refusals-table tbody tr[data-id='1']")  # the bad write key
    page.wait_for_function("document.getElementById('detail-title').textContent.includes('401')")
    assert page.text_content("#detail-title") == "Data Pipelines: POST /v1/batch → 401"
    meta = page.text_content("#detail-meta")
    assert "why refused" in meta and "unknown write key" in meta
    blocks = detail_blocks(page)
    assert json.loads(blocks["body as received"]) == {"batch": [], "sentAt": "x"}
    headers = json.loads(blocks["headers (credentials redacted)"])
    assert headers["Authorization"] == "<redacted>" and headers["User-Agent"].startswith("python-requests")
    assert "wrong-key" not in page.text_content("#detail") and \
        base64.b64encode(b"wrong-key:").decode() not in page.text_content("#detail")
    assert json.loads(blocks["answer"])["code"] == "unauthorized"
    # a body that is not JSON is shown as the text it was
    page.click("#refusals-table tbody tr[data-id='2']")
    page.wait_for_function("document.getElementById('detail-title').textContent.includes('/api/v2/entity')")
    assert detail_blocks(page)["body as received"] == "{nope"
    assert "not valid JSON" in page.text_content("#detail-meta")
    # batches: the envelope and headers
    page.click("#tab-batches")
    page.wait_for_selector("#batches-table tbody tr[data-id='2']")
    page.click("#batches-table tbody tr[data-id='1']")
    page.wait_for_function("document.getElementById('detail-title').textContent === 'batch #1'")
    blocks = detail_blocks(page)
    assert json.loads(blocks["envelope (the body but its batch list)"]) == {
        "sentAt": "2024-01-01T00:00:00Z", "context": {"library": {"name": "dp-lib"}}}
    assert json.loads(blocks["headers (Authorization redacted)"])["Authorization"] == "<redacted>"
    assert "2024-01-01T00:00:00Z" in page.text_content("#detail-meta")
    page.click("#batches-table tbody tr[data-id='2']")
    page.wait_for_function("document.getElementById('detail-title').textContent === 'batch #2'")
    assert "absent: the body had no sentAt" in page.text_content("#detail-meta")
    assert page.text_content("#batches-table tbody tr[data-id='2'] td:nth-child(8)") == "absent"
    assert page.errors == []


def test_browser_json_collapses_copies_and_exports(page: Any, inspected: Collector) -> None:
    """The JSON is highlighted and collapsible (its text stays the JSON), Copy puts it on the clipboard,
    and Export downloads the filtered messages as JSON lines."""
    send_mix(inspected)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=inspected.url)
    page.goto(inspected.url + "/")
    wait_rows(page, 37)
    page.click("#events-table tbody tr[data-id='3']")
    page.wait_for_function("document.getElementById('detail-json').textContent.includes('t-2')")
    message = inspected.messages[2]
    assert page.eval_on_selector_all("#detail-json .j-key", "ks => ks.map(k => k.textContent)")[:3] == \
        ['"type"', '"userId"', '"event"']
    assert page.eval_on_selector_all("#detail-json .j-str", "s => s.length") >= 5
    toggle = "#detail-json .j-node .j-node > .j-toggle"  # the first nested object: properties
    assert page.get_attribute(toggle, "aria-expanded") == "true"
    page.click(toggle)
    assert page.get_attribute(toggle, "aria-expanded") == "false"
    assert not page.is_visible("#detail-json .j-node .j-node > .j-body")
    assert json.loads(page.text_content("#detail-json")) == message  # collapsed, still the JSON
    page.click("#detail-main .collapse-all")
    assert page.eval_on_selector_all("#detail-json .j-node.collapsed", "ns => ns.length") >= 2
    page.click("#detail-main .expand-all")
    assert page.eval_on_selector_all("#detail-json .j-node.collapsed", "ns => ns.length") == 0
    page.click("#copy-detail")
    page.wait_for_function("document.getElementById('copy-detail').textContent === 'Copied'")
    assert json.loads(page.evaluate("navigator.clipboard.readText()")) == message
    # export what the filters match
    page.fill("#filter-event", "signed")
    wait_rows(page, 10)
    with page.expect_download() as info:
        page.click("#export")
    lines = Path(info.value.path()).read_text().splitlines()
    assert [json.loads(line) for line in lines] == [m for m in inspected.messages if m["event" if "event" in m
                                                                                        else "type"] == "Signed Up"]
    assert page.errors == []


def test_browser_reset_and_fault_controls(page: Any, inspected: Collector) -> None:
    """The page's controls queue faults and reset the collector, through the same-origin control routes."""
    send_mix(inspected)
    page.goto(inspected.url + "/")
    wait_rows(page, 37)
    page.click("#toggle-controls")
    page.select_option("#fault-kind", "fail_next")
    page.fill("#fault-n", "2")
    page.fill("#fault-status", "503")
    page.fill("#fault-retry", "1")
    page.click("#fault-apply")
    page.wait_for_function("document.getElementById('control-result').textContent.includes('2 fault(s) pending')")
    assert inspected.stats()["pending_faults"] == 2
    r = requests.post(inspected.url + "/v1/batch", data=json.dumps({"batch": []}), auth=(WRITE_KEY, ""),
                      timeout=TIMEOUT)
    assert r.status_code == 503 and r.headers["Retry-After"] == "1"
    page.select_option("#fault-kind", "delay")
    assert page.is_hidden("#fault-n") and page.is_visible("#fault-seconds")
    page.fill("#fault-seconds", "0.25")
    page.click("#fault-apply")
    page.wait_for_function("document.getElementById('control-result').textContent.includes('delay')")
    assert inspected.delay == 0.25
    page.click("#reset")
    assert page.is_visible("#reset-yes") and inspected.stats()["messages"] == 37  # asks first
    page.click("#reset-yes")
    page.wait_for_selector("#events-table tbody tr.empty")
    assert inspected.messages == [] and inspected.stats()["pending_faults"] == 0 and inspected.delay == 0
    assert "reset" in page.text_content("#control-result")
    assert page.errors == []


OVERLAPS = """() => {
  const boxes = [];
  for (const sel of ["header", "#counters", "nav", "#detail", "#filters", "#matching", "#events .scroll",
                     "#pager-events"]) {
    const node = document.querySelector(sel);
    if (!node || node.hidden || !node.offsetParent && sel !== "header") continue;
    const r = node.getBoundingClientRect();
    if (r.width && r.height) boxes.push({sel, left: r.left, right: r.right, top: r.top, bottom: r.bottom,
                                         width: r.width});
  }
  const clash = [];
  for (let i = 0; i < boxes.length; i++) for (let j = i + 1; j < boxes.length; j++) {
    const a = boxes[i], b = boxes[j];
    if (a.left < b.right - 0.5 && b.left < a.right - 0.5 && a.top < b.bottom - 0.5 && b.top < a.bottom - 0.5)
      clash.push(a.sel + " / " + b.sel);
  }
  const controls = Array.from(document.querySelectorAll("header button, #filters input, #filters select, #filters button,"
    + " #filters a, #detail button, #pager-events button")).filter(n => n.offsetParent).map(n => n.getBoundingClientRect());
  return {boxes, clash, scrollWidth: document.documentElement.scrollWidth,
          outside: controls.filter(r => r.left < 0 || r.right > window.innerWidth + 0.5).length};
}"""


def test_browser_layout_works_at_390_px(browser: Any, inspected: Collector, tmp_path: Path) -> None:
    """At 390 px wide nothing overlaps or sticks out: the detail panel takes the full width above the
    list instead of squeezing beside a one-column table; checked on boxes and kept as a screenshot."""
    send_mix(inspected)
    send_every_api(inspected)
    context = browser.new_context(viewport={"width": 390, "height": 844}, bypass_csp=True)
    try:
        pg = context.new_page()
        pg.set_default_timeout(10_000)
        pg.goto(inspected.url + "/")
        wait_rows(pg, 38)
        pg.click("#events-table tbody tr[data-id='3']")
        pg.wait_for_function("document.getElementById('detail-json').textContent.includes('t-2')")
        layout = pg.evaluate(OVERLAPS)
        assert layout["clash"] == [] and layout["outside"] == 0, layout
        assert layout["scrollWidth"] <= 390, layout
        boxes = {b["sel"]: b for b in layout["boxes"]}
        assert boxes["#detail"]["width"] >= 340 and boxes["#events .scroll"]["width"] >= 340
        assert boxes["#detail"]["bottom"] <= boxes["#events .scroll"]["top"]  # above the list, not beside it
        shot = tmp_path / "inspector-390.png"
        pg.screenshot(path=str(shot), full_page=True)
        with open(shot, "rb") as f:
            head = f.read(24)
        assert head[:8] == b"\x89PNG\r\n\x1a\n" and int.from_bytes(head[16:20], "big") == 390
        # the other tabs too
        pg.click("#tab-requests")
        pg.wait_for_selector("#requests-table tbody tr[data-id]")
        pg.click("#requests-table tbody tr[data-id='7']")
        pg.wait_for_function("document.getElementById('detail-title').textContent.startsWith('App API')")
        assert pg.evaluate("document.documentElement.scrollWidth") <= 390
        status_cell = pg.eval_on_selector("#requests-table tbody tr[data-id='7'] td:nth-child(5)",
                                          "td => td.getBoundingClientRect().right")
        assert status_cell <= 390  # the status is in sight without scrolling the table
    finally:
        context.close()


def test_browser_page_runs_under_its_content_security_policy(browser: Any, inspected: Collector) -> None:
    """Without bypassing the CSP the page loads, lists, and opens a message, and logs no violation."""
    send_mix(inspected)
    context = browser.new_context()
    try:
        pg = context.new_page()
        pg.set_default_timeout(10_000)
        errors: List[str] = []
        pg.on("pageerror", lambda exc: errors.append(str(exc)))
        pg.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        pg.goto(inspected.url + "/")
        pg.wait_for_selector("#events-table tbody tr[data-id='37']")
        pg.click("#events-table tbody tr[data-id='37']")
        pg.wait_for_selector("#detail-json .j-key")
        pg.click("#tab-requests")
        pg.wait_for_selector("#requests-table tbody tr[data-id]")
        assert errors == []
    finally:
        context.close()


def test_a_write_key_in_a_refused_batch_body_is_redacted(inspected: Collector) -> None:
    """A refused Data Pipelines body keeps everything but a writeKey member (some clients send the key there)."""
    body = json.dumps({"batch": [{"type": "track"}], "writeKey": "secret-in-body", "sentAt": "x"})
    r = requests.post(inspected.url + "/v1/batch", data=body, auth=(WRITE_KEY, ""), timeout=TIMEOUT)
    assert r.status_code == 400
    [summary] = get(inspected, "/_collector/requests")["requests"]
    kept = get(inspected, f"/_collector/request?id={summary['id']}")["request"]
    assert json.loads(kept["body"]) == {"batch": [{"type": "track"}], "writeKey": "<redacted>", "sentAt": "x"}
    assert "writeKey redacted" in kept["body_note"] and "secret-in-body" not in json.dumps(kept)
    assert kept["reason"].startswith("batch[0]: ") and kept["code"] == "invalid_message"


def test_every_api_s_refusals_are_listed(inspected: Collector) -> None:
    """A Bloomreach request refused by its route is a refusal like the others, linked to its raw request."""
    send_every_api(inspected)
    refusals = get(inspected, "/_collector/refusals")
    assert [(r["status"], r["path"]) for r in refusals["refusals"]] == [
        (404, "/v2/nothing"), (400, "/track/v2/projects/proj-1/batch"), (400, "/api/v2/entity"), (401, "/v1/batch")]
    br = refusals["refusals"][1]
    assert "commands" in br["reason"] and br["code"] == "bad_request"
    assert get(inspected, f"/_collector/request?id={br['request_id']}")["request"]["api"] == "Bloomreach"
    assert inspected.stats()["refused"] == 4
