"""Build options from a file: ``vlconvert build --config build.toml`` (or ``.json``).

Keys are :func:`vlconvert.build`'s keyword names (``shard_size``); the
command-line spellings are accepted too (``shard-size``, ``split``,
``template``, ``format``, ``option``).  A build's own ``manifest.json`` is a
config file as well: its ``config`` entry holds every option that shaped the
output (every option :mod:`vlconvert.options` marks as recorded), so ``--config OUT/manifest.json --out NEW``
repeats that build byte for byte.

Paths in a file (``root``, template files, prompt and hold-out files) are read
as the command line reads them: relative to the current folder, not to the
file's.  See docs/configuration.md.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import vlconvert.options as build_options
from vlconvert.errors import VLConvertError
from vlconvert.storage import filesystem

try:  # Python 3.11+
    import tomllib as _toml
except ImportError:  # pragma: no cover - Python 3.10
    try:
        import tomli as _toml
    except ImportError:
        _toml = None


def config_keys() -> list[str]:
    """The keys a config file may hold: build()'s keyword names of every option a file may set."""
    return [o.name for o in build_options.OPTIONS if o.in_config]


def _aliases() -> dict[str, str]:
    """Command-line spellings (after "-" becomes "_") of keys whose build() name differs: split, template, format, option."""
    spelled = {}
    for o in build_options.OPTIONS:
        for flag in o.cli_flags:
            if flag.startswith("--") and flag[2:].replace("-", "_") != o.name:
                spelled[flag[2:].replace("-", "_")] = o.name
    return spelled


def load_config(path: str, **overrides: Any) -> dict[str, Any]:
    """The build options in ``path`` (TOML or JSON, or a build's manifest.json), keyed by build() names:
    ``vlconvert.build(**load_config("build.toml", out="new/"))``.

    ``overrides`` win over the file, as options on the command line do; ``adapter_options``
    are merged key by key (``--option KEY=VALUE`` replaces that one key).

    Raises :class:`VLConvertError` with a one-line message naming the file (and the key) when
    the file is missing or unreadable, or a key is unknown, repeated or of the wrong type.
    A ``null`` (JSON) means the option's default and is left out.
    """
    path = os.fspath(path)
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
    options = _check(path, data)
    adapter_options = {**options.get("adapter_options", {}), **(overrides.get("adapter_options") or {})}
    options.update(overrides)
    if adapter_options:
        options["adapter_options"] = adapter_options
    return options


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
    by_name = {o.name: o for o in build_options.OPTIONS if o.in_config}
    aliases = _aliases()
    options: dict[str, Any] = {}
    spelled: dict[str, str] = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        name = aliases.get(name, name)
        if name not in by_name:
            raise VLConvertError(f"--config {path}: unknown option {key!r}; known: {', '.join(by_name)}")
        if name in spelled:
            raise VLConvertError(f"--config {path}: {spelled[name]!r} and {key!r} give the same option twice")
        spelled[name] = key
        if value is None:
            continue  # JSON null: the default (a manifest records unset options so)
        try:
            options[name] = by_name[name].check(value)
        except (TypeError, ValueError) as exc:
            raise VLConvertError(f"--config {path}: option {key!r}: {exc}") from None
    return options
