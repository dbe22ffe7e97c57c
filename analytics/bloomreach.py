"""The Bloomreach Engagement client, under its documented import path.

It lives in :mod:`analytics.clients.bloomreach` (with the other direct API
clients' plumbing); this module re-exports its public names, so
``from analytics.bloomreach import BloomreachClient, customers, event`` keeps working.
"""

from .clients.bloomreach import *  # noqa: F401,F403
from .clients.bloomreach import __all__ as __all__  # noqa: F401
