"""The sizes and costs of the values a caption template handles, and the filters that check them first.

``caption_sandbox.py`` counts a template's operations and bounds its values; this
module says how big a value is (:func:`text_size`, without building its text),
what handing it to an operation costs (:func:`weight`), and replaces the Jinja
filters and ``str`` methods that can make a value much larger than their
operands (``replace``, ``join``, ``indent``, ``wordwrap``, ``format``, ``ljust``,
…) with versions that work out the result's size before building it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from jinja2.filters import (
    do_format,
    do_indent,
    do_replace,
    do_tojson,
    do_wordwrap,
    make_attrgetter,
    sync_do_join,
    sync_do_slice,
    sync_do_sum,
)
from jinja2.sandbox import SecurityError
from jinja2.utils import pass_environment, pass_eval_context

MAX_CAPTION_CHARS = 2000  # far past CLIP's 77 tokens; anything longer is a runaway template
MAX_VALUE_CHARS = 100_000  # any string a template builds on the way (metadata itself may be longer)
MAX_ITEMS = 100_000  # Jinja's own range limit
MAX_INT_BITS = 4096
MAX_OPERATIONS = 50_000  # a taxonomic caption takes about 30; CUB's 312 attributes a few thousand
BIG_WIDTH = re.compile(r"[%:{][^a-zA-Z%}]*?\d{4,}")  # "%2000000000s", "{:>2000000000}"
GROWING_STR_METHODS = {"ljust", "rjust", "center", "zfill", "expandtabs", "replace", "join", "format", "format_map",
                        "translate"}


class TemplateLimit(SecurityError):
    """A render passed one of the sandbox's limits: the same template fails the same way on every run."""


CHARS_PER_OPERATION = 1000  # the size of a value, in operations: one per item, one per thousand characters


def weight(value: Any, limit: int) -> int:
    """What handing ``value`` to an operation costs: its items (nested too) and its text per thousand
    characters.  Walks no further than ``limit``, so working it out costs no more than it charges."""
    total, pending = 0, [value]
    while pending and total <= limit:
        item = pending.pop()
        if isinstance(item, str):
            total += len(item) // CHARS_PER_OPERATION
        elif isinstance(item, (list, tuple, set, frozenset, Mapping)):
            total += len(item)
            if total <= limit:
                pending.extend(item.values() if isinstance(item, Mapping) else item)
        elif isinstance(item, range):
            total += len(item)
        elif isinstance(item, int):
            total += item.bit_length() // 4096
    return total


def text_size(value: Any, limit: int = MAX_VALUE_CHARS) -> int:
    """``len(str(value))``, worked out without building the text; stops counting once past ``limit``."""
    if isinstance(value, str):
        return len(value)
    if value is None or isinstance(value, (bool, float)):
        return len(str(value))
    if isinstance(value, int):
        return value.bit_length() // 3 + 2
    if isinstance(value, (list, tuple, set, frozenset)):
        total = 2
        for item in value:
            total += text_size(item, limit) + 2 + (2 if isinstance(item, str) else 0)
            if total > limit:
                break
        return total
    if isinstance(value, Mapping):
        total = 2
        for key, item in value.items():
            total += text_size(key, limit) + text_size(item, limit) + 6
            if total > limit:
                break
        return total
    return len(str(value))  # a Markup, an Undefined (which raises), a namespace: small


def check_text(value: Any, what: str) -> None:
    if text_size(value) > MAX_VALUE_CHARS:
        raise TemplateLimit(f"{what} would be longer than {MAX_VALUE_CHARS:,} characters")


def checked(value: Any) -> Any:
    """Any value an operation produced: within the limits, or refused."""
    if isinstance(value, str):
        if len(value) > MAX_VALUE_CHARS:
            raise TemplateLimit(f"a string grew past {MAX_VALUE_CHARS:,} characters")
    elif isinstance(value, (list, tuple, dict, set, frozenset)):
        if len(value) > MAX_ITEMS:
            raise TemplateLimit(f"a list grew past {MAX_ITEMS:,} items")
    elif isinstance(value, int) and not isinstance(value, bool):
        if value.bit_length() > MAX_INT_BITS:
            raise TemplateLimit(f"a number grew past {MAX_INT_BITS} bits")
    return value


# ---------------------------------------------------------------------- filters whose output size is checked first


def width_checked(filter_function, limit: int = MAX_CAPTION_CHARS):
    def capped(value, width=80, *args, **kwargs):
        if isinstance(width, int) and width > limit:
            raise SecurityError(f"a width over {limit} is not allowed in caption templates")
        return filter_function(value, width, *args, **kwargs)
    return capped


def check_format(text: str, values) -> None:
    if BIG_WIDTH.search(text):
        raise SecurityError("format widths over 999 are not allowed in caption templates")
    values = values if isinstance(values, (tuple, Mapping)) else (values,)
    items = values.values() if isinstance(values, Mapping) else values
    if len(text) + sum(text_size(v) for v in items) + 999 * text.count("%") > MAX_VALUE_CHARS:
        raise TemplateLimit(f"formatting would make a string longer than {MAX_VALUE_CHARS:,} characters")


def checked_format(value, *args, **kwargs):
    if isinstance(value, str):
        check_format(value, kwargs if kwargs else args)
    return do_format(value, *args, **kwargs)


def _replaced_size(text: str, old: str, new: str, count: int | None = None) -> int:
    occurrences = len(text) + 1 if old == "" else text.count(old)
    if count is not None and count >= 0:
        occurrences = min(occurrences, count)
    return len(text) + occurrences * (len(new) - len(old))


@pass_eval_context
def checked_replace(eval_ctx, s, old, new, count=None):
    if _replaced_size(str(s), str(old), str(new), count) > MAX_VALUE_CHARS:
        raise TemplateLimit(f"replace would make a string longer than {MAX_VALUE_CHARS:,} characters")
    return do_replace(eval_ctx, s, old, new, count)


@pass_eval_context
def checked_join(eval_ctx, value, d="", attribute=None):
    items = list(value)
    if attribute is not None:
        getter = make_attrgetter(eval_ctx.environment, attribute)
        items = [getter(item) for item in items]
    if len(items) > MAX_ITEMS or sum(text_size(i) for i in items) + text_size(d) * max(0, len(items) - 1) > MAX_VALUE_CHARS:
        raise TemplateLimit(f"join would make a string longer than {MAX_VALUE_CHARS:,} characters")
    return sync_do_join(eval_ctx, items, d)


def checked_indent(s, width=4, first=False, blank=False):
    step = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
    if step > MAX_CAPTION_CHARS or len(str(s)) + (str(s).count("\n") + 1) * step > MAX_VALUE_CHARS:
        raise TemplateLimit(f"indent would make a string longer than {MAX_VALUE_CHARS:,} characters")
    return do_indent(s, width, first, blank)


@pass_environment
def checked_wordwrap(environment, s, width=79, break_long_words=True, wrapstring=None, break_on_hyphens=True):
    breaks = len(str(s)) // max(1, width if isinstance(width, int) else 1) + 1
    if len(str(s)) + breaks * len(wrapstring or "\n") > MAX_VALUE_CHARS:
        raise TemplateLimit(f"wordwrap would make a string longer than {MAX_VALUE_CHARS:,} characters")
    return do_wordwrap(environment, s, width, break_long_words, wrapstring, break_on_hyphens)


def checked_batch(value, linecount, fill_with=None):
    from jinja2.filters import do_batch

    if not isinstance(linecount, int) or linecount > MAX_ITEMS:
        raise TemplateLimit(f"batch takes at most {MAX_ITEMS:,} items a batch")
    return list(do_batch(value, linecount, fill_with))


@pass_eval_context
def checked_slice(eval_ctx, value, slices, fill_with=None):
    if not isinstance(slices, int) or slices > MAX_ITEMS:
        raise TemplateLimit(f"slice makes at most {MAX_ITEMS:,} slices")
    return list(sync_do_slice(value, slices, fill_with))


@pass_environment
def checked_sum(environment, iterable, attribute=None, start=0):
    if not isinstance(start, (int, float)) or isinstance(start, bool):
        raise SecurityError("sum adds numbers only in caption templates")
    return sync_do_sum(environment, iterable, attribute, start)


@pass_eval_context
def checked_tojson(eval_ctx, value, indent=None):
    if indent is not None and (not isinstance(indent, int) or indent > 8):
        raise SecurityError("tojson's indent is at most 8 in caption templates")
    check_text(value, "tojson's output")
    return do_tojson(eval_ctx, value, indent)


def check_str_method(text: str, name: str, args: tuple, kwargs: dict) -> tuple:
    """Work out, from the arguments, how long a str method's result would be; refuse one past the cap.

    Returns the arguments to call it with (an iterable to ``join`` is drawn once, here)."""
    first = args[0] if args else None
    if name in ("ljust", "rjust", "center", "zfill"):
        size = first if isinstance(first, int) else 0
    elif name == "expandtabs":
        tab = first if isinstance(first, int) else kwargs.get("tabsize", 8)
        size = len(text) + text.count("\t") * (tab if isinstance(tab, int) else 0)
    elif name == "replace":
        size = _replaced_size(text, str(args[0]), str(args[1]), args[2] if len(args) > 2 else None) if len(args) >= 2 else 0
    elif name == "join":
        items = list(first) if first is not None else []
        size = sum(text_size(i) for i in items) + len(text) * max(0, len(items) - 1)
        args = (items,)
    elif name == "translate":
        table = first if isinstance(first, Mapping) else {}
        size = len(text) * max([1] + [text_size(v) for v in table.values()])
    else:  # format, format_map: the arguments are the text
        values = list(args) + list(kwargs.values()) + (list(first.values()) if name == "format_map" and isinstance(first, Mapping) else [])
        size = len(text) + sum(text_size(v) for v in values) + 999 * text.count("{")
    if size > MAX_VALUE_CHARS:
        raise TemplateLimit(f"str.{name} would make a string longer than {MAX_VALUE_CHARS:,} characters")
    return args
