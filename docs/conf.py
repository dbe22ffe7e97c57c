"""Sphinx configuration: ``make docs`` builds the site into docs/_build/html.

Nothing here reaches the network (no intersphinx): the build runs offline and
``tests/system/test_docs_build.py`` fails on any warning.
"""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from analytics.version import VERSION  # noqa: E402

project = "cdp-relay"
author = "cdp-relay contributors"
copyright = "cdp-relay contributors"
release = VERSION
version = VERSION

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.autosectionlabel",
]

# Section labels are "page:Title" (e.g. :ref:`guides/spool:Durable spool`), so
# the same title on two pages is no clash.
autosectionlabel_prefix_document = True

autodoc_member_order = "bysource"
autodoc_typehints = "description"
# The optional extras (redis, httpx, opentelemetry, celery, django, flask) are
# imported lazily by the modules that use them; nothing needs mocking.
napoleon_google_docstring = True
napoleon_numpy_docstring = False

exclude_patterns = ["_build"]
html_theme = "alabaster"
html_static_path = []
html_theme_options = {
    "description": "A Customer.io Data Pipelines client for Python",
    "page_width": "1180px",  # room for the option tables and the benchmark table
}

# The packages re-export classes from their modules (analytics.RetryPolicy is
# analytics.retry.RetryPolicy), and autodoc records both names; a type hint
# written as a bare name (``RetryPolicy``) then matches both. That ambiguity is
# the only warning of this kind and says nothing about the docs themselves.
suppress_warnings = ["ref.python"]
