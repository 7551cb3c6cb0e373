"""The side files of a build against its manifest: sizes, hashes and contents.

Zero-shot evaluation reads ``classnames.txt`` and the prompt templates, and a
report maps predictions through ``classes.jsonl``: an edited or damaged copy
of one of them silently changes every accuracy figure.  The manifest records
each side file's size and sha256 (``files``), and each file's contents are
checked against the manifest's own counts as well.  Only the names a build
writes are ever opened: a tampered manifest cannot point ``validate`` at a
file outside OUT.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
from collections import Counter
from collections.abc import Callable, Iterator

from vlconvert.format import (
    CARD,
    CLASSES,
    CLASSNAMES,
    DUPLICATES,
    ERRORS,
    ERRORS_TABLE,
    MANIFEST,
    SIZES,
    ZEROSHOT_TEMPLATES,
    wids_index_name,
)
from vlconvert.storage import NotARegularFile, bounded_lines, open_regular, read_bounded

Add = Callable[[str, str], None]  # (where, what)
MAX_LINE_BYTES = 1 << 20  # an error entry or a class line is a few hundred bytes
_TOP_LEVEL = (ERRORS, CLASSNAMES, CLASSES, ZEROSHOT_TEMPLATES)
_OPTIONAL = (ERRORS_TABLE, CARD, DUPLICATES)  # checked when the manifest lists it: builds before it did not write it
_SPLIT_FILE = re.compile(rf"([A-Za-z0-9_-]+)/(?:{re.escape(SIZES)}|\1{re.escape(wids_index_name(''))})")
MAX_INDEX_BYTES = 64 << 20  # a wids index is about 80 bytes a shard
_WIDS_FIELDS = ("url", "nsamples", "filesize")
_ERROR_FIELDS = ("split", "key", "source", "stage", "reason")
_NAMED_IN_MANIFEST = {"classnames": CLASSNAMES, "classes": CLASSES, "zeroshot_templates": ZEROSHOT_TEMPLATES}


def check_side_files(fs, path: str, add: Add, manifest: dict, num_classes: int) -> None:
    _check_names(add, manifest)
    unreadable = set()
    for name in _TOP_LEVEL:  # each said once; the checks below skip what cannot be read
        why = _unreadable(fs, posixpath.join(path, name))
        if why:
            add(name, why)
            unreadable.add(name)
    _check_hashes(fs, path, add, manifest, unreadable)
    _check_wids_indexes(fs, path, add, manifest)
    errors = manifest.get("errors") if isinstance(manifest.get("errors"), dict) else {}
    expected = errors.get("count")
    split_errors = [s.get("errored") for s in (manifest.get("splits") or {}).values() if isinstance(s, dict)]
    if all(isinstance(n, int) for n in split_errors) and sum(split_errors) != expected:
        add(MANIFEST, f"errors count {expected} is not the splits' errored total {sum(split_errors)}")
    checks = ((ERRORS, lambda: _check_errors(fs, path, add, expected, errors.get("by_stage"))),
              (CLASSNAMES, lambda: _check_per_class(fs, path, add, CLASSNAMES, num_classes, _classname_problem)),
              (CLASSES, lambda: _check_per_class(fs, path, add, CLASSES, num_classes, _class_problem)),
              (ZEROSHOT_TEMPLATES, lambda: _check_templates(fs, path, add, manifest.get("zeroshot"))))
    for name, check in checks:
        if name not in unreadable:
            check()


def _unreadable(fs, path: str) -> str | None:
    try:
        open_regular(fs, path).close()
    except FileNotFoundError:
        return "missing"
    except (NotARegularFile, IsADirectoryError) as exc:
        return f"{exc.strerror}; not read"
    return None


def _check_names(add: Add, manifest: dict) -> None:
    errors = manifest.get("errors")
    named = {**{k: manifest.get(k) for k in _NAMED_IN_MANIFEST}, "errors.file": errors.get("file") if isinstance(errors, dict) else None}
    for key, value in named.items():
        standard = _NAMED_IN_MANIFEST.get(key, ERRORS)
        if value is not None and value != standard:
            add(MANIFEST, f"{key} is {value!r}, not {standard!r}, the file a build writes; {standard} is checked instead")


def _check_hashes(fs, path: str, add: Add, manifest: dict, unreadable: set[str]) -> None:
    recorded = manifest.get("files")
    if recorded is None:
        return  # written before builds recorded their side files' hashes
    if not isinstance(recorded, dict):
        add(MANIFEST, f"files is a {type(recorded).__name__}, not a mapping of side file to its size and sha256")
        return
    splits = manifest.get("splits") if isinstance(manifest.get("splits"), dict) else {}
    expected = set(_TOP_LEVEL) | {f"{s}/{SIZES}" for s in splits}
    for name in sorted(expected - set(recorded)):
        add(MANIFEST, f"files has no entry for {name}")
    for name, info in sorted(recorded.items()):
        split_file = _SPLIT_FILE.fullmatch(name)
        if name not in _TOP_LEVEL and name not in _OPTIONAL and not (split_file and split_file.group(1) in splits):
            add(MANIFEST, f"files lists {name!r}, which is not a file a build writes; not opened")
            continue
        if not isinstance(info, dict) or not isinstance(info.get("bytes"), int) or not isinstance(info.get("sha256"), str):
            add(MANIFEST, f"files entry for {name} is not a size and sha256")
            continue
        if name in unreadable:
            continue
        found = _digest(fs, posixpath.join(path, name))
        if found is None:
            add(name, _unreadable(fs, posixpath.join(path, name)) or "missing")
        elif found != (info["bytes"], info["sha256"]):
            add(name, f"{found[0]:,} bytes with sha256 {found[1][:16]}…, the manifest says {info['bytes']:,} bytes "
                      f"with sha256 {info['sha256'][:16]}…: changed since the build wrote it")


def _digest(fs, path: str) -> tuple[int, str] | None:
    try:
        f = open_regular(fs, path)
    except (FileNotFoundError, NotARegularFile, IsADirectoryError):
        return None
    digest, size = hashlib.sha256(), 0
    with f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def _lines(fs, path: str) -> Iterator[tuple[int, bytes]] | None:
    """(line number, line) of a file, streamed: errors.jsonl of a bad build can be larger than memory should hold.
    A line longer than any a build writes comes as ``b"<too long>"``, which no check accepts."""
    try:
        f = open_regular(fs, path)
    except (FileNotFoundError, NotARegularFile, IsADirectoryError):
        return None

    def read() -> Iterator[tuple[int, bytes]]:
        with f:
            for number, line in bounded_lines(f, MAX_LINE_BYTES):
                yield number, b"<too long>" if line is None else line
    return read()


def _check_errors(fs, path: str, add: Add, expected, by_stage) -> None:
    lines = _lines(fs, posixpath.join(path, ERRORS))
    if lines is None:
        add(ERRORS, "missing")
        return
    count, stages, bad = 0, Counter(), 0
    for number, line in lines:
        count += 1
        entry = _json(line)
        if not isinstance(entry, dict) or any(not isinstance(entry.get(k), str) for k in _ERROR_FIELDS):
            bad += 1
            if bad == 1:
                add(ERRORS, f"line {number} is not an error entry (a JSON object with {', '.join(_ERROR_FIELDS)})")
            continue
        stages[entry["stage"]] += 1
    if bad > 1:
        add(ERRORS, f"… and {bad - 1} more lines that are not error entries")
    if count != expected:
        add(ERRORS, f"{count} lines, the manifest counts {expected} errors")
    elif isinstance(by_stage, dict) and not bad and dict(stages) != {k: v for k, v in by_stage.items() if v}:
        add(ERRORS, f"errors by stage {dict(sorted(stages.items()))} differ from the manifest's {by_stage}")


def _check_per_class(fs, path: str, add: Add, name: str, num_classes: int, line_problem) -> None:
    """One line per class, in label order; ``line_problem(number, line)`` says what is wrong with one line, if anything."""
    lines = _lines(fs, posixpath.join(path, name))
    if lines is None:
        add(name, "missing")
        return
    count = 0
    for number, line in lines:
        count += 1
        problem = line_problem(number, line)
        if problem:
            add(name, problem)
            return
    if count != num_classes:
        add(name, f"{count} lines for {num_classes} classes")


def _classname_problem(number: int, line: bytes) -> str | None:
    return None if line.strip() else f"line {number} is empty: class {number - 1} has no name"


def _class_problem(number: int, line: bytes) -> str | None:
    entry = _json(line)
    if isinstance(entry, dict) and entry.get("label") == number - 1 and isinstance(entry.get("name"), str):
        return None
    return f"line {number} is not class {number - 1} (a JSON object with that label and a name)"


def _check_templates(fs, path: str, add: Add, zeroshot) -> None:
    lines = _lines(fs, posixpath.join(path, ZEROSHOT_TEMPLATES))
    if lines is None:
        add(ZEROSHOT_TEMPLATES, "missing")
        return
    templates = [line.decode("utf-8", "replace") for _, line in lines]
    for number, template in enumerate(templates, start=1):
        if "{c}" not in template:
            add(ZEROSHOT_TEMPLATES, f"line {number} has no {{c}} for the class name")
            break
    if not isinstance(zeroshot, dict):
        return
    if zeroshot.get("templates") != len(templates):
        add(ZEROSHOT_TEMPLATES, f"{len(templates)} templates, the manifest says {zeroshot.get('templates')}")
    elif zeroshot.get("sha256") != hashlib.sha256("\n".join(templates).encode()).hexdigest():
        add(ZEROSHOT_TEMPLATES, "its templates differ from the ones the build wrote (sha256 in the manifest's zeroshot entry)")


def _json(line: bytes):
    try:
        return json.loads(line)
    except (ValueError, RecursionError):
        return None


def _check_wids_indexes(fs, path: str, add: Add, manifest: dict) -> None:
    """Each ``<split>/<split>.wids.json`` the manifest lists names the split's shards with their counts and sizes.
    Not required: builds before it did not write one.  A missing or unreadable index is the hash check's to report."""
    recorded = manifest.get("files") if isinstance(manifest.get("files"), dict) else {}
    splits = manifest.get("splits") if isinstance(manifest.get("splits"), dict) else {}
    for split, info in splits.items():
        name = f"{split}/{wids_index_name(split)}"
        shards = info.get("shards") if isinstance(info, dict) else None
        # A split name that is not a key (a tampered "../..") never reaches the file system.
        if name not in recorded or not _SPLIT_FILE.fullmatch(name) or not isinstance(shards, list):
            continue
        try:
            index = json.loads(read_bounded(fs, posixpath.join(path, name), MAX_INDEX_BYTES))
        except (OSError, ValueError, RecursionError, NotARegularFile):
            continue
        if not isinstance(index, dict) or index.get("__kind__") != "wids-shard-index-v1" or index.get("wids_version") != 1:
            add(name, "not a wids shard index (__kind__ wids-shard-index-v1, wids_version 1)")
            continue
        listed = index.get("shardlist") if isinstance(index.get("shardlist"), list) else None
        found = None if listed is None else [{k: e.get(k) for k in _WIDS_FIELDS} if isinstance(e, dict) else e for e in listed]
        expected = [{"url": posixpath.basename(str(s.get("name"))), "nsamples": s.get("samples"), "filesize": s.get("bytes")}
                    for s in shards if isinstance(s, dict)]
        if found != expected:
            add(name, "its shardlist is not the manifest's shards of the split (url, nsamples, filesize)")
