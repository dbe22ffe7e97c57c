"""analytics.encoding: dumps/normalize turn any reasonable Python value into compact, valid JSON.

The tests of this subject that start processes (a fork, a subprocess, a server command); the others are in ``tests/unit/test_encoding.py``."""

from __future__ import annotations
import subprocess
import sys


def test_deeply_nested_tuples_do_not_crash_the_interpreter():
    """orjson does not count tuples against its recursion limit and corrupts memory past a few thousand
    levels (orjson <= 3.13: abort or segfault); dumps refuses them like any nesting deeper than 200."""
    script = (
        "from analytics import encoding\n"
        "from analytics.errors import UnserializableValueError\n"
        "v = 1\n"
        "for _ in range(20000): v = (v,)\n"
        "for value in (v, {'properties': {'t': v}}, [[v]]):\n"
        "    try:\n"
        "        encoding.dumps(value)\n"
        "    except UnserializableValueError as exc:\n"
        "        print('refused', exc.path[:15])\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines() == ["refused [0][0][0][0][0]", "refused properties.t[0]", "refused [0][0][0][0][0]"]
