"""Wall-clock time per stage of a run, for the log and for benchmarks/ (never in results),
and the progress lines a long run writes to stderr (logger `capest.progress`)."""

from __future__ import annotations

import logging
import time

progress_log = logging.getLogger("capest.progress")
# in a fit's timings: when its provisional estimate was logged, in seconds since the fit began
ESTIMATE_SAID = "estimate said (s into the fit)"


class Stopwatch:
    """`mark(name)` adds the time since the previous mark to `name` (stages may repeat).
    `begin(stage, done, total)` says on the progress log which stage starts, how far the
    run is and the time so far, so that a run of minutes shows where it is."""

    def __init__(self, label: str = "") -> None:
        self.label = label
        self.seconds: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self._start = self._last = time.perf_counter()

    def mark(self, name: str, count: bool = True) -> float:
        """The seconds since the last mark, added to `name`'s; `count`: one more of them (a
        stage marked in parts counts once)."""
        now = time.perf_counter()
        spent = now - self._last
        self.seconds[name] = self.seconds.get(name, 0.0) + spent
        self.counts[name] = self.counts.get(name, 0) + int(count)
        self._last = now
        return spent

    def elapsed(self) -> float:
        """Seconds since the stopwatch began."""
        return time.perf_counter() - self._start

    def begin(self, stage: str, done: int | None = None, total: int | None = None) -> None:
        how_far = f" ({done}/{total})" if total is not None else ""
        so_far = self.elapsed()
        prefix = f"{self.label}: " if self.label else ""
        progress_log.info("%s%s%s, %.0f s so far", prefix, stage, how_far, so_far)


# While a fit samples, a progress line this often: nutpie calls `SamplingProgress` every
# second, and a programme's main fit samples for minutes (7.5 on the synthetic programme)
# with no other line on stderr.
SAMPLING_EVERY = 10.0  # seconds


class SamplingProgress:
    """A progress line every `every` seconds while a fit samples: the fit, whether it is
    still tuning, its draws done out of all (tuning included) and its divergences so far.
    Called by nutpie (`nutpie.sample(progress_callback=...)`, a list of its chains'
    progress) or, through `pymc_callback`, by PyMC's NUTS once a draw."""

    def __init__(self, watch: Stopwatch, stage: str, every: float | None = None) -> None:
        self.watch, self.stage = watch, stage
        self.every = SAMPLING_EVERY if every is None else every
        self._last = time.perf_counter()

    def _due(self) -> bool:
        now = time.perf_counter()
        if now - self._last < self.every:
            return False
        self._last = now
        return True

    def _line(self, tuning: bool, divergences: int, done: int, total: int) -> None:
        phase = "tuning" if tuning else "sampling"
        self.watch.begin(f"{self.stage}: {phase}, {divergences} divergences, draws", done, total)

    def __call__(self, chains) -> None:
        if not self._due():
            return
        try:
            done = sum(c.finished_draws for c in chains)
            total = sum(c.total_draws for c in chains)
            tuning = any(c.tuning for c in chains)
            divergences = sum(c.divergences for c in chains)
        except AttributeError:  # another nutpie's progress: no line rather than no fit
            return
        self._line(tuning, divergences, done, total)

    def pymc_callback(self, chains: int, per_chain: int):
        """`pm.sample(callback=...)`: PyMC's NUTS calls it in this process with every draw
        of every chain (`draw`: chain, draw_idx, tuning, stats); `per_chain` is tune + draws."""
        done, tuning, divergences = [0] * chains, [True] * chains, [0]

        def callback(trace, draw) -> None:
            done[draw.chain] = draw.draw_idx + 1
            tuning[draw.chain] = draw.tuning
            stats = draw.stats[0] if isinstance(draw.stats, list | tuple) else draw.stats
            divergences[0] += bool(stats.get("diverging", False))
            if self._due():
                self._line(any(tuning), divergences[0], sum(done), chains * per_chain)

        return callback
