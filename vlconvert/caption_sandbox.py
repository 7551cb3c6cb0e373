"""The Jinja environment captions render in: Jinja's sandbox plus limits on time and size.

Jinja's sandbox blocks Python internals (``__class__``, ``__globals__``) and
ranges over 100,000; a template could still spin in nested loops or build a
gigabyte string with one filter.  Here every render has a wall-clock budget and
an output cap, text repetition and format widths are bounded, and ``lipsum``
is gone.
"""

from __future__ import annotations

import re
import signal
import threading
from collections.abc import Mapping
from contextlib import contextmanager
from typing import Any

import jinja2
from jinja2.filters import do_center, do_format, do_indent
from jinja2.sandbox import SandboxedEnvironment, SecurityError

MAX_CAPTION_CHARS = 2000  # far past CLIP's 77 tokens; anything longer is a runaway template
MAX_RENDER_SECONDS = 2.0
_BIG_WIDTH = re.compile(r"[%:{][^a-zA-Z%}]*?\d{4,}")  # "%2000000000s", "{:>2000000000}"


class RenderTimeout(Exception):
    pass


def _refuse_null(value: Any) -> Any:
    # StrictUndefined catches missing fields, but a present-and-null one (an iNat
    # image without latitude) would print "None" into the caption.
    if value is None:
        raise ValueError("a field printed by the template is null for this record; "
                         "print it inside {% if … is not none %} or give it a default")
    return value


def _capped_width(filter_function, limit: int = MAX_CAPTION_CHARS):
    def capped(value, width=80, *args, **kwargs):
        if isinstance(width, int) and width > limit:
            raise SecurityError(f"a width over {limit} is not allowed in caption templates")
        return filter_function(value, width, *args, **kwargs)
    return capped


def _checked_format(value, *args, **kwargs):
    if isinstance(value, str) and _BIG_WIDTH.search(value):
        raise SecurityError("format widths over 999 are not allowed in caption templates")
    return do_format(value, *args, **kwargs)


class CaptionSandbox(SandboxedEnvironment):
    intercepted_binops = frozenset(["**", "*"])

    def __init__(self, filters: Mapping[str, Any]):
        super().__init__(undefined=jinja2.StrictUndefined, autoescape=False, finalize=_refuse_null)
        self.globals.pop("lipsum", None)
        self.filters.update(filters)
        self.filters.update(center=_capped_width(do_center), indent=_capped_width(do_indent), format=_checked_format)

    def call_binop(self, context, operator, left, right):
        if operator == "**":
            raise SecurityError("the ** operator is not allowed in caption templates")
        if operator == "*":
            sequence, count = (left, right) if isinstance(right, int) else (right, left)
            if isinstance(sequence, (str, list, tuple)) and isinstance(count, int) and len(sequence) * count > MAX_CAPTION_CHARS:
                raise SecurityError(f"repeating text past {MAX_CAPTION_CHARS} characters is not allowed in caption templates")
        return super().call_binop(context, operator, left, right)

    def wrap_str_format(self, value):
        """Jinja's safe ``str.format``, refusing huge widths ("{:>2000000000}")."""
        wrapped = super().wrap_str_format(value)
        if wrapped is not None and _BIG_WIDTH.search(str(value.__self__)):
            def refuse(*args, **kwargs):
                raise SecurityError("format widths over 999 are not allowed in caption templates")
            return refuse
        return wrapped

    def render(self, template: jinja2.Template, context: Mapping[str, Any]) -> str:
        """The rendered text, within the time budget and the output cap."""
        parts, size = [], 0
        with _time_budget(MAX_RENDER_SECONDS):
            for chunk in template.generate(context):
                size += len(chunk)
                if size > MAX_CAPTION_CHARS:
                    raise SecurityError(f"the caption grew past {MAX_CAPTION_CHARS} characters")
                parts.append(chunk)
        return "".join(parts)


@contextmanager
def _time_budget(seconds: float):
    # SIGALRM reaches only the main thread; elsewhere (a caller's own thread) renders run unbudgeted.
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return

    def expire(signum, frame):
        raise RenderTimeout(f"rendering took longer than {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
