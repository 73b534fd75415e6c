"""The emulated clock: wall time plus an offset that ``POST /_localcloud/clock`` advances.

Models (upgrade progress, maintenance windows, visibility timeouts) read this clock; request
signatures are checked against the real wall clock, because the clients sign with it.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone


class Clock:
    """Monotonic-enough emulated time in epoch seconds.

    >>> c = Clock(); t = c.now(); c.advance(3600); c.now() - t >= 3600
    True
    """

    def __init__(self, offset: float = 0.0) -> None:
        self._offset = offset
        self._lock = threading.Lock()

    def now(self) -> float:
        return time.time() + self._offset

    def utcnow(self) -> datetime:
        return datetime.fromtimestamp(self.now(), tz=timezone.utc)

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        with self._lock:
            self._offset += seconds
        return self.now()

    @property
    def offset(self) -> float:
        return self._offset
