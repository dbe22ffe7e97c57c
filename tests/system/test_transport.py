"""The default transport: keep-alive http.client connections, requests for proxies, verified TLS.

The tests of this subject that start processes (a fork, a subprocess, a server command); the others are in ``tests/integration/test_transport.py``."""

from __future__ import annotations

import os

import pytest

from analytics.transport import HTTPTransport

from ..integration.test_transport import BODY, _auth_headers  # shared with the tests there


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore:.*use of fork\\(\\) may lead to deadlocks:DeprecationWarning")
def test_after_fork_leaves_the_parents_connection_alone(collector):
    """In a forked child after_fork() drops the inherited keep-alive connection without ending it:
    the child connects anew and the parent keeps using its own connection."""
    from .test_fork import _fork_call

    t = HTTPTransport()
    url = collector.url + "/v1/batch"
    try:
        assert t.post(url, BODY, _auth_headers(), 5, None).status == 200
        (conn,) = t.connections()
        sock = conn.sock

        def child() -> list:
            t.after_fork()
            status = t.post(url, BODY, _auth_headers(), 5, None).status
            return [status, conn.sock is None, len(t.connections())]

        assert _fork_call(child) == [200, True, 1]
        assert collector.stats()["connections"] == 2  # the parent's and the child's own
        assert t.post(url, BODY, _auth_headers(), 5, None).status == 200
        assert conn.sock is sock and collector.stats()["connections"] == 2
    finally:
        t.close()
