"""Message building and validation through Client(send=False) and the module facade (no network).

The tests of this subject that start processes (a fork, a subprocess, a server command); the others are in ``tests/unit/test_messages.py``."""

from __future__ import annotations
import os
import select

import pytest
from analytics import messages
from ..unit.test_messages import is_uuid4  # shared with the tests there


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_message_ids_differ_after_fork():
    """A forked child does not hand out the ids its parent hands out next."""
    messages.new_message_id()  # the generator has state to inherit
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            os.close(r)
            os.write(w, messages.new_message_id().encode())
        finally:
            os._exit(0)
    os.close(w)
    parent_id = messages.new_message_id()
    data = b""
    try:
        while select.select([r], [], [], 10)[0]:  # bounded: gives up after 10 s of silence
            chunk = os.read(r, 100)
            if not chunk:  # EOF: the child has exited
                break
            data += chunk
        else:
            os.kill(pid, 9)
            pytest.fail("the child neither wrote nor exited within 10 s")
    finally:
        os.close(r)
        os.waitpid(pid, 0)  # the child closed the pipe by exiting (or was killed): returns at once
    child_id = data.decode()
    assert is_uuid4(child_id)
    assert child_id != parent_id
