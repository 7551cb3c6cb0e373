"""Build options from a file: ``vlconvert build --config build.toml`` (or ``.json``).

Keys are :func:`vlconvert.build`'s keyword names (``shard_size``); the
command-line spellings are accepted too (``shard-size``, ``split``,
``template``, ``format``, ``option``).  A build's own ``manifest.json`` is a
config file as well: its ``config`` entry holds every option that shaped the
output (:data:`RECORDED`), so ``--config OUT/manifest.json --out NEW``
repeats that build byte for byte.

Paths in a file (``root``, template files, prompt and hold-out files) are read
as the command line reads them: relative to the current folder, not to the
file's.  See docs/configuration.md.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from .executors import EXECUTORS
from .images import DEFAULT_MAX_IMAGE_PIXELS, OUTPUT_FORMATS, RESIZE_MODES
from .records import VLConvertError

try:  # Python 3.11+
    import tomllib as _toml
except ImportError:  # pragma: no cover - Python 3.10
    try:
        import tomli as _toml
    except ImportError:
        _toml = None

# The options recorded in manifest.json's "config": everything that decides what the
# build writes.  Left out: where it goes and how it runs (out, overwrite, workers,
# executor, ray_address), which do not change a byte of the shards.
RECORDED = (
    "adapter", "root", "splits", "templates", "template_mix", "all_templates", "zeroshot_prompts", "holdout_classes",
    "resize", "resize_mode", "image_format", "quality", "upscale", "max_image_bytes", "max_image_pixels", "shard_size",
    "shard_max_bytes", "seed",
    "strict", "max_error_rate", "adapter_options",
)
RUNTIME = ("out", "overwrite", "workers", "executor", "ray_address")
KEYS = RECORDED[:2] + ("out",) + RECORDED[2:] + RUNTIME[1:]

# Command-line spellings (after "-" becomes "_") of keys whose build() name differs.
ALIASES = {"split": "splits", "template": "templates", "format": "image_format", "option": "adapter_options"}

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:([KMGT])(i?)B?)?\s*$", re.IGNORECASE)
_POWERS = {"K": 1, "M": 2, "G": 3, "T": 4}


def parse_size(value: int | str) -> int:
    """A byte count: 500MB and 2GB are decimal, 500MiB and 2GiB binary; ValueError if it is none."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a size such as 500MB or 2GiB")
    if isinstance(value, int):
        size = value
    else:
        match = _SIZE_RE.match(str(value))
        if not match:
            raise ValueError(f"{value!r} is not a size such as 500MB or 2GiB")
        number, unit, binary = match.groups()
        base = 1024 if binary else 1000
        size = int(float(number) * base ** _POWERS[unit.upper()]) if unit else int(float(number))
    if size < 1:
        raise ValueError("must be at least 1 byte")
    return size


def recorded_config(**options: Any) -> dict[str, Any]:
    """The manifest's ``config`` entry: every recorded option, in :data:`RECORDED` order."""
    missing = set(RECORDED) - set(options)
    if missing:  # pragma: no cover - a programming error
        raise TypeError(f"recorded_config lacks {sorted(missing)}")
    return {name: options[name] for name in RECORDED}


def load_config(path: str) -> dict[str, Any]:
    """The build options in ``path`` (TOML or JSON, or a build's manifest.json), keyed by build() names.

    Raises :class:`VLConvertError` with a one-line message naming the file (and the key) when
    the file is missing or unreadable, or a key is unknown, repeated or of the wrong type.
    A ``null`` (JSON) means the option's default and is left out.
    """
    from .storage import filesystem

    fs, fs_path = filesystem(path, "--config")
    try:
        raw = fs.cat_file(fs_path)
    except FileNotFoundError:
        raise VLConvertError(f"--config {path}: no such file") from None
    except IsADirectoryError:
        raise VLConvertError(f"--config {path}: is a folder, not a config file") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise VLConvertError(f"--config {path}: not UTF-8 text") from None
    data = _parse(path, text)
    if not isinstance(data, dict):
        raise VLConvertError(f"--config {path}: holds {type(data).__name__}, not a table of options")
    if "format_version" in data:  # a build's manifest.json
        if not isinstance(data.get("config"), dict):
            raise VLConvertError(f"--config {path}: this manifest.json has no \"config\" entry (written by vlconvert "
                                 f"{data.get('vlconvert_version', '?')}, before builds recorded their options); "
                                 "it cannot be repeated from the manifest")
        data = data["config"]
    return _check(path, data)


def _parse(path: str, text: str) -> Any:
    lowered = path.lower()
    as_json = lowered.endswith(".json") or (not lowered.endswith(".toml") and text.lstrip().startswith("{"))
    if as_json:
        try:
            return json.loads(text)
        except (ValueError, RecursionError) as exc:  # RecursionError: nested thousands deep
            raise VLConvertError(f"--config {path}: not valid JSON: {str(exc) or 'nested too deeply'}") from None
    if _toml is None:  # pragma: no cover - Python 3.10 without tomli
        raise VLConvertError(f"--config {path}: reading TOML needs Python 3.11+ or `pip install tomli`; "
                             "or write the options as JSON")
    try:
        return _toml.loads(text)
    except _toml.TOMLDecodeError as exc:
        raise VLConvertError(f"--config {path}: not valid TOML: {exc}") from None


def _check(path: str, data: Mapping[str, Any]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    spelled: dict[str, str] = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        name = ALIASES.get(name, name)
        if name not in KEYS:
            raise VLConvertError(f"--config {path}: unknown option {key!r}; known: {', '.join(KEYS)}")
        if name in spelled:
            raise VLConvertError(f"--config {path}: {spelled[name]!r} and {key!r} give the same option twice")
        spelled[name] = key
        if value is None:
            continue  # JSON null: the default (a manifest records unset options so)
        try:
            options[name] = _CHECKS[name](value)
        except (TypeError, ValueError) as exc:
            raise VLConvertError(f"--config {path}: option {key!r}: {exc}") from None
    return options


def _what(value: Any) -> str:
    kind = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list", dict: "a table"}
    return f"got {kind.get(type(value), type(value).__name__)} {json.dumps(value, default=str)[:60]}"


def _string(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise TypeError(f"expected a non-empty string, {_what(value)}")
    return value


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [_string(value)]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise TypeError(f"expected a string or a list of strings, {_what(value)}")
    return list(value)


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, {_what(value)}")
    return value


def _integer(low: int | None = None, high: int | None = None):
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"expected an integer, {_what(value)}")
        if (low is not None and value < low) or (high is not None and value > high):
            bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise ValueError(f"must be {bounds}, got {value}")
        return value
    return check


def _choice(choices: tuple[str, ...]):
    def check(value: Any) -> str:
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, {_what(value)}")
        return value
    return check


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"expected a number, {_what(value)}")
    return value


def _fraction(value: Any) -> float:
    value = _number(value)
    if not 0 <= value <= 1:
        raise ValueError(f"must be a fraction between 0 and 1, got {value}")
    return value


def _size(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise TypeError(f"expected a byte count or a size such as \"1GiB\", {_what(value)}")
    return parse_size(value)


def _holdout(value: Any) -> str | float:
    if isinstance(value, str):
        return _string(value)
    return _number(value)


def _mix(value: Any) -> dict[str, float]:
    if isinstance(value, str):  # the command line's NAME=W,... spelling
        pairs = []
        for item in value.split(","):
            name, sep, weight = item.rpartition("=")
            try:
                pairs.append((name.strip() if sep else "", float(weight)))
            except ValueError:
                raise ValueError(f"{item!r} is not NAME=WEIGHT") from None
    elif isinstance(value, dict):
        pairs = [(name, _number(weight)) for name, weight in value.items()]
    else:
        raise TypeError(f"expected a table of template = weight, {_what(value)}")
    mix: dict[str, float] = {}
    for name, weight in pairs:
        if not name or not math.isfinite(weight) or weight <= 0:
            raise ValueError(f"{name or '?'}: needs a template name and a positive, finite weight, got {weight}")
        if name in mix:
            raise ValueError(f"{name!r} is given twice")
        mix[name] = weight
    return mix


def _adapter_options(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError(f"expected a table of adapter options, {_what(value)}")
    for key, item in value.items():
        if not isinstance(item, (str, int, float, bool)):
            raise TypeError(f"{key}: expected a string, number or boolean, {_what(item)}")
    return dict(value)


_CHECKS = {
    "adapter": _string, "root": _string, "out": _string, "splits": _strings, "templates": _strings,
    "template_mix": _mix, "all_templates": _boolean, "zeroshot_prompts": _string, "holdout_classes": _holdout,
    "resize": _integer(1), "resize_mode": _choice(RESIZE_MODES), "image_format": _choice(OUTPUT_FORMATS),
    "quality": _integer(1, 100), "upscale": _boolean, "max_image_bytes": _size, "max_image_pixels": _integer(1, DEFAULT_MAX_IMAGE_PIXELS),
    "shard_size": _integer(1), "shard_max_bytes": _size,
    "seed": _integer(), "strict": _boolean, "max_error_rate": _fraction, "adapter_options": _adapter_options,
    "overwrite": _boolean, "workers": _integer(1), "executor": _choice(EXECUTORS), "ray_address": _string,
}
assert set(_CHECKS) == set(KEYS)
