"""Option checks: values that would make every send fail are refused at once, naming the option;

The tests of this subject that start processes (a fork, a subprocess, a server command); the others are in ``tests/unit/test_options.py``."""

from __future__ import annotations
import json
import os
import subprocess
import sys
from pathlib import Path

import analytics

from ..conftest import WRITE_KEY
ROOT = Path(__file__).resolve().parents[2]


NAN, INF = float("nan"), float("inf")


def test_the_worker_command_does_not_print_the_password() -> None:
    """``python -m analytics worker --queue 'Redis://:secret@...'`` fails with a message that hides the password."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), CDP_WRITE_KEY=WRITE_KEY)
    for queue in ("Redis://:secret@127.0.0.1:6379/0", " redis://user:secret@127.0.0.1:6379/0"):
        done = subprocess.run([sys.executable, "-m", "analytics", "worker", "--queue", queue],
                              capture_output=True, text=True, env=env, timeout=60)
        assert done.returncode == 2, done.stderr
        assert "queue must be" in done.stderr and "***" in done.stderr
        assert "secret" not in done.stderr + done.stdout


def test_the_cli_refuses_a_bad_host_without_showing_its_password() -> None:
    """``cdp-relay track --host`` with a space and a password exits 2 and does not print the password."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-m", "analytics", "track", "-k", WRITE_KEY, "-u", "1", "-e", "E",
                           "--host", "http://user:secret@127.0.0.1 :1"], capture_output=True, text=True, env=env,
                          timeout=60)
    assert done.returncode == 2 and "--host" in done.stderr and "secret" not in done.stderr, done.stderr


def test_the_module_settings_are_the_tables_facade_options_with_its_defaults() -> None:
    """analytics' settings are the table's facade options, annotated for type checkers, with the table's defaults."""
    from analytics.options import DEFAULTS, OPTIONS

    assert analytics._SETTINGS == tuple(o.name for o in OPTIONS if o.facade and o.live)
    assert analytics._CREATION_SETTINGS == tuple(o.name for o in OPTIONS if o.facade and not o.live)
    names = analytics._SETTINGS + analytics._CREATION_SETTINGS
    assert set(names) <= set(analytics.__annotations__)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    code = f"import analytics, json; print(json.dumps({{n: repr(getattr(analytics, n)) for n in {names!r}}}))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert json.loads(done.stdout) == {name: repr(DEFAULTS[name]) for name in names}, done.stderr
