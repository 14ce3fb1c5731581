"""Worker pools and progress lines shared by every prep tool."""

from __future__ import annotations

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
    10% / 30 s (a log file), and a final line at the end."""

    def __init__(self, label: str, total: int, unit: str, stream: TextIO | None = None) -> None:
        self.label, self.total, self.unit = label, total, unit
        self.stream: Any = stream if stream is not None else sys.stderr
        self.done = 0
        self.t0 = time.monotonic()
        self._last = 0.0

    def step(self, n: int = 1, note: str = "") -> None:
        self.done += n
        now = time.monotonic()
        tty = bool(getattr(self.stream, "isatty", lambda: False)())
        every = 0.5 if tty else 30.0
        tenth = self.done * 10 // max(self.total, 1) != (self.done - n) * 10 // max(self.total, 1)
        if now - self._last > every or self.done >= self.total or (tenth and not tty):
            self._last = now
            self._print(tty, note)

    def _print(self, tty: bool, note: str) -> None:
        elapsed = time.monotonic() - self.t0
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else float("nan")
        end = "\n" if self.done >= self.total or not tty else ""
        print(f"{chr(13) if tty else ''}{self.label}: {self.done}/{self.total} {self.unit}, "
              f"{rate:.1f}/s, ETA {eta:.0f} s{note} ", end=end, file=self.stream,
              flush=True)  # fmt: skip
