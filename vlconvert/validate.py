"""``vlconvert validate``: does a build's output still hold what its manifest says it holds?

Shards get copied between buckets and disks, and a copy cut short or a flipped
bit costs a training run hours later.  This reads every shard listed in
``manifest.json`` back (see ``validate_shard.py``) and checks the side files'
counts against the manifest, so a bad output is caught before training starts.
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from . import manifest as files
from .records import VLConvertError, is_valid_key
from .storage import NotARegularFile, filesystem, read_bounded
from .validate_counts import check_split
from .validate_files import check_side_files
from .validate_shard import MAX_LISTED, SampleRules, ShardCheck, check_shard


@dataclass(frozen=True)
class Problem:
    where: str  # a shard ("train/train-000000.tar") or a file ("manifest.json", "train/sizes.json")
    what: str

    def __str__(self) -> str:
        return f"{self.where}: {self.what}"


@dataclass
class ValidationReport:
    out: str
    status: str  # the manifest's: "complete", "in_progress", or "unreadable"
    splits: list[str] = field(default_factory=list)
    shards: int = 0  # shards read back
    samples: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, where: str, what: str) -> None:
        self.problems.append(Problem(where, what))


def validate(out: str, *, decode: bool = True, workers: int = 1,
             progress: Callable[[int, int], None] | None = None) -> ValidationReport:
    """Check the build in ``out`` (a folder or fsspec URL) against its manifest.

    Raises :class:`VLConvertError` when ``out`` is not a vlconvert build; every
    other finding is a :class:`Problem` in the report.  ``workers`` threads read
    shards (hashing and decoding release the GIL); ``progress(done, total)`` is
    called per shard."""
    fs, path = filesystem(out, "OUT")
    manifest = read_manifest(fs, out, path)
    report = ValidationReport(out, "unreadable" if manifest is None else str(manifest.get("status")))
    if manifest is None:
        report.add(files.MANIFEST, "not valid JSON")
        return report
    if report.status == "in_progress":
        report.add(files.MANIFEST, "the build is in progress or was interrupted (status in_progress); rerun the same "
                                   "`vlconvert build` command to finish it")
        return report
    if report.status != "complete":
        report.add(files.MANIFEST, f"status is {report.status!r}, not 'complete'")
    for what in structure_problems(manifest):
        report.add(files.MANIFEST, what)
    if report.problems:
        return report  # the fields the checks below read are not what a build writes
    splits = manifest.get("splits") or {}
    report.splits = list(splits)
    for folder in _folders_with_shards(fs, path):
        if folder not in splits:
            report.add(f"{folder}/", "holds .tar shards, but manifest.json lists no such split")
    num_classes = manifest.get("num_classes") or 0
    captions = tuple(t["member"] for t in manifest.get("templates") or [] if isinstance(t, dict) and "member" in t) or ("txt",)
    rules = SampleRules(num_classes, captions, decode)

    shards = {s: _shards(report, s, info) for s, info in splits.items()}
    listed = [(s, entry) for s, entries in shards.items() for entry in entries]
    total = len(listed)
    checks = _run(fs, path, listed, rules, max(1, workers))
    seen: dict[str, dict[str, str]] = {s: {} for s in splits}  # key → the shard it came from
    by_split: dict[str, list[ShardCheck]] = {s: [] for s in splits}
    for done, (split, check) in enumerate(checks, 1):
        report.shards += 1
        report.samples += check.samples
        by_split[split].append(check)
        for what in check.problems:
            report.add(check.name, what)
        if check.unlisted:
            report.add(check.name, f"… and {check.unlisted} more problems in this shard (only {MAX_LISTED} are listed)")
        for key in check.keys:
            if key in seen[split]:
                report.add(check.name, f"{key}: key repeated in split {split} (first in {seen[split][key]})")
            else:
                seen[split][key] = check.name
        if progress:
            progress(done, total)
    for split, info in splits.items():
        if isinstance(info, dict):
            check_split(fs, path, report.add, split, info, shards[split], by_split[split])
    check_side_files(fs, path, report.add, manifest, num_classes)
    return report


def read_manifest(fs, out: str, path: str) -> dict | None:
    if not fs.exists(path):
        raise VLConvertError(f"{out}: no such folder")
    if not fs.isdir(path):
        raise VLConvertError(f"{out}: is a file, not a build's output folder")
    try:
        raw = read_bounded(fs, posixpath.join(path, files.MANIFEST), files.MAX_MANIFEST_BYTES)
    except FileNotFoundError:
        raise VLConvertError(f"{out}: holds no {files.MANIFEST}, so it is not a vlconvert build") from None
    except (NotARegularFile, IsADirectoryError, ValueError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "far too large"
        raise VLConvertError(f"{out}: its {files.MANIFEST} is not a vlconvert manifest ({why})") from None
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return None  # a build's manifest that got damaged: a finding, not a wrong argument
    if not isinstance(data, dict) or "format_version" not in data or "status" not in data:
        raise VLConvertError(f"{out}: its {files.MANIFEST} is not a vlconvert manifest")
    return data


def structure_problems(manifest: dict) -> Iterator[str]:
    """A hand-edited or damaged manifest is reported, field by field, instead of crashing the checks."""
    def whole(value) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0

    if not whole(manifest.get("num_classes", 0)):
        yield f"num_classes is {manifest.get('num_classes')!r}, not a count"
    splits = manifest.get("splits", {})
    if not isinstance(splits, dict):
        yield f"splits is a {type(splits).__name__}, not a mapping of split name to its account"
        return
    for split, info in splits.items():
        if not isinstance(info, dict):
            yield f"split {split}: its entry is a {type(info).__name__}, not a mapping"
            continue
        for name in ("read", "written", "errored"):
            if name in info and not whole(info[name]):
                yield f"split {split}: {name} is {info[name]!r}, not a count"
        counts = info.get("class_counts", [])
        if not isinstance(counts, list) or not all(whole(c) for c in counts):
            yield f"split {split}: class_counts is not a list of counts"
        for n, shard in enumerate(info.get("shards", []) if isinstance(info.get("shards", []), list) else []):
            if not isinstance(shard, dict) or not isinstance(shard.get("name"), str) or not whole(shard.get("samples")) \
                    or not whole(shard.get("bytes")) or not isinstance(shard.get("sha256"), str):
                yield f"split {split}: shards[{n}] is not a shard entry (name, samples, bytes, sha256)"


def _folders_with_shards(fs, path: str) -> list[str]:
    found = []
    for entry in fs.ls(path, detail=True):
        if entry["type"] == "directory":
            name = posixpath.basename(entry["name"].rstrip("/"))
            if not name.startswith("_") and any(p.endswith(".tar") for p in fs.ls(entry["name"], detail=False)):
                found.append(name)
    return sorted(found)


def _shards(report: ValidationReport, split: str, info) -> list[dict]:
    shards = info.get("shards") if isinstance(info, dict) else None
    if not isinstance(shards, list) or not all(isinstance(s, dict) and "name" in s for s in shards):
        report.add(files.MANIFEST, f"split {split}: no list of shards")
        return []
    return listed_shards(split, shards, report.add)


def listed_shards(split: str, shards: list, add: Callable[[str, str], None]) -> list[dict]:
    """The split's shard entries whose names are ones a build writes; a name that is not (``../../etc/passwd``,
    an absolute path, another split's folder) is reported and never opened."""
    pattern = re.compile(re.escape(f"{split}/{split}-") + r"[0-9]{6}\.tar") if is_valid_key(split) else None
    usable = []
    for n, shard in enumerate(shards):
        name = shard.get("name") if isinstance(shard, dict) else None
        if pattern is None or not isinstance(name, str) or not pattern.fullmatch(name):
            add(files.MANIFEST, f"split {split}: shards[{n}] is named {name!r}, not {split}/{split}-NNNNNN.tar "
                                "as a build names them; not opened")
        else:
            usable.append(shard)
    return usable


def _run(fs, path: str, listed: list[tuple[str, dict]], rules: SampleRules, workers: int) -> Iterator[tuple[str, ShardCheck]]:
    def one(item: tuple[str, dict]) -> tuple[str, ShardCheck]:
        split, entry = item
        return split, check_shard(fs, posixpath.join(path, entry["name"]), entry["name"], entry, rules)

    if workers == 1:
        yield from map(one, listed)
        return
    # In order, so the report reads the same with any number of workers.
    with ThreadPoolExecutor(workers) as pool:
        yield from pool.map(one, listed)

