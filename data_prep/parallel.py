"""Worker pools and progress lines shared by every prep tool."""

from __future__ import annotations

import math
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TextIO, TypeVar

J = TypeVar("J")
R = TypeVar("R")


def default_workers(workers: int | None) -> int:
    """``workers``, or one per CPU core (at most 8) when None."""
    return max(1, min(workers or os.cpu_count() or 1, 8) if workers is None else workers)


def imap_jobs(fn: Callable[[J], R], jobs: Iterable[J], workers: int) -> Iterator[R]:
    """``fn`` over ``jobs`` in ``workers`` processes, results in completion order.

    One worker runs in this process (no start-up cost, easy to debug). Pools use *spawn*, not
    fork: callers (trainers) may hold torch/CUDA threads that a fork would copy mid-lock; the
    workers only need numpy, cv2 and PyAV (~0.5 s to start). The pool is torn down when the
    iterator is closed or garbage-collected, also on Ctrl-C.
    """
    todo = list(jobs)
    if workers <= 1 or len(todo) <= 1:
        yield from map(fn, todo)
        return
    pool = multiprocessing.get_context("spawn").Pool(min(workers, len(todo)))
    try:
        yield from pool.imap_unordered(fn, todo)
    finally:
        pool.terminate()
        pool.join()


def imap_progress(
    fn: Callable[[J], R],
    jobs: list[J],
    workers: int,
    label: str,
    unit: str,
    *,
    progress: bool = True,
    intro: str = "",
    bad: Callable[[R], Any] | None = None,
) -> Iterator[R]:
    """:func:`imap_jobs` with a :class:`Progress` line (when ``progress`` and there are jobs):
    ``intro`` first, then ``, N quarantined`` once ``bad(result)`` held for any result."""
    bar = Progress(label, len(jobs), unit) if progress and jobs else None
    if bar is not None and intro:
        print(intro, file=bar.stream)
    n_bad = 0
    for result in imap_jobs(fn, jobs, workers):
        n_bad += bool(bad and bad(result))
        if bar is not None:
            bar.step(note=f", {n_bad} quarantined" if n_bad else "")
        yield result


class Progress:
    """``label: done/total unit, rate/s, ETA`` on one live line (a terminal) or one line per
    10% / 30 s (a log file), and a final line at the end.

    The rate (and so the ETA) is measured from the first completion, not from the start: the
    first item also pays for the workers' start-up (spawned processes importing their modules),
    which would otherwise inflate the ETA of the early lines many times over. Until the rate has
    been measured over :attr:`MIN_ITEMS` items and :attr:`MIN_SECONDS`, the line says how long
    the first item took instead of an ETA; the final line gives the total time and mean rate.
    """

    MIN_ITEMS = 2  # completions after the first before an ETA is shown
    MIN_SECONDS = 1.0  # ... and seconds since the first

    def __init__(
        self, label: str, total: int, unit: str, stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:  # fmt: skip
        self.label, self.total, self.unit = label, total, unit
        self.stream: Any = stream if stream is not None else sys.stderr
        self.clock = clock
        self.done = 0
        self.t0 = clock()
        self._first: tuple[float, int] | None = None  # (time, done) at the first completion
        self._last = -math.inf

    def step(self, n: int = 1, note: str = "") -> None:
        self.done += n
        now = self.clock()
        if self._first is None:
            self._first = (now, self.done)
        tty = bool(getattr(self.stream, "isatty", lambda: False)())
        every = 0.5 if tty else 30.0
        tenth = self.done * 10 // max(self.total, 1) != (self.done - n) * 10 // max(self.total, 1)
        if now - self._last > every or self.done >= self.total or (tenth and not tty):
            self._last = now
            self._print(tty, note)

    def eta(self) -> float | None:
        """Seconds left at the rate since the first completion; None until it is measured."""
        if self._first is None:
            return None
        t1, n1 = self._first
        span, items = self.clock() - t1, self.done - n1
        if items < self.MIN_ITEMS or span < self.MIN_SECONDS:
            return None
        return (self.total - self.done) * span / items

    def line(self) -> str:
        """The progress text (without the carriage return)."""
        head = f"{self.label}: {self.done}/{self.total} {self.unit}"
        elapsed = self.clock() - self.t0
        if self.done >= self.total:
            rate = self.done / elapsed if elapsed > 0 else 0.0
            return f"{head} in {elapsed:.1f} s ({rate:.1f}/s)"
        eta = self.eta()
        if eta is not None:
            t1, n1 = self._first or (self.t0, 0)
            rate = (self.done - n1) / max(self.clock() - t1, 1e-9)
            return f"{head}, {rate:.1f}/s, ETA {eta:.0f} s"
        first = f", first after {self._first[0] - self.t0:.1f} s" if self._first else ""
        return f"{head}{first}, measuring the rate"

    def _print(self, tty: bool, note: str) -> None:
        end = "\n" if self.done >= self.total or not tty else ""
        print(f"{chr(13) if tty else ''}{self.line()}{note} ", end=end, file=self.stream,
              flush=True)  # fmt: skip
