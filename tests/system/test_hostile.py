"""Property-based hostile-input tests.

The tests of this subject that start processes (a fork, a subprocess, a server command); the others are in ``tests/integration/test_hostile.py``."""

from __future__ import annotations
import datetime as dt
import json
import os
import subprocess
import sys
import textwrap
from decimal import Decimal
from typing import Any
from analytics import encoding
from analytics.errors import UnserializableValueError
from ..integration.test_hostile import _encode, deep  # shared with the tests there


try:
    import numpy as np
except ImportError:  # pragma: no cover - numpy is in the test environment
    np = None


def test_stdlib_backend_in_a_process_without_orjson():
    """With orjson unimportable, BACKEND is "json" and dumps gives the same bytes and errors as
    _std_only_dumps (and as orjson) for a set of awkward values."""
    script = textwrap.dedent(
        """
        import sys
        sys.modules["orjson"] = None  # import orjson -> ImportError
        import datetime as dt, decimal, json
        from analytics import encoding
        from analytics.errors import UnserializableValueError
        assert encoding.BACKEND == "json", encoding.BACKEND
        def deep(n):
            v = 1
            for _ in range(n):
                v = (v,)
            return v
        values = [
            {1: "a", "1": "b"}, {True: 1, "true": 2}, [1e-07, 0.00001, 1e16, float("nan")],
            {"s": "bad\\ud800", "t": "é"}, 2**70, deep(150), deep(250), deep(5000),
            {"d": dt.datetime(2020, 1, 2, 3, 4, 5)}, decimal.Decimal("sNaN"), b"\\xff", 10**5000,
        ]
        out = []
        for v in values:
            try:
                out.append(["ok", encoding.dumps(v).decode("utf-8")])
            except UnserializableValueError as exc:
                out.append(["error", exc.path])
        print(json.dumps(out))
        """
    )
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=root)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)

    def deep(n):
        v: Any = 1
        for _ in range(n):
            v = (v,)
        return v

    values = [
        {1: "a", "1": "b"}, {True: 1, "true": 2}, [1e-07, 0.00001, 1e16, float("nan")],
        {"s": "bad\ud800", "t": "é"}, 2**70, deep(150), deep(250), deep(5000),
        {"d": dt.datetime(2020, 1, 2, 3, 4, 5)}, Decimal("sNaN"), b"\xff", 10**5000,
    ]
    expected = []
    for v in values:
        outcome, result = _encode(encoding.dumps, v)
        assert (outcome, result) == _encode(encoding._std_only_dumps, v)
        expected.append([outcome, result.decode("utf-8") if outcome == "ok" else result])
    assert got == expected
    assert got[0] == ["ok", '{"1":"b"}']
    assert got[2] == ["ok", "[1e-07,1e-05,1e+16,null]"]
