"""``before_send``: a client's functions that shape or drop each message before it is encoded.

A drop is counted under ``dropped['before_send']``; a failure (an exception, or
a result that is not a dict) under ``dropped['before_send_error']``, logged once
per run of failures.  Neither reaches the caller or ``on_error``: the call
returns ``(False, message)``.
"""

from __future__ import annotations

import logging
from typing import Any, Optional

from .messages import Message
from .stats import Stats

__all__ = ["BeforeSend"]

log = logging.getLogger("customerio.analytics")


class BeforeSend:
    """Runs a client's ``before_send`` function(s), remembering how many failed in a row."""

    def __init__(self) -> None:
        self.failures = 0  # failures since before_send last worked

    def shape(self, msg: Message, before_send: Any, stats: Optional[Stats]) -> Optional[Message]:
        """``msg`` through ``before_send`` (a function or a tuple of them); ``None`` when one dropped it
        or failed, counted in ``stats`` (``None``: not counted, the client does not send)."""
        for function in before_send if isinstance(before_send, tuple) else (before_send,):
            try:
                msg = function(msg)
                if msg is not None and not isinstance(msg, dict):
                    raise TypeError(f"before_send returned a {type(msg).__name__}, not a dict or None")
            except Exception as exc:
                self.failures += 1
                if self.failures == 1:
                    log.warning("before_send raised %s: %s; the message is dropped (and so are the next ones "
                                "it fails on, logged again when it works)", type(exc).__name__, exc)
                if stats is not None:
                    stats.count_lost("before_send_error", 1, None, at_call=True)
                return None
            if msg is None:
                if stats is not None:
                    stats.count_lost("before_send", 1, None, at_call=True)
                break
        if self.failures and msg is not None:
            log.warning("before_send works again; %d message(s) were dropped while it failed", self.failures)
            self.failures = 0
        return msg
