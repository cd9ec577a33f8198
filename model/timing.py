"""Wall-clock time per stage of a run, for the log and for benchmarks/ (never in results)."""

from __future__ import annotations

import time


class Stopwatch:
    """`mark(name)` adds the time since the previous mark to `name` (stages may repeat)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self._last = time.perf_counter()

    def mark(self, name: str) -> float:
        now = time.perf_counter()
        spent = now - self._last
        self.seconds[name] = self.seconds.get(name, 0.0) + spent
        self.counts[name] = self.counts.get(name, 0) + 1
        self._last = now
        return spent
