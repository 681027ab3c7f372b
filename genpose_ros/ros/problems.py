"""Bad-input reporting shared by the nodes: log a warning naming the problem, rate-limited per
text, and keep it in a bounded list that tests and diagnostics can read."""
from __future__ import annotations

import time
from collections import deque


class ProblemLog:
    def __init__(self, logger, maxlen: int = 200):
        self._logger = logger
        self.items: deque[str] = deque(maxlen=maxlen)
        self._last: dict[str, float] = {}

    def warn(self, text: str, period_s: float = 2.0):
        """Log ``text`` as a warning (the same text at most once per ``period_s``) and keep it."""
        self.items.append(text)
        now = time.monotonic()
        if now - self._last.get(text, -1e9) >= period_s:
            self._last[text] = now
            self._logger.warning(text)
