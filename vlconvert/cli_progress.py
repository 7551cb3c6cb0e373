"""A progress bar on stderr that appears once the total is known (after planning or setup)."""

from __future__ import annotations

import sys

import click


class ProgressBar:
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
