"""A virtualenv with gunicorn's eventlet worker, for tests/system/test_fork.py's gunicorn tests.

gunicorn 26 removed its eventlet worker (eventlet's maintainers deprecated
eventlet), so the test virtualenv's gunicorn has none: this one pins the last
gunicorn that ships it and an eventlet that runs on this Python, and installs
this checkout into it (editable).  It is built once, under ``.cache/`` in the
checkout, in a directory named after the pins and the checkout's build files,
so later runs reuse it; a build for other pins is removed.  Building it needs
the package index; where that fails the tests that need it are skipped, with
pip's own words as the reason.
"""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Optional, Tuple

ROOT = Path(__file__).resolve().parents[2]

# 25.3.0 is the last gunicorn with `-k eventlet` (deprecated there, removed in 26.0);
# eventlet 0.41.3 supports Python 3.10 to 3.14, gunicorn 25 needs eventlet >= 0.40.3.
GUNICORN = "25.3.0"
EVENTLET = "0.41.3"
MIN_PYTHON = (3, 10)  # both pins require it

CACHE = ROOT / ".cache"
PREFIX = "eventlet-venv-"


def _key() -> str:
    build_files = b"".join((ROOT / name).read_bytes() for name in ("setup.cfg", "setup.py", "pyproject.toml"))
    return f"gunicorn{GUNICORN}-eventlet{EVENTLET}-py{sys.version_info[0]}{sys.version_info[1]}-" + (
        hashlib.sha256(build_files).hexdigest()[:12]
    )


def _works(python: Path) -> bool:
    """Whether a built virtualenv still runs (its base interpreter may have gone since)."""
    try:
        check = [str(python), "-c", "import eventlet, gunicorn.workers.geventlet"]
        return subprocess.run(check, capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def eventlet_python() -> Tuple[Optional[str], str]:
    """(the virtualenv's python, "") once it is built, or (None, why it could not be)."""
    if sys.version_info < MIN_PYTHON:
        return None, f"gunicorn {GUNICORN} and eventlet {EVENTLET} need Python 3.10+"
    venv = CACHE / (PREFIX + _key())
    python = venv / "bin" / "python"
    stamp = venv / ".installed"
    CACHE.mkdir(exist_ok=True)
    with open(CACHE / (PREFIX + "lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time (several pytest runs may start together)
        if stamp.exists() and _works(python):
            return str(python), ""
        for old in CACHE.glob(PREFIX + "*"):
            if old.is_dir():
                shutil.rmtree(old, ignore_errors=True)  # other pins, or a build that stopped half-way
        steps = [
            [sys.executable, "-m", "venv", str(venv)],
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             f"gunicorn=={GUNICORN}", f"eventlet=={EVENTLET}", "-e", str(ROOT)],
        ]  # fmt: skip
        for cmd in steps:
            try:
                done = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
            except subprocess.TimeoutExpired:
                return None, f"{' '.join(cmd[:4])} ... did not finish within 240 s"
            if done.returncode != 0:
                shutil.rmtree(venv, ignore_errors=True)
                lines = [line.strip() for line in (done.stderr + done.stdout).splitlines() if line.strip()]
                errors = [line for line in lines if line.startswith("ERROR:")]  # pip's own reasons, if it gave any
                why = " | ".join(dict.fromkeys(errors or lines[-3:]))
                return None, f"could not install gunicorn {GUNICORN} and eventlet {EVENTLET}: {why}"
        stamp.touch()
    return str(python), ""
