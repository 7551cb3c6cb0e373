"""``vlconvert validate``: does a build's output still hold what its manifest says it holds?

Shards get copied between buckets and disks, and a copy cut short or a flipped
bit costs a training run hours later.  This reads every shard listed in
``manifest.json`` back (see ``validate_shard.py``) and checks the side files'
counts against the manifest, so a bad output is caught before training starts.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from vlconvert.format import CAPTION_MEMBER, MANIFEST
from vlconvert.readback.build_folder import listed_shards, manifest_problems, open_build
from vlconvert.readback.validate_counts import check_split
from vlconvert.readback.validate_files import check_side_files
from vlconvert.readback.validate_shard import MAX_LISTED, SampleRules, ShardCheck, check_shard
from vlconvert.readback.validate_tables import check_table


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
    fs, path, manifest = open_build(out)
    report = ValidationReport(out, "unreadable" if manifest is None else str(manifest.get("status")))
    if manifest is None:
        report.add(MANIFEST, "not valid JSON")
        return report
    if report.status == "in_progress":
        report.add(MANIFEST, "the build is in progress or was interrupted (status in_progress); rerun the same "
                             "`vlconvert build` command to finish it")
        return report
    if report.status != "complete":
        report.add(MANIFEST, f"status is {report.status!r}, not 'complete'")
    for what in manifest_problems(manifest):
        report.add(MANIFEST, what)
    if report.problems:
        return report  # the fields the checks below read are not what a build writes
    splits = manifest.get("splits") or {}
    report.splits = list(splits)
    for folder in _folders_with_shards(fs, path):
        if folder not in splits:
            report.add(f"{folder}/", "holds .tar shards, but manifest.json lists no such split")
    num_classes = manifest.get("num_classes") or 0
    captions = tuple(t["member"] for t in manifest.get("templates") or [] if isinstance(t, dict) and "member" in t) or (CAPTION_MEMBER,)
    rules = SampleRules(num_classes, captions, decode)

    shards = {s: _shards(report, s, info) for s, info in splits.items()}
    listed = [(s, entry) for s, entries in shards.items() for entry in entries]
    total = len(listed)
    checks = _run(fs, path, listed, rules, max(1, workers))
    seen: dict[str, dict[str, str]] = {s: {} for s in splits}  # key → the shard it came from
    by_split: dict[str, list[ShardCheck]] = {s: [] for s in splits}
    for done, ((split, check), (_, entry)) in enumerate(zip(checks, listed), 1):
        if check.clean:
            check_table(fs, path, report.add, split, entry, check.keys)
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
        report.add(MANIFEST, f"split {split}: no list of shards")
        return []
    return listed_shards(split, shards, report.add)


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

