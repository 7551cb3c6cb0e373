"""``vlconvert build --dedup``: duplicates left out of the training splits before the shards get their names.

Every task has committed its parts and their tables, hashes included, so the search
(``dedup.py``) reads only the tables.  A part holding a dropped sample is rewritten
without it (members copied, nothing re-encoded) and its task's ledger entry is
committed again, so a build killed here resumes like any other; a part left with no
sample is removed.  Only the parts that held duplicates are touched.
"""

from __future__ import annotations

import hashlib
import io
import json
import posixpath
import tarfile
from collections import Counter

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from vlconvert.format import dumps, shard_name, table_name
from vlconvert.pipeline import ledger
from vlconvert.pipeline.build_tables import read_tables
from vlconvert.pipeline.dedup import COLUMNS, DedupResult, find_duplicates
from vlconvert.pipeline.tar_writer import ShardInfo, TarPart
from vlconvert.pipeline.task_result import ShardResult
from vlconvert.storage import write_atomic

# The decision, written before any part is rewritten: a rerun after a kill applies the same one instead of searching
# the half-rewritten parts (where a copy whose twin is already gone could look unique).  Under _progress/, which
# the finished build deletes; named like a ledger entry so that --overwrite knows it for the build's own.
DECISION = posixpath.join(ledger.PROGRESS_DIR, "_dedup", "000000.json")


def drop_duplicates(fs, out_path: str, results: dict[str, list[ShardResult]], against: list[str],
                    threshold: int) -> tuple[DedupResult, dict[str, int]]:
    """Finds the duplicates among the committed parts and rewrites the parts that hold a dropped one.
    Returns the findings and the samples dropped per split; ``results`` are updated in place.  Only the training splits
    lose samples (``dedup.py``)."""
    located = {split: _locate(fs, out_path, split, rs) for split, rs in results.items()}
    decision = posixpath.join(out_path, DECISION)
    if fs.exists(decision):
        found = DedupResult.from_json(json.loads(fs.cat_file(decision)))
    else:
        tables = {split: _split_table(fs, parts) for split, parts in located.items()}
        external = {other: read_tables(other, columns=COLUMNS) for other in dict.fromkeys(against)}
        found = find_duplicates(tables, external, threshold)
        fs.makedirs(posixpath.dirname(decision), exist_ok=True)
        write_atomic(fs, decision, dumps(found.to_json()).encode())
    for split, keys in found.dropped().items():
        for result in results[split]:
            _rewrite_task(fs, out_path, result, keys, located[split])
    removed = {split: sum(f.dropped for f in found.findings if f.split == split) for split in results}
    return found, removed


def _locate(fs, out_path: str, split: str, results: list[ShardResult]) -> dict[str, tuple[str, str]]:
    """Each committed part's tar and table where they are now: under ``_done-`` names, or, after a kill while the
    finished build was naming its shards, under the final names, which follow the task order."""
    found, number = {}, 0
    for result in sorted(results, key=lambda r: r.index):
        for info in result.shards:
            tar, table = info.path, ledger.table_path(info.path)
            if not fs.exists(table):
                folder = posixpath.join(out_path, split)
                tar, table = posixpath.join(folder, shard_name(split, number)), posixpath.join(folder, table_name(split, number))
            found[info.path] = (tar, table)
            number += 1
    return found


def _split_table(fs, located: dict[str, tuple[str, str]]) -> pa.Table:
    parts = [_read(fs, table, COLUMNS) for _, table in located.values()]
    return pa.concat_tables(parts) if parts else pa.table({name: pa.array([], pa.string()) for name in COLUMNS})


def _read(fs, path: str, columns=None) -> pa.Table:
    with fs.open(path, "rb") as f:
        return pq.read_table(io.BytesIO(f.read()), columns=columns, use_threads=False, pre_buffer=False)


def _rewrite_task(fs, out_path: str, result: ShardResult, keys: set[str], located: dict[str, tuple[str, str]]) -> None:
    """Rewrites the task's parts that hold one of ``keys``, then commits the task again."""
    shards, labels, changed = [], Counter(), False
    for info in result.shards:
        tar, table_file = located[info.path]
        table = _read(fs, table_file)
        gone = pc.is_in(table.column("key"), value_set=pa.array(sorted(keys), pa.string()))
        if not (pc.sum(gone).as_py() or 0):
            shards.append(info)
            continue
        changed = True
        labels.update(table.filter(gone).column("label").to_pylist())
        result.image_members.subtract(table.filter(gone).column("image_format").to_pylist())
        kept = table.filter(pc.invert(gone))
        if kept.num_rows == 0:
            fs.rm(tar)
            fs.rm(table_file)
            continue
        shards.append(_rewrite_part(fs, info, tar, table_file, set(table.filter(gone).column("key").to_pylist()), kept))
    if changed:
        result.shards = shards
        result.class_counts.subtract(labels)
        result.class_counts += Counter()  # drops the labels no sample is left of
        result.image_members += Counter()
        ledger.commit(fs, out_path, result)


def _rewrite_part(fs, info: ShardInfo, tar_path: str, table_path: str, gone: set[str], kept: pa.Table) -> ShardInfo:
    """The part without the samples of ``gone``, written beside it and moved over it; then its table likewise."""
    scratch = posixpath.join(posixpath.dirname(info.path), "_tmp-" + posixpath.basename(info.path)[len("_done-"):])
    part = TarPart(fs.open(scratch, "wb"), scratch)
    try:
        with fs.open(tar_path, "rb") as source, tarfile.open(fileobj=source, mode="r|") as tar:
            key, members = None, []
            for member in tar:  # our own part, just written: one sample's members are consecutive
                name, _, extension = member.name.partition(".")
                if name != key:
                    if key is not None and key not in gone:
                        part.write(key, members)
                    key, members = name, []
                members.append((extension, tar.extractfile(member).read()))
            if key is not None and key not in gone:
                part.write(key, members)
    except BaseException:
        part.abandon()
        raise
    written = part.close()
    fs.mv(scratch, tar_path)
    sink = io.BytesIO()
    pq.write_table(kept, sink, compression="zstd")
    data = sink.getvalue()
    with fs.open(ledger.table_path(scratch), "wb") as f:
        f.write(data)
    fs.mv(ledger.table_path(scratch), table_path)
    return ShardInfo(info.path, written.samples, written.bytes, written.sha256, len(data), hashlib.sha256(data).hexdigest())
