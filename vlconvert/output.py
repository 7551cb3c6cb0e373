"""The output folder's life: claimed, resumed or replaced at the start; shards named at the end.

A build claims its folder by writing an ``in_progress`` manifest that carries
the build's *resume key*, a digest of everything that decides the shards'
bytes (inputs, options, version).  Running the same command again on an
unfinished build with the same key resumes it; anything else in the folder
is replaced only with ``overwrite``, and a folder that is not a vlconvert
build is never deleted.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from collections import Counter
from dataclasses import dataclass
from typing import Any

from . import __version__, checkpoints
from . import manifest as files
from .checkpoints import ShardResult
from .records import VLConvertError
from .storage import uploads_are_atomic


def resume_key(settings: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()


def _read_manifest(fs, path: str) -> dict | None:
    try:
        data = json.loads(fs.cat_file(posixpath.join(path, files.MANIFEST)))
    except FileNotFoundError:
        return None
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def prepare(fs, out: str, out_path: str, splits: list[str], key: str, overwrite: bool, resume: bool) -> dict[tuple[str, int], ShardResult]:
    """Make ``out`` ready; returns the tasks an interrupted identical build already finished."""
    fs.invalidate_cache()
    try:
        existing = fs.ls(out_path, detail=False) if fs.isdir(out_path) else []
    except FileNotFoundError:
        existing = []
    if [posixpath.basename(e.rstrip("/")) for e in existing] == [files.MANIFEST + ".tmp"]:
        fs.rm(existing[0])  # a claim cut short (say, by a full disk): the folder is still ours and empty
        existing = []
    if existing:
        manifest = _read_manifest(fs, out_path)
        if manifest is None:
            raise VLConvertError(f"{out}: not empty and holds no {files.MANIFEST}, so it is not a vlconvert build; refusing to delete it")
        unfinished = manifest.get("status") == "in_progress"
        same = manifest.get("resume_key") == key
        if unfinished and same and resume:
            checkpoints.remove_partial(fs, out_path, splits)
            return checkpoints.load_committed(fs, out_path, splits)
        if not overwrite:
            if unfinished and same:
                raise VLConvertError(f"{out}: holds an unfinished run of this same build; rerun without --no-resume to finish it, "
                                     "or add --overwrite to start over")
            if unfinished:
                raise VLConvertError(f"{out}: holds an unfinished build with other inputs or options; pass --overwrite to discard it")
            raise VLConvertError(f"{out}: folder is not empty; pass --overwrite to replace an earlier vlconvert build there")
        _delete_build(fs, out_path, existing)
    try:
        fs.makedirs(out_path, exist_ok=True)
    except OSError as exc:
        raise VLConvertError(f"{out}: cannot create the output folder: {exc.strerror or exc}") from exc
    # Claims the folder at once: an interrupted build can be resumed, or replaced with --overwrite.
    files.write_manifest(fs, out_path, {
        "format_version": files.FORMAT_VERSION, "vlconvert_version": __version__, "status": "in_progress", "resume_key": key,
    })
    return {}


def _delete_build(fs, out_path: str, entries: list[str]) -> None:
    """The manifest goes last: a delete cut short still leaves a folder vlconvert knows is its own."""
    manifest = posixpath.join(out_path, files.MANIFEST)
    for entry in entries:
        if entry.rstrip("/") != manifest:
            fs.rm(entry, recursive=True)
    fs.rm(manifest)


@dataclass
class SplitSummary:
    read: int
    written: int
    errored: int
    shards: list[dict]
    class_counts: list[int]
    held_out: int = 0


def finish_split(fs, out_path: str, split: str, results: list[ShardResult], num_classes: int,
                 planned: int, rejected_before: int, held_out: int) -> SplitSummary:
    """Give the split's committed parts their final, consecutive names; account for every record.

    ``planned`` records went into tasks; the adapter rejected ``rejected_before``
    rows and ``held_out`` records were kept out on purpose."""
    read = planned + rejected_before + held_out
    split_dir = posixpath.join(out_path, split)
    shards, counts, renames = [], Counter(), []
    for result in sorted(results, key=lambda r: r.index):
        counts.update(result.class_counts)
        for info in result.shards:
            name = files.shard_name(split, len(shards))
            renames.append((info.path, posixpath.join(split_dir, name)))
            shards.append({"name": f"{split}/{name}", "samples": info.samples, "bytes": info.bytes, "sha256": info.sha256})
    _rename_all(fs, split_dir, renames)
    files.write_sizes(fs, split_dir, shards)
    written = sum(s["samples"] for s in shards)
    errored = rejected_before + sum(len(r.rejected) for r in results)
    if written + errored + held_out != read:
        raise RuntimeError(f"split {split}: {read} records read but {written} written + {errored} rejected + {held_out} held out")
    return SplitSummary(read, written, errored, shards, [counts.get(label, 0) for label in range(num_classes)], held_out)


def _rename_all(fs, split_dir: str, renames: list[tuple[str, str]]) -> None:
    # After a crash in this very step some parts already have their final names; those stay.
    try:
        present = {posixpath.basename(p) for p in fs.ls(split_dir, detail=False)}
    except FileNotFoundError:
        present = set()
    renames = [(source, target) for source, target in renames if posixpath.basename(source) in present]
    if not renames:
        return
    if not uploads_are_atomic(fs):
        for source, target in renames:
            fs.mv(source, target)
        return
    # On an object store a rename is a server-side copy; fsspec's async stores run a list of them
    # concurrently, which for iNat-2021's 2,687 shards is minutes rather than an hour.
    sources, targets = zip(*renames)
    fs.copy(list(sources), list(targets))
    fs.rm(list(sources))
