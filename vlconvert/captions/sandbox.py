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
import threading
from collections.abc import Iterable, Mapping
from types import GeneratorType
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.compiler import CodeGenerator
from jinja2.filters import do_center
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError
from jinja2.visitor import NodeTransformer

from vlconvert.captions.limits import (
    BIG_WIDTH,
    GROWING_STR_METHODS,
    MAX_CAPTION_CHARS,
    MAX_ITEMS,
    MAX_OPERATIONS,
    MAX_VALUE_CHARS,
    TemplateLimit,
    check_format,
    check_str_method,
    check_text,
    checked,
    checked_batch,
    checked_format,
    checked_indent,
    checked_join,
    checked_replace,
    checked_slice,
    checked_sum,
    checked_tojson,
    checked_wordwrap,
    text_size,
    weight,
    width_checked,
)


def _refuse_null(value: Any) -> Any:
    # StrictUndefined catches missing fields, but a present-and-null one (an iNat
    # image without latitude) would print "None" into the caption.
    if value is None:
        raise ValueError("a field printed by the template is null for this record; "
                         "print it inside {% if … is not none %} or give it a default")
    check_text(value, "a printed value")
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
        self.filters.update(center=width_checked(do_center), format=checked_format, replace=checked_replace,
                            join=checked_join, indent=checked_indent, wordwrap=checked_wordwrap, batch=checked_batch,
                            slice=checked_slice, sum=checked_sum, tojson=checked_tojson)
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
        return checked(value)

    def _loop(self, iterable):
        for item in iterable:
            self.tick()
            yield item

    def _concat(self, *parts) -> str:
        self.charge(*parts)
        if sum(text_size(p) for p in parts) > MAX_VALUE_CHARS:
            raise TemplateLimit(f"joining with ~ would make a string longer than {MAX_VALUE_CHARS:,} characters")
        return checked("".join(str(p) for p in parts))

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
            check_format(left, right)
        return checked(super().call_binop(context, operator, left, right))

    def call_unop(self, context, operator, arg):
        self.charge(arg)
        return super().call_unop(context, operator, arg)

    def call(__self, __context, __obj, *args, **kwargs):  # noqa: N805 - Jinja's signature
        if __obj == __self._loop:  # a for loop's own iterable: its items are counted as they are drawn
            return super().call(__context, __obj, *args, **kwargs)
        owner = getattr(__obj, "__self__", None)
        __self.charge(*args, *kwargs.values(), *([owner] if isinstance(owner, (str, list, tuple, dict)) else []))
        if isinstance(owner, str) and getattr(__obj, "__name__", "") in GROWING_STR_METHODS:
            args = check_str_method(owner, __obj.__name__, args, kwargs)
        return __self._result(super().call(__context, __obj, *args, **kwargs))

    def wrap_str_format(self, value):
        """Jinja's safe ``str.format``, refusing huge widths ("{:>2000000000}") and results past the cap."""
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        text = str(value.__self__)
        if BIG_WIDTH.search(text):
            def refuse(*args, **kwargs):
                raise SecurityError("format widths over 999 are not allowed in caption templates")
            return refuse

        def size_checked(*args, **kwargs):
            check_str_method(text, value.__name__, args, kwargs)
            return wrapped(*args, **kwargs)
        return size_checked

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
