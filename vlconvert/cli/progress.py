"""Progress on stderr: a redrawn line on a terminal, a plain periodic line in a log.

On a terminal one line shows done/total, images/s, ETA and errors, redrawn in
place.  Piped into a log file or a cluster job's output, a redrawn line would be
noise, but nothing at all looks like a hang: there a plain ``key=value`` line
goes out every ``VLCONVERT_PROGRESS_INTERVAL`` seconds (default 30; 0 turns it
off), e.g. ``progress stage=build done=1200 total=5000 errors=0 elapsed_s=31.0
rate=38.7/s eta_s=98``.  Records finished by an earlier, interrupted run are
counted as done but not in the rate, so a resumed build's ETA is not flattered
by them.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time

import click

from vlconvert.pipeline.build import Progress

_MIN_INTERVAL = 0.2  # seconds between redraws
INTERVAL_VARIABLE = "VLCONVERT_PROGRESS_INTERVAL"
DEFAULT_INTERVAL = 30.0  # seconds between plain lines: a heartbeat, not a flood, in a week-long job's log


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


def render_plain(progress: Progress, elapsed: float, stage: str, errors: bool = True) -> str:
    """One line for logs: ``key=value`` pairs, no ANSI codes or thousands separators, so ``grep``/``awk`` read it."""
    rate = (progress.done - progress.resumed) / elapsed if elapsed > 0 else 0.0
    fields = [f"stage={stage}", f"done={progress.done}", f"total={progress.total}"]
    if errors:
        fields.append(f"errors={progress.errors}")
    if progress.resumed:
        fields.append(f"resumed={progress.resumed}")
    fields += [f"elapsed_s={elapsed:.1f}", f"rate={rate:.1f}/s"]
    if rate > 0:
        fields.append(f"eta_s={max(progress.total - progress.done, 0) / rate:.0f}")
    return "progress " + " ".join(fields)


def plain_interval() -> float | None:
    """Seconds between plain lines, from the environment; None: none at all."""
    text = os.environ.get(INTERVAL_VARIABLE, "").strip()
    if not text:
        return DEFAULT_INTERVAL
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if math.isnan(seconds) or seconds < 0:
        click.echo(f"warning: {INTERVAL_VARIABLE}={text!r} is not a number of seconds; using {DEFAULT_INTERVAL:g}", err=True)
        return DEFAULT_INTERVAL
    return seconds if 0 < seconds < math.inf else None


class _PlainLines:
    """Writes the latest progress every ``interval`` seconds from a thread, so a log shows the build is alive
    even while one long shard task keeps the callbacks away."""

    def __init__(self, stage: str, stream, interval: float, errors: bool):
        self.stage, self.stream, self.interval, self.errors = stage, stream, interval, errors
        self._latest: Progress | None = None
        self._started = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def update(self, progress: Progress) -> None:
        self._latest = progress  # one reference swap: the thread reads a whole Progress, old or new
        if self._thread is None:
            self._started = time.perf_counter()
            self._thread = threading.Thread(target=self._run, name="vlconvert-progress", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            line = render_plain(self._latest, time.perf_counter() - self._started, self.stage, self.errors)
            try:
                self.stream.write(line + "\n")
                self.stream.flush()
            except (OSError, ValueError):  # the log went away (a closed pipe): progress is not worth a crash
                return

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def _plain_lines(stage: str, stream, errors: bool) -> _PlainLines | None:
    interval = plain_interval()
    return _PlainLines(stage, stream, interval, errors) if interval else None


class ProgressLine:
    """The build's progress: ``stage`` names it in the plain lines (one word, e.g. ``build``)."""

    def __init__(self, label: str, stream=None, stage: str | None = None):
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()
        self._plain = None if self.enabled else _plain_lines(stage or label.replace(" ", "_"), self.stream, errors=True)
        self._started: float | None = None  # the first call, once planning is done, starts the clock
        self._last_draw = 0.0
        self._width = 0

    def __call__(self, progress: Progress) -> None:
        if self._plain is not None:
            self._plain.update(progress)
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
        if self._plain is not None:
            self._plain.close()
        if self.enabled and self._width:
            self.stream.write("\n")
            self.stream.flush()


class ProgressBar:
    """click's bar, for steps (lit-train): it appears once the total is known.  Off a terminal, plain lines instead
    (``stage`` is the label's first word); ``active`` then stays False, as nothing is left mid-line."""

    def __init__(self, label: str, stage: str | None = None):
        self.label = label
        self._bar = None
        self._plain = None if sys.stderr.isatty() else _plain_lines(stage or label.split()[0], sys.stderr, errors=False)

    @property
    def active(self) -> bool:
        return self._bar is not None

    def __call__(self, done: int, total: int) -> None:
        if self._plain is not None:
            self._plain.update(Progress(done, total, 0, 0))
            return
        if self._bar is None:
            self._bar = click.progressbar(length=total, label=self.label, file=sys.stderr, show_pos=True)
            self._bar.__enter__()
        self._bar.update(done - self._bar.pos)

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc) -> None:
        if self._plain is not None:
            self._plain.close()
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
