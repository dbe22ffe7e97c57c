"""v2 operation builders and shape check, and the collector's Track API routes spoken to directly."""

from __future__ import annotations
import gzip
import json
from typing import Any, Dict, Iterator, List, Optional

import pytest
import requests

from analytics.collector import Collector


SITE, KEY = "site-v2", "key-v2"


@pytest.fixture
def collector() -> Iterator[Collector]:
    with Collector() as c:
        yield c


def post(c: Collector, path: str, data: Any, *, auth: Any = (SITE, KEY), gzipped: bool = False,
         method: str = "POST", headers: Optional[Dict[str, str]] = None) -> requests.Response:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    hdrs = {"Content-Type": "application/json", **(headers or {})}
    if gzipped:
        raw = gzip.compress(raw)
        hdrs["Content-Encoding"] = "gzip"
    return requests.request(method, c.url + path, data=raw, headers=hdrs, auth=auth, timeout=5)


def ident(i: int) -> Dict[str, Any]:
    return {"type": "person", "action": "identify", "identifiers": {"id": str(i)}, "attributes": {"n": i}}


def test_collector_batch_207_stores_the_good_items(collector: Collector) -> None:
    """Bad items get a 207 with batch_index, reason, field, message; the good ones are stored."""
    items: List[Any] = [ident(0), {"type": "person", "action": "event", "identifiers": {"id": "1"}}, ident(2),
                        {"type": "object", "action": "identify", "identifiers": {"object_id": "x"}}, "junk",
                        {"type": "person", "action": "identify", "identifiers": {"id": "5"},
                         "attributes": {"pad": "x" * 33_000}}]
    r = post(collector, "/api/v2/batch", {"batch": items})
    assert r.status_code == 207
    errors = r.json()["errors"]
    assert [(e["batch_index"], e["reason"], e.get("field")) for e in errors] == [
        (1, "required", "name"), (3, "invalid", "identifiers"), (4, "invalid", None), (5, "invalid", None)]
    assert "over the 32768-byte limit" in errors[3]["message"]
    store = collector.track_api
    assert store.operations == [ident(0), ident(2)]
    assert [a.batch_index for a in store.accepted] == [0, 2]
    assert store.item_errors[0]["request"] == 0 and len(store.item_errors) == 4
    assert store.requests[0].status == 207 and store.requests[0].stored == 2


def test_collector_gzip_and_records(collector: Collector) -> None:
    """A gzipped batch is accepted and recorded with its site id, sizes and request."""
    body = {"batch": [ident(i) for i in range(20)]}
    r = post(collector, "/api/v2/batch", body, gzipped=True)
    assert r.status_code == 200 and r.json() == {}
    [request] = collector.track_api.requests
    assert request.raw_size == len(json.dumps(body).encode()) and request.compressed_size < request.raw_size
    accepted = collector.track_api.accepted
    assert len(accepted) == 20 and all(a.gzipped and a.site_id == SITE and a.request == 0 for a in accepted)
    assert collector.request_log[0].stored and collector.request_log[0].messages == 20


@pytest.mark.parametrize("auth", [None, ("", KEY), (SITE, ""), ("other", KEY)])
def test_collector_401(collector: Collector, auth: Any) -> None:
    """No auth, a blank half, or (once a pair is allowed) an unknown pair: 401, nothing stored."""
    collector.track_api.allow(SITE, KEY)
    r = post(collector, "/api/v2/batch", {"batch": [ident(0)]}, auth=auth)
    assert r.status_code == 401 and r.json()["errors"][0]["reason"] == "unauthorized"
    assert collector.track_api.operations == [] and collector.refused[0].status == 401
    assert post(collector, "/api/v2/batch", {"batch": [ident(0)]}).status_code == 200


def test_collector_refuses_what_the_api_would(collector: Collector) -> None:
    """Over 500,000 bytes: 413; not JSON or a bad gzip: 400; no or empty batch: 400; other encodings: 415."""
    big = {"batch": [ident(0)], "pad": "x" * 500_000}
    assert post(collector, "/api/v2/batch", big).status_code == 413
    assert post(collector, "/api/v2/batch", big, gzipped=True).status_code == 413
    assert post(collector, "/api/v2/batch", b"{not json").status_code == 400
    assert post(collector, "/api/v2/batch", b"\x1f\x8b junk", headers={"Content-Encoding": "gzip"}).status_code == 400
    assert post(collector, "/api/v2/batch", {"items": []}).status_code == 400
    assert post(collector, "/api/v2/batch", {"batch": []}).status_code == 400
    assert post(collector, "/api/v2/batch", {"batch": [ident(0)]}, headers={"Content-Encoding": "br"}).status_code == 415
    assert post(collector, "/api/v2/batch", {"batch": [ident(0)]}, method="GET").status_code == 404
    assert collector.track_api.operations == []


def test_collector_entity_route(collector: Collector) -> None:
    """/api/v2/entity stores one valid operation (200 {}) and refuses a bad one with 400."""
    assert post(collector, "/api/v2/entity", ident(1)).status_code == 200
    r = post(collector, "/api/v2/entity", {"type": "person", "action": "page", "identifiers": {"id": "1"}})
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "name"
    collector.track_api.reject_when(lambda op: op["identifiers"].get("id") == "9", field="identifiers.id",
                                    message="nope")
    r = post(collector, "/api/v2/entity", ident(9))
    assert r.status_code == 400 and r.json()["errors"][0] == {"reason": "invalid", "field": "identifiers.id",
                                                              "message": "nope"}
    assert collector.track_api.operations == [ident(1)]
    assert [a.endpoint for a in collector.track_api.accepted] == ["entity"]


def test_collector_v1_routes_check_bodies(collector: Collector) -> None:
    """v1 bodies the official clients would never send are refused with 400."""
    assert post(collector, "/api/v1/customers/u1/events", {"data": {}}).status_code == 400
    assert post(collector, "/api/v1/customers/u1/events", {"name": "e", "data": []}).status_code == 400
    assert post(collector, "/api/v1/customers/u1/devices", {"device": {"id": "t"}}, method="PUT").status_code == 400
    assert post(collector, "/api/v1/merge_customers", {"primary": {"id": "1"}}).status_code == 400
    assert post(collector, "/api/v1/merge_customers",
                {"primary": {"phone": "1"}, "secondary": {"id": "2"}}).status_code == 400
    assert post(collector, "/api/v1/customers/u1", [1], method="PUT").status_code == 400
    assert post(collector, "/api/v1/customers/u1", b"", method="DELETE").status_code == 200
    assert [c.action for c in collector.track_api.v1_calls] == ["delete"]


def test_collector_faults_apply_to_track_routes(collector: Collector) -> None:
    """fail_next and drop_next hit the Track API routes; reset() gives a fresh store."""
    collector.fail_next(1, status=503, retry_after=2)
    r = post(collector, "/api/v2/batch", {"batch": [ident(0)]})
    assert r.status_code == 503 and r.headers["Retry-After"] == "2"
    collector.drop_next(1)
    with pytest.raises(requests.ConnectionError):
        post(collector, "/api/v1/customers/u1", {}, method="PUT")
    assert collector.track_api.operations == [] and collector.track_api.v1_calls == []
    assert [r.status for r in collector.request_log] == [503, 0]
    post(collector, "/api/v2/batch", {"batch": [ident(0)]})
    old = collector.track_api
    collector.reset()
    assert collector.track_api is not old and collector.track_api.operations == []


def test_collector_wait_for_and_by_action(collector: Collector) -> None:
    """wait_for returns once enough operations arrived; by_action counts them."""
    post(collector, "/api/v2/batch", {"batch": [ident(0), ident(1)]})
    post(collector, "/api/v1/customers/u1/suppress", {})
    assert collector.track_api.wait_for(2, timeout=1)
    assert not collector.track_api.wait_for(3, timeout=0.05)
    assert collector.track_api.by_action() == {"person/identify": 2, "v1/suppress": 1}
