"""What makes a build resumable: finished shard tasks are committed, so a rerun skips them.

A task writes its tar parts under ``_tmp-`` names.  When the task is whole it
*commits*: each part is renamed to a ``_done-`` name, then a small JSON ledger
entry (``OUT/_progress/<split>/<task>.json``: parts, sizes, sha256, rejected
records, class counts) is written.  The ledger entry is written last, so its
presence means the parts are complete.  A kill at any moment leaves either
``_tmp-`` files, which a rerun deletes, or committed tasks, which it keeps.
Only when every task is committed does the build give the parts their final,
consecutive names; no final name ever holds a partial tar.  Parts end in
``.part``, not ``.tar``, so a loader pointed at ``<split>/*.tar`` never picks
one up after a crash.

On object stores (S3, GCS, Azure) an upload becomes visible only once it is
complete, so parts are written straight to their ``_done-`` names there:
renaming is a full copy on those stores.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from collections.abc import Sequence

from vlconvert.format import shard_name, table_name, utf8
from vlconvert.pipeline.tar_writer import ShardInfo
from vlconvert.pipeline.task_result import ShardResult
from vlconvert.records import Record
from vlconvert.storage import uploads_are_atomic, write_atomic

PROGRESS_DIR = "_progress"
PART_SUFFIX = ".part"
TABLE_SUFFIX = ".parquet.part"  # a part's table (shard_table.py): named like the part, still never *.tar or *.parquet


def records_digest(records: Sequence[Record]) -> str:
    """Everything of a task's records that reaches its shard, in write order."""
    digest = hashlib.sha256()
    for r in records:
        image = r.image if isinstance(r.image, str) else hashlib.sha256(r.image).hexdigest()
        fields = [r.key, image, r.label, r.split, r.metadata, r.source, r.crop]
        digest.update(json.dumps(fields, sort_keys=True, default=str).encode())  # ASCII: any text, lone surrogates too
        digest.update(b"\n")
    return digest.hexdigest()


def part_path(fs, out_path: str, split: str, index: int, part: int) -> str:
    """Where a task writes a part while it runs."""
    prefix = "_done" if uploads_are_atomic(fs) else "_tmp"
    return posixpath.join(out_path, split, f"{prefix}-{index:06d}-{part:03d}{PART_SUFFIX}")


def table_path(part: str) -> str:
    """Where a part's Parquet table goes: beside it, under the same ``_tmp-``/``_done-`` name."""
    return part[: -len(PART_SUFFIX)] + TABLE_SUFFIX


def _done_path(out_path: str, split: str, index: int, part: int) -> str:
    return posixpath.join(out_path, split, f"_done-{index:06d}-{part:03d}{PART_SUFFIX}")


def _ledger_path(out_path: str, split: str, index: int) -> str:
    return posixpath.join(out_path, PROGRESS_DIR, split, f"{index:06d}.json")


def commit(fs, out_path: str, result: ShardResult) -> ShardResult:
    """Publish a finished task's parts under ``_done-`` names and record it in the ledger."""
    committed = []
    for part, info in enumerate(result.shards):
        done = _done_path(out_path, result.split, result.index, part)
        if info.path != done:
            fs.mv(info.path, done)
            if info.table_sha256:
                fs.mv(table_path(info.path), table_path(done))
        committed.append(ShardInfo(done, info.samples, info.bytes, info.sha256, info.table_bytes, info.table_sha256))
    result = ShardResult(result.split, result.index, committed, result.rejected, result.class_counts, result.inputs,
                         result.image_members)
    ledger = _ledger_path(out_path, result.split, result.index)
    fs.makedirs(posixpath.dirname(ledger), exist_ok=True)
    write_atomic(fs, ledger, utf8(json.dumps(result.to_json(), ensure_ascii=False)))
    return result


def load_committed(fs, out_path: str, splits: list[str]) -> dict[tuple[str, int], ShardResult]:
    """The tasks an interrupted build finished whose parts are all still there, whole.

    A part counts if its ``_done-`` file has the recorded size, or, when the crash
    came while the finished build was giving parts their final names, if its
    final name does.  Final names are given only once every task is committed,
    so they follow from the complete ledger: consecutive, in task order.
    """
    done: dict[tuple[str, int], ShardResult] = {}
    fs.invalidate_cache()  # another process wrote these; a cached listing would hide its work
    for split in splits:
        folder = posixpath.join(out_path, PROGRESS_DIR, split)
        if not fs.isdir(folder):
            continue
        try:
            sizes = {posixpath.basename(p["name"]): p["size"] for p in fs.ls(posixpath.join(out_path, split), detail=True)}
        except FileNotFoundError:  # an object store has no folder until a part is in it
            sizes = {}
        entries = [e for e in fs.ls(folder, detail=False) if e.endswith(".json")]
        results = []
        # One call for all entries: object stores fetch them concurrently.
        for text in fs.cat(entries, on_error="omit").values() if entries else ():
            try:
                results.append(ShardResult.from_json(json.loads(text)))
            except (ValueError, KeyError, TypeError, RecursionError):
                continue  # an unreadable entry: the task is simply done again
        final = 0
        for result in sorted(results, key=lambda r: r.index):
            # Parts are looked up by name in this folder, so a moved or renamed OUT still resumes.
            result.shards = [ShardInfo(posixpath.join(out_path, split, posixpath.basename(s.path)), s.samples, s.bytes, s.sha256,
                                       s.table_bytes, s.table_sha256) for s in result.shards]
            whole = True
            for info in result.shards:
                whole &= sizes.get(posixpath.basename(info.path)) == info.bytes or sizes.get(shard_name(split, final)) == info.bytes
                table = posixpath.basename(table_path(info.path))
                whole &= sizes.get(table) == info.table_bytes or sizes.get(table_name(split, final)) == info.table_bytes
                final += 1
            if result.split == split and whole:
                done[(result.split, result.index)] = result
    return done


def remove_partial(fs, out_path: str, splits: list[str]) -> None:
    """Delete what interrupted tasks left: ``_tmp-`` parts and ledger temp files."""
    for split in splits:
        for folder, prefix in ((posixpath.join(out_path, split), "_tmp-"), (posixpath.join(out_path, PROGRESS_DIR, split), None)):
            if not fs.isdir(folder):
                continue
            for path in fs.ls(folder, detail=False):
                name = posixpath.basename(path)
                if (prefix and name.startswith(prefix)) or name.endswith(".tmp"):
                    fs.rm(path)


def clear_ledger(fs, out_path: str) -> None:
    ledger = posixpath.join(out_path, PROGRESS_DIR)
    if fs.exists(ledger):
        fs.rm(ledger, recursive=True)
