"""Parsing the ``--option name=value`` strings the built-in adapters take."""

from __future__ import annotations

from typing import Any

from vlconvert.errors import VLConvertError


def option_float(value: Any, name: str, low: float, high: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise VLConvertError(f"option {name}={value!r} is not a number") from None
    if not low <= number <= high:
        raise VLConvertError(f"option {name}={value!r} must be between {low} and {high}")
    return number


def option_bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off", ""}:
        return False
    raise VLConvertError(f"option {name}={value!r} is not true or false")
