"""The kinds of value a build option takes, and how each is checked.

A value reaches a build three ways: as a Python value (``build(shard_size=500)``), from
a config file (TOML/JSON types) and as command-line text (``--shard-max-bytes 2GiB``).
``check`` takes the first two; ``parse`` reads the text of the kinds click has no type
for (sizes, template mixes, ``KEY=VALUE``), and click's own types read integers, fractions
and choices, so all three routes accept the same values.  ``normalise`` turns the default
or a checked value into what the build uses, ``record`` into what the manifest's
``config`` holds, and ``key`` into what the resume key compares (one value, however spelled).
Messages are phrased to follow the option's name: ``quality: must be between 1 and 100, got 0``.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import re
from collections.abc import Mapping
from typing import Any

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:([KMGT])(i?)B?)?\s*$", re.IGNORECASE)
_POWERS = {"K": 1, "M": 2, "G": 3, "T": 4}


def parse_size(value: int | str) -> int:
    """A byte count: 500MB and 2GB are decimal, 500MiB and 2GiB binary; ValueError if it is none."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a size such as 500MB or 2GiB")
    if isinstance(value, int):
        size = value
    else:
        match = _SIZE_RE.fullmatch(str(value))
        if not match:
            raise ValueError(f"{value!r} is not a size such as 500MB or 2GiB")
        number, unit, binary = match.groups()
        base = 1024 if binary else 1000
        size = int(float(number) * base ** _POWERS[unit.upper()]) if unit else int(float(number))
    if size < 1:
        raise ValueError("must be at least 1 byte")
    return size


def what(value: Any) -> str:
    kind = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list", dict: "a table"}
    return f"got {kind.get(type(value), type(value).__name__)} {json.dumps(value, default=str)[:60]}"


class Kind:
    metavar: str | None = None

    def _as_it_is(self, value: Any) -> Any:
        return value

    # Unless a kind says otherwise, a value is taken, used, recorded and shown as it is.
    check = normalise = record = show = _as_it_is

    def parse(self, text: str) -> Any:
        return self.check(text)

    def key(self, value: Any) -> Any:
        return self.record(value)


def _text(value: Any, empty: bool = False) -> str:
    if isinstance(value, os.PathLike):  # a pathlib.Path from a script
        value = os.fspath(value)
    if not isinstance(value, str) or not (value or empty):
        raise TypeError(f"expected a non-empty string, {what(value)}")
    return value


class Text(Kind):
    def __init__(self, empty: bool = False):
        self.empty = empty

    def check(self, value: Any) -> str:
        return _text(value, self.empty)

    def parse(self, text: str) -> str:
        return text  # an empty --root on the command line is a missing one: the command says so


class Texts(Kind):
    """One string or several (a repeated flag on the command line)."""

    def check(self, value: Any) -> list[str]:
        if isinstance(value, (str, os.PathLike)):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"expected a string or a list of strings, {what(value)}")
        items = []
        for position, item in enumerate(value):
            try:
                items.append(_text(item))
            except TypeError as exc:
                raise TypeError(f"item {position + 1}: {exc}") from None
        return items

    def parse(self, text: str) -> str:  # one occurrence of a repeated flag
        return text

    def normalise(self, value: Any) -> list[str] | None:
        return None if value is None else list(value)

    def record(self, value: Any) -> list[str]:
        return list(value or [])


class Flag(Kind):
    def __init__(self, inverted: bool = False):
        self.inverted = inverted  # --no-resume sets resume to False

    def check(self, value: Any) -> bool:
        if not isinstance(value, bool):
            raise TypeError(f"expected true or false, {what(value)}")
        return value


def _integer(value: Any) -> int | None:
    """An int of any integer type (NumPy's too), or None; a bool is no integer here."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        return None
    return int(value)


class Integer(Kind):
    def __init__(self, low: int | None = None, high: int | None = None):
        self.low, self.high = low, high

    def check(self, value: Any) -> int:
        number = _integer(value)
        if number is None:
            raise TypeError(f"expected an integer, {what(value)}")
        if (self.low is not None and number < self.low) or (self.high is not None and number > self.high):
            bounds = f"between {self.low} and {self.high}" if self.high is not None else f"at least {self.low}"
            raise ValueError(f"must be {bounds}, got {number}")
        return number


class Choice(Kind):
    def __init__(self, choices: tuple[str, ...]):
        self.choices = choices

    def check(self, value: Any) -> str:
        if value not in self.choices:
            raise ValueError(f"expected one of {', '.join(self.choices)}, {what(value)}")
        return value


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"expected a number, {what(value)}")
    return value if isinstance(value, (int, float)) else float(value)  # a NumPy number as Python's


class Fraction(Kind):
    def check(self, value: Any) -> float:
        value = _number(value)
        if not 0 <= value <= 1:
            raise ValueError(f"must be a fraction between 0 and 1, got {value}")
        return value


class Size(Kind):
    metavar = "SIZE"

    def show(self, value: int) -> str:
        """How --help shows a default, and how the command line reads it back: 1GiB, not 1073741824."""
        for unit, power in (("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
            if value % (1 << power) == 0:
                return f"{value >> power}{unit}"
        return str(value)

    def check(self, value: Any) -> int:
        if isinstance(value, float) and value.is_integer():  # 1e9 from a script
            value = int(value)
        if _integer(value) is not None:
            value = _integer(value)
        elif not isinstance(value, str):
            raise TypeError(f"expected a byte count or a size such as \"1GiB\", {what(value)}")
        return parse_size(value)


class Holdout(Kind):
    """A fraction of the classes, or a file of class names."""

    def check(self, value: Any) -> str | float:
        return _text(value) if isinstance(value, (str, os.PathLike)) else _number(value)

    def parse(self, text: str) -> str | None:
        return text or None  # an empty --holdout-classes holds nothing out

    def key(self, value: Any) -> Any:
        try:
            return float(value)  # 0.25 from a script and "0.25" from the command line hold out the same classes
        except (TypeError, ValueError):
            return value


class TemplateMix(Kind):
    """Template name → weight: a table, or the command line's ``NAME=W,...``."""

    def check(self, value: Any) -> dict[str, float]:
        if isinstance(value, str):
            pairs = []
            for item in value.split(","):
                name, sep, weight = item.rpartition("=")
                try:
                    pairs.append((name.strip() if sep else "", float(weight)))
                except ValueError:
                    raise ValueError(f"{item!r} is not NAME=WEIGHT") from None
        elif isinstance(value, Mapping):
            pairs = [(str(name).strip(), _number(weight)) for name, weight in value.items()]
        else:
            raise TypeError(f"expected a table of template = weight, {what(value)}")
        mix: dict[str, float] = {}
        for name, weight in pairs:
            if not name or not math.isfinite(weight) or weight <= 0:
                raise ValueError(f"{name or '?'}: needs a template name and a positive, finite weight, got {weight}")
            if name in mix:
                raise ValueError(f"{name!r} is given twice")
            mix[name] = weight
        return mix or None

    def parse(self, text: str) -> dict[str, float] | None:
        return self.check(text) if text.strip() else None  # an empty --template-mix is no mix

    def record(self, value: Any) -> dict[str, float] | None:
        return dict(value) if value else None


class KeyValues(Kind):
    """Options for the adapter: a table, or repeated ``KEY=VALUE`` on the command line."""

    def check(self, value: Any) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            raise TypeError(f"expected a table of adapter options, {what(value)}")
        options = {}
        for key, item in value.items():
            item = os.fspath(item) if isinstance(item, os.PathLike) else item
            if not isinstance(item, (str, int, float, bool)):
                raise TypeError(f"{key}: expected a string, number or boolean, {what(item)}")
            options[key] = item
        return options

    def parse(self, text: str) -> tuple[str, str]:
        key, sep, value = text.partition("=")
        if not sep or not key:
            raise ValueError(f"{text!r} is not KEY=VALUE")
        return key, value

    def normalise(self, value: Any) -> dict[str, Any]:
        return dict(value or {})

    def record(self, value: Any) -> dict[str, Any]:
        return dict(value or {})
