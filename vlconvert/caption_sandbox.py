"""The Jinja environment captions render in: Jinja's immutable sandbox plus deterministic limits.

Jinja's sandbox blocks Python internals (``__class__``, ``__globals__``),
mutating lists and dicts, and ranges over 100,000.  A template from someone
else could still spin in nested loops or build a gigabyte string with one
filter or operator.  So here, on every render:

* **operations are counted**, not timed: every loop iteration, call, filter,
  test, attribute or item lookup, comparison and arithmetic operator costs one,
  plus the size of what it is handed (an item of a list, a thousand characters of
  text), so a sort or a ``==`` of big values costs what it does; a render past
  ``MAX_OPERATIONS`` is refused.  The same template and record take the same
  count on any machine, so a limit fails on every run or on none (a wall-clock
  budget failed on some samples and not others);
* **every value is bounded before it is built**: a string a filter, method,
  ``~``, ``+``, ``*`` or ``%`` would make longer than ``MAX_VALUE_CHARS``, a list
  of more than ``MAX_ITEMS``, an integer over ``MAX_INT_BITS``, text captured
  by ``{% set %}`` blocks and macros past ``MAX_VALUE_CHARS``, and a caption
  past ``MAX_CAPTION_CHARS`` are refused, with the size worked out from the
  operands, so no single C call can allocate gigabytes;
* filters with no place in a caption and no deterministic output are gone:
  ``random`` (a different caption on every run), ``lipsum``, ``urlize``.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Iterable, Mapping
from types import GeneratorType
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.compiler import CodeGenerator
from jinja2.filters import (
    do_center,
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
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError
from jinja2.utils import pass_environment, pass_eval_context
from jinja2.visitor import NodeTransformer

MAX_CAPTION_CHARS = 2000  # far past CLIP's 77 tokens; anything longer is a runaway template
MAX_VALUE_CHARS = 100_000  # any string a template builds on the way (metadata itself may be longer)
MAX_ITEMS = 100_000  # Jinja's own range limit
MAX_INT_BITS = 4096
MAX_OPERATIONS = 50_000  # a taxonomic caption takes about 30; CUB's 312 attributes a few thousand
_BIG_WIDTH = re.compile(r"[%:{][^a-zA-Z%}]*?\d{4,}")  # "%2000000000s", "{:>2000000000}"
_GROWING_STR_METHODS = {"ljust", "rjust", "center", "zfill", "expandtabs", "replace", "join", "format", "format_map",
                        "translate"}


class TemplateLimit(SecurityError):
    """A render passed one of the sandbox's limits: the same template fails the same way on every run."""


def _refuse_null(value: Any) -> Any:
    # StrictUndefined catches missing fields, but a present-and-null one (an iNat
    # image without latitude) would print "None" into the caption.
    if value is None:
        raise ValueError("a field printed by the template is null for this record; "
                         "print it inside {% if … is not none %} or give it a default")
    _check_text(value, "a printed value")
    return value


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


def _check_text(value: Any, what: str) -> None:
    if text_size(value) > MAX_VALUE_CHARS:
        raise TemplateLimit(f"{what} would be longer than {MAX_VALUE_CHARS:,} characters")


def _checked(value: Any) -> Any:
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


class _Count(threading.local):
    operations = 0


class _BoundedBuffer(list):
    """The output a ``{% set %}`` block, macro, filter block or ``caller()`` captures, within MAX_VALUE_CHARS."""

    def __init__(self):
        super().__init__()
        self.size = 0

    def append(self, text) -> None:
        self.size += len(text)
        if self.size > MAX_VALUE_CHARS:
            raise TemplateLimit(f"captured template output grew past {MAX_VALUE_CHARS:,} characters")
        super().append(text)

    def extend(self, texts: Iterable) -> None:
        for text in texts:
            self.append(text)


class _BoundedCodeGenerator(CodeGenerator):
    def buffer(self, frame) -> None:
        frame.buffer = self.temporary_identifier()
        self.writeline(f"{frame.buffer} = environment.bounded_buffer()")


class _CountLoopsAndConcats(NodeTransformer):
    """Rewrites ``for x in ITER`` as ``for x in _vlconvert_loop(ITER)``, ``a ~ b`` as ``_vlconvert_concat(a, b)``
    and the operands of a comparison ``a == b`` as ``_vlconvert_charged(a) == _vlconvert_charged(b)``."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = nodes.Call(nodes.Name("_vlconvert_loop", "load"), [node.iter], [], None, None, lineno=node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return nodes.Call(nodes.Name("_vlconvert_concat", "load"), list(node.nodes), [], None, None, lineno=node.lineno)

    def visit_Compare(self, node: nodes.Compare) -> nodes.Node:
        self.generic_visit(node)
        node.expr = _charged(node.expr)
        for operand in node.ops:
            operand.expr = _charged(operand.expr)
        return node


def _charged(expression: nodes.Expr) -> nodes.Expr:
    return nodes.Call(nodes.Name("_vlconvert_charged", "load"), [expression], [], None, None, lineno=expression.lineno)


class CaptionSandbox(ImmutableSandboxedEnvironment):
    code_generator_class = _BoundedCodeGenerator
    intercepted_binops = frozenset(["+", "-", "*", "/", "//", "%", "**"])
    intercepted_unops = frozenset(["-", "+"])

    def __init__(self, filters: Mapping[str, Any]):
        super().__init__(undefined=jinja2.StrictUndefined, autoescape=False)
        self.count = _Count()
        for name in ("lipsum",):
            self.globals.pop(name, None)
        for name in ("random", "urlize"):
            self.filters.pop(name, None)
        self.filters.update(filters)
        self.finalize = self._finalize
        self.filters.update(center=_width_checked(do_center), format=_format, replace=_replace, join=_join,
                            indent=_indent, wordwrap=_wordwrap, batch=_batch, slice=_slice, sum=_sum, tojson=_tojson)
        self.filters = {name: self._counted(f) for name, f in self.filters.items()}
        self.tests = {name: self._counted(t) for name, t in self.tests.items()}
        self.globals.update(_vlconvert_loop=self._loop, _vlconvert_concat=self._concat, _vlconvert_charged=self._charged)

    # ------------------------------------------------------------------ operations

    def tick(self, cost: int = 1) -> None:
        self.count.operations += cost
        if self.count.operations > MAX_OPERATIONS:
            raise TemplateLimit(f"the template took more than {MAX_OPERATIONS:,} operations for one caption")

    def charge(self, *values) -> None:
        """One operation, plus the weight of what it is handed, charged before it runs."""
        left = MAX_OPERATIONS - self.count.operations
        self.tick(1 + sum(weight(v, left) for v in values))

    def _charged(self, value):
        """A comparison's operand, charged by its size (``==`` on two long lists walks both)."""
        self.charge(value)
        return value

    def _finalize(self, value):
        self.charge(value)
        return _refuse_null(value)

    def _counted(self, function):
        @functools.wraps(function)  # keeps jinja_pass_arg: the wrapper is passed what the filter expects
        def counted(*args, **kwargs):
            self.charge(*args, *kwargs.values())
            return self._result(function(*args, **kwargs))
        return counted

    def _result(self, value: Any) -> Any:
        if isinstance(value, GeneratorType):  # map, select, ...: each item costs an operation as it is drawn
            return self._loop(value)
        return _checked(value)

    def _loop(self, iterable):
        for item in iterable:
            self.tick()
            yield item

    def _concat(self, *parts) -> str:
        self.charge(*parts)
        texts = [str(p) for p in parts] if sum(text_size(p) for p in parts) <= MAX_VALUE_CHARS else None
        if texts is None:
            raise TemplateLimit(f"joining with ~ would make a string longer than {MAX_VALUE_CHARS:,} characters")
        return _checked("".join(texts))

    def bounded_buffer(self) -> _BoundedBuffer:
        return _BoundedBuffer()

    def getattr(self, obj, attribute):
        self.tick()
        return super().getattr(obj, attribute)

    def getitem(self, obj, argument):
        self.tick()
        return super().getitem(obj, argument)

    def call_binop(self, context, operator, left, right):
        self.charge(left, right)
        if operator == "**":
            raise SecurityError("the ** operator is not allowed in caption templates")
        if operator == "*":
            sequence, count = (left, right) if isinstance(right, int) else (right, left)
            if isinstance(sequence, (str, list, tuple)) and isinstance(count, int) and not isinstance(count, bool):
                limit = MAX_VALUE_CHARS if isinstance(sequence, str) else MAX_ITEMS
                if len(sequence) * count > limit:
                    raise TemplateLimit(f"repeating past {limit:,} {'characters' if isinstance(sequence, str) else 'items'} "
                                        "is not allowed in caption templates")
        if operator == "%" and isinstance(left, str):
            _check_format(left, right)
        if operator in ("+",) and isinstance(left, str) and isinstance(right, str) and len(left) + len(right) > MAX_VALUE_CHARS:
            raise TemplateLimit(f"a string grew past {MAX_VALUE_CHARS:,} characters")
        return _checked(super().call_binop(context, operator, left, right))

    def call_unop(self, context, operator, arg):
        self.charge(arg)
        return super().call_unop(context, operator, arg)

    def call(__self, __context, __obj, *args, **kwargs):  # noqa: N805 - Jinja's signature
        if __obj == __self._loop:  # a for loop's own iterable: its items are counted as they are drawn
            return super().call(__context, __obj, *args, **kwargs)
        owner = getattr(__obj, "__self__", None)
        __self.charge(*args, *kwargs.values(), *([owner] if isinstance(owner, (str, list, tuple, dict)) else []))
        if isinstance(owner, str) and getattr(__obj, "__name__", "") in _GROWING_STR_METHODS:
            args = _check_str_method(owner, __obj.__name__, args, kwargs)
        return __self._result(super().call(__context, __obj, *args, **kwargs))

    def wrap_str_format(self, value):
        """Jinja's safe ``str.format``, refusing huge widths ("{:>2000000000}") and results past the cap."""
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        text = str(value.__self__)
        if _BIG_WIDTH.search(text):
            def refuse(*args, **kwargs):
                raise SecurityError("format widths over 999 are not allowed in caption templates")
            return refuse

        def checked(*args, **kwargs):
            _check_str_method(text, value.__name__, args, kwargs)
            return wrapped(*args, **kwargs)
        return checked

    # ------------------------------------------------------------------ compiling and rendering

    def _generate(self, source, name, filename, defer_init=False):
        # At code generation, not parsing: `vlconvert captions lint` reads the template's own tree.
        return super()._generate(_CountLoopsAndConcats().visit(source), name, filename, defer_init)

    def render(self, template: jinja2.Template, context: Mapping[str, Any]) -> str:
        """The rendered text, within the operation budget and the output cap."""
        self.count.operations = 0
        parts, size = [], 0
        for chunk in template.generate(context):
            size += len(chunk)
            if size > MAX_CAPTION_CHARS:
                raise TemplateLimit(f"the caption grew past {MAX_CAPTION_CHARS} characters")
            parts.append(chunk)
        return "".join(parts)


# ---------------------------------------------------------------------- filters whose output size is checked first


def _width_checked(filter_function, limit: int = MAX_CAPTION_CHARS):
    def capped(value, width=80, *args, **kwargs):
        if isinstance(width, int) and width > limit:
            raise SecurityError(f"a width over {limit} is not allowed in caption templates")
        return filter_function(value, width, *args, **kwargs)
    return capped


def _check_format(text: str, values) -> None:
    if _BIG_WIDTH.search(text):
        raise SecurityError("format widths over 999 are not allowed in caption templates")
    values = values if isinstance(values, (tuple, Mapping)) else (values,)
    items = values.values() if isinstance(values, Mapping) else values
    if len(text) + sum(text_size(v) for v in items) + 999 * text.count("%") > MAX_VALUE_CHARS:
        raise TemplateLimit(f"formatting would make a string longer than {MAX_VALUE_CHARS:,} characters")


def _format(value, *args, **kwargs):
    if isinstance(value, str):
        _check_format(value, kwargs if kwargs else args)
    return do_format(value, *args, **kwargs)


def _replaced_size(text: str, old: str, new: str, count: int | None = None) -> int:
    occurrences = len(text) + 1 if old == "" else text.count(old)
    if count is not None and count >= 0:
        occurrences = min(occurrences, count)
    return len(text) + occurrences * (len(new) - len(old))


@pass_eval_context
def _replace(eval_ctx, s, old, new, count=None):
    if _replaced_size(str(s), str(old), str(new), count) > MAX_VALUE_CHARS:
        raise TemplateLimit(f"replace would make a string longer than {MAX_VALUE_CHARS:,} characters")
    return do_replace(eval_ctx, s, old, new, count)


@pass_eval_context
def _join(eval_ctx, value, d="", attribute=None):
    items = list(value)
    if attribute is not None:
        getter = make_attrgetter(eval_ctx.environment, attribute)
        items = [getter(item) for item in items]
    if len(items) > MAX_ITEMS or sum(text_size(i) for i in items) + text_size(d) * max(0, len(items) - 1) > MAX_VALUE_CHARS:
        raise TemplateLimit(f"join would make a string longer than {MAX_VALUE_CHARS:,} characters")
    return sync_do_join(eval_ctx, items, d)


def _indent(s, width=4, first=False, blank=False):
    step = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
    if step > MAX_CAPTION_CHARS or len(str(s)) + (str(s).count("\n") + 1) * step > MAX_VALUE_CHARS:
        raise TemplateLimit(f"indent would make a string longer than {MAX_VALUE_CHARS:,} characters")
    return do_indent(s, width, first, blank)


@pass_environment
def _wordwrap(environment, s, width=79, break_long_words=True, wrapstring=None, break_on_hyphens=True):
    breaks = len(str(s)) // max(1, width if isinstance(width, int) else 1) + 1
    if len(str(s)) + breaks * len(wrapstring or "\n") > MAX_VALUE_CHARS:
        raise TemplateLimit(f"wordwrap would make a string longer than {MAX_VALUE_CHARS:,} characters")
    return do_wordwrap(environment, s, width, break_long_words, wrapstring, break_on_hyphens)


def _batch(value, linecount, fill_with=None):
    from jinja2.filters import do_batch

    if not isinstance(linecount, int) or linecount > MAX_ITEMS:
        raise TemplateLimit(f"batch takes at most {MAX_ITEMS:,} items a batch")
    return list(do_batch(value, linecount, fill_with))


@pass_eval_context
def _slice(eval_ctx, value, slices, fill_with=None):
    if not isinstance(slices, int) or slices > MAX_ITEMS:
        raise TemplateLimit(f"slice makes at most {MAX_ITEMS:,} slices")
    return list(sync_do_slice(value, slices, fill_with))


@pass_environment
def _sum(environment, iterable, attribute=None, start=0):
    if not isinstance(start, (int, float)) or isinstance(start, bool):
        raise SecurityError("sum adds numbers only in caption templates")
    return sync_do_sum(environment, iterable, attribute, start)


@pass_eval_context
def _tojson(eval_ctx, value, indent=None):
    if indent is not None and (not isinstance(indent, int) or indent > 8):
        raise SecurityError("tojson's indent is at most 8 in caption templates")
    _check_text(value, "tojson's output")
    return do_tojson(eval_ctx, value, indent)


def _check_str_method(text: str, name: str, args: tuple, kwargs: dict) -> tuple:
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
