"""The size limits of the Customer.io APIs, defined once.

Data Pipelines (``/v1/batch``) and the Track API v2 (``/api/v2/batch``)
refuse an item over 32 KB (32,768 bytes, encoded) and a request body over
500 KB (500,000 bytes, decimal, before compression).
"""

from __future__ import annotations

__all__ = ["MAX_MESSAGE_BYTES", "MAX_BODY_BYTES"]

#: The largest single item (a message, a v2 operation), encoded, in bytes.
MAX_MESSAGE_BYTES = 32 * 1024
#: The largest request body, in bytes before compression.
MAX_BODY_BYTES = 500_000
