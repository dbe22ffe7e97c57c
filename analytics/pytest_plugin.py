"""The pytest fixture ``analytics_capture`` (see :func:`analytics.testing.capture`).

Installed with the library through a ``pytest11`` entry point, so any project's
tests can ask for it; it costs nothing to tests that do not.
"""

from __future__ import annotations

from typing import Iterator

import pytest

from .testing import Captured, capture


@pytest.fixture
def analytics_capture() -> Iterator[Captured]:
    """Every message sent through analytics during the test, captured instead of sent."""
    with capture() as captured:
        yield captured
