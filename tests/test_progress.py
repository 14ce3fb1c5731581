"""The prep tools' progress line (data_prep/parallel.py): an honest ETA from the first item on."""

from __future__ import annotations

import io

from data_prep.parallel import Progress


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def _bar(total: int = 320) -> tuple[Progress, Clock, io.StringIO]:
    clock, out = Clock(), io.StringIO()
    return Progress("synth", total, "clips built", stream=out, clock=clock), clock, out


def test_start_up_is_not_in_the_eta() -> None:
    """Workers take 5 s to start, then 8 clips/s: the ETA says ~40 s, never 800 s."""
    bar, clock, out = _bar()
    clock.t += 5.0  # start-up: the first clip lands after 5 s
    bar.step()
    first = out.getvalue().splitlines()[-1]
    assert "ETA" not in first and "first after 5.0 s" in first, first
    assert bar.eta() is None
    for _ in range(31):
        clock.t += 1 / 8
        bar.step()
    eta = bar.eta()
    assert eta is not None and abs(eta - (320 - 32) / 8) < 1e-6  # 36 s, not (320-32) * 36/32 s
    line = bar.line()
    assert "8.0/s" in line and "ETA 36 s" in line, line


def test_no_eta_until_measured() -> None:
    """Two quick completions right after the first (a pool's burst) give no ETA yet."""
    bar, clock, _ = _bar()
    clock.t += 3.0
    bar.step()
    clock.t += 0.01
    bar.step(2)
    assert bar.eta() is None  # 2 items but 0.01 s: not a rate
    assert "measuring the rate" in bar.line()
    clock.t += 1.0
    bar.step()
    assert bar.eta() is not None


def test_final_line_and_log_lines() -> None:
    """A log file gets one line per 10% and a final line with the total time and mean rate."""
    bar, clock, out = _bar(total=20)
    for _ in range(20):
        clock.t += 0.5
        bar.step(note="")
    lines = out.getvalue().splitlines()
    assert len(lines) == 11  # the first completion, then 10% steps (the last is the final)
    assert lines[-1].strip() == "synth: 20/20 clips built in 10.0 s (2.0/s)"
    assert all("ETA" not in ln for ln in lines[:2])


def test_single_item() -> None:
    bar, clock, out = _bar(total=1)
    clock.t += 2.0
    bar.step(note=", 1 quarantined")
    assert out.getvalue().strip() == "synth: 1/1 clips built in 2.0 s (0.5/s), 1 quarantined"
