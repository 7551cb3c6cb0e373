"""A one-line progress display on stderr: done/total, images/s, ETA and errors.

It draws only when stderr is a terminal; piped into a log file or a cluster
job's output it stays silent, and the build's summary says what happened.
Records finished by an earlier, interrupted run are counted as done but not
in the rate, so a resumed build's ETA is not flattered by them.
"""

from __future__ import annotations

import sys
import time

import click

from vlconvert.pipeline.build import Progress

_MIN_INTERVAL = 0.2  # seconds between redraws


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def render(progress: Progress, elapsed: float, label: str) -> str:
    fresh = progress.done - progress.resumed
    rate = fresh / elapsed if elapsed > 0 else 0.0
    percent = 100 * progress.done / progress.total if progress.total else 100.0
    remaining = progress.total - progress.done
    eta = _clock(remaining / rate) if rate > 0 else "--:--:--"
    line = f"{label} {percent:5.1f}% {progress.done:,}/{progress.total:,} · {rate:,.1f} img/s · ETA {eta} · {progress.errors:,} errors"
    if progress.resumed:
        line += f" · {progress.resumed:,} resumed"
    return line


class ProgressLine:
    def __init__(self, label: str, stream=None):
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()
        self._started: float | None = None  # the first call, once planning is done, starts the clock
        self._last_draw = 0.0
        self._width = 0

    def __call__(self, progress: Progress) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if self._started is None:
            self._started = now
        if now - self._last_draw < _MIN_INTERVAL and progress.done < progress.total:
            return
        self._last_draw = now
        line = render(progress, now - self._started, self.label)
        self.stream.write("\r" + line.ljust(self._width))
        self.stream.flush()
        self._width = len(line)

    def __enter__(self) -> ProgressLine:
        return self

    def __exit__(self, *exc) -> None:
        if self.enabled and self._width:
            self.stream.write("\n")
            self.stream.flush()


class ProgressBar:
    """click's bar, for steps (lit-train): it appears once the total is known."""

    def __init__(self, label: str):
        self.label = label
        self._bar = None

    @property
    def active(self) -> bool:
        return self._bar is not None

    def __call__(self, done: int, total: int) -> None:
        if self._bar is None:
            self._bar = click.progressbar(length=total, label=self.label, file=sys.stderr, show_pos=True)
            self._bar.__enter__()
        self._bar.update(done - self._bar.pos)

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
