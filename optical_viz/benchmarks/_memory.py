"""Peak resident memory of a block of code, for the benchmarks (Linux; 0 elsewhere)."""
from __future__ import annotations

import os
import threading


def rss() -> int:
    """Resident set size of this process in bytes (0 where /proc is missing)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


class PeakRSS:
    """Peak resident memory above the level at entry, sampled every ``interval`` seconds by a
    thread (and once more at exit).

    >>> with PeakRSS() as mem:
    ...     block = bytearray(50 * 2**20)
    >>> mem.extra_mb >= 0
    True
    """

    def __init__(self, interval: float = 0.005):
        self.interval = interval

    def __enter__(self):
        self.base = self.peak = rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, rss())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss())

    @property
    def extra_mb(self) -> float:
        """Peak minus the level at entry, in MiB, to 0.1."""
        return round((self.peak - self.base) / 2**20, 1)
