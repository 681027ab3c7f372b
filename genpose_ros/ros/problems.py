"""Bad-input reporting shared by the nodes: log a warning naming the problem, rate-limited per
kind of message, and keep it in a bounded list that tests and diagnostics can read."""
from __future__ import annotations

import re
import time
from collections import deque

_NUMBER = re.compile(r"\d+(?:\.\d+)?(?:e[-+]?\d+)?")


class ProblemLog:
    def __init__(self, logger, maxlen: int = 200):
        self._logger = logger
        self.items: deque[str] = deque(maxlen=maxlen)
        self._last: dict[str, float] = {}

    def warn(self, text: str, period_s: float = 2.0):
        """Log ``text`` as a warning and keep it. Texts that differ only in their numbers
        (stamps, counts, values seen) are one kind: logged at most once per ``period_s``
        (``math.inf``: once), each one kept in ``items``."""
        self.items.append(text)
        kind = _NUMBER.sub("#", text)
        now = time.monotonic()
        if kind not in self._last or now - self._last[kind] >= period_s:
            self._last[kind] = now
            self._logger.warning(text)
