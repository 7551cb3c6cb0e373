"""A finished build's per-shard Parquet tables, read as one table.

``vlconvert.read_tables(OUT)`` is where filtering and re-sharding start: every
written sample's row (docs/output-format.md), with the shard it is in (``shard``)
and its position there (``position``), so a selection made with pyarrow, duckdb or
pandas can be handed straight to :func:`vlconvert.reshard`.
"""

from __future__ import annotations

import hashlib
import io
import os
import posixpath
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from vlconvert.errors import VLConvertError
from vlconvert.format import MANIFEST, ManifestUnreadable, is_listed_shard_name, read_manifest
from vlconvert.pipeline.shard_table import schema
from vlconvert.storage import filesystem, read_bounded

MAX_TABLE_BYTES = 256 << 20


def complete_build(out: str) -> tuple[object, str, dict]:
    """(fs, path, manifest) of a finished build; a one-line error for anything else."""
    fs, path = filesystem(out, "a build folder")
    try:
        manifest = read_manifest(fs, path)
    except (FileNotFoundError, NotADirectoryError):
        raise VLConvertError(f"{out}: holds no {MANIFEST}, so it is not a vlconvert build") from None
    except ManifestUnreadable as exc:
        raise VLConvertError(f"{out}: its {MANIFEST} is not a vlconvert manifest ({exc})") from None
    if manifest.get("status") != "complete" or not isinstance(manifest.get("splits"), dict):
        raise VLConvertError(f"{out}: not a complete build (run `vlconvert validate {out}` to see why)")
    return fs, path, manifest


def split_shards(manifest: dict, split: str, out: str) -> list[dict]:
    """The split's shard entries, each with the table a build of this version writes beside it."""
    shards = manifest["splits"][split].get("shards") or []
    for shard in shards:
        name = shard.get("name") if isinstance(shard, dict) else None
        if not isinstance(name, str) or not is_listed_shard_name(split, name):
            raise VLConvertError(f"{out}: manifest.json lists a shard {name!r} that a build does not write; run `vlconvert validate`")
        if not isinstance(shard.get("table"), dict):
            raise VLConvertError(f"{out}: {name} has no Parquet table (the build predates them); rebuild it with this vlconvert")
    return shards


def table_schema(manifest: dict) -> pa.Schema:
    """The schema every table of this build has: its caption columns follow the manifest's templates."""
    names = list(dict.fromkeys(t.get("name") for t in manifest.get("templates") or [] if isinstance(t, dict)))
    return schema([n for n in names if isinstance(n, str)])


def read_tables(out: str, splits: Sequence[str] | None = None, columns: Sequence[str] | None = None) -> pa.Table:
    """Every written sample of ``out`` (of ``splits``; default all), one row each, in shard order, with the
    columns ``shard`` (its tar, relative to OUT) and ``position`` (its place in that tar) added."""
    fs, path, manifest = complete_build(out)
    chosen = list(splits) if splits else list(manifest["splits"])
    unknown = [s for s in chosen if s not in manifest["splits"]]
    if unknown:
        raise VLConvertError(f"{out}: has no split {unknown[0]!r}; it has {', '.join(manifest['splits'])}")
    expected = table_schema(manifest)
    if columns is not None:
        missing = [c for c in columns if c not in expected.names and c not in ("shard", "position")]
        if missing:
            raise VLConvertError(f"no column {missing[0]!r} in {out}'s tables; they have: {', '.join(expected.names)}, shard, position")
    wanted = None if columns is None else [c for c in dict.fromkeys(["key", "split", *columns]) if c in expected.names]
    parts = []
    for split in chosen:
        for shard in split_shards(manifest, split, out):
            table = read_table(fs, path, shard, expected, wanted)
            parts.append(table.append_column("shard", pa.array([shard["name"]] * table.num_rows, pa.string()))
                         .append_column("position", pa.array(range(table.num_rows), pa.int32())))
    if not parts:  # no shard at all (every image of the split left out): the same columns, no rows
        empty = expected.empty_table().select(wanted) if wanted else expected.empty_table()
        parts = [empty.append_column("shard", pa.array([], pa.string())).append_column("position", pa.array([], pa.int32()))]
    return pa.concat_tables(parts)


def read_table(fs, path: str, shard: dict, expected: pa.Schema, columns: Sequence[str] | None = None) -> pa.Table:
    """One shard's table, checked against the manifest's size and sha256 and the schema the build writes: a table
    changed since the build would select, copy or compare the wrong samples."""
    table = shard["table"]
    name = table.get("name")
    where = posixpath.join(path, str(name))
    if name != shard["name"][: -len(".tar")] + ".parquet":
        raise VLConvertError(f"{path}: manifest.json names {name!r} as the table of {shard['name']}; run `vlconvert validate`")
    try:
        data = read_bounded(fs, where, MAX_TABLE_BYTES)
    except FileNotFoundError:
        raise VLConvertError(f"{where}: missing; run `vlconvert validate`") from None
    except (ValueError, OSError) as exc:
        raise VLConvertError(f"{where}: cannot read this table ({exc})") from None
    if (len(data), hashlib.sha256(data).hexdigest()) != (table.get("bytes"), table.get("sha256")):
        raise VLConvertError(f"{where}: changed since the build wrote it (its size or sha256 is not the manifest's); "
                             "run `vlconvert validate`")
    try:
        # No Arrow thread pools: one left alive aborted 1 exit in 15 ("terminate called without an active
        # exception", apache/arrow#34314), and a shard's table is small enough to read on this thread.
        found = pq.read_table(io.BytesIO(data), use_threads=False, pre_buffer=False)
    except (ValueError, OSError, pa.ArrowException) as exc:
        raise VLConvertError(f"{where}: cannot read this table ({str(exc).splitlines()[0]})") from None
    if not found.schema.equals(expected):
        raise VLConvertError(f"{where}: does not have the columns a build of this manifest writes; run `vlconvert validate`")
    return found.select(list(columns)) if columns else found


def check_against(builds: Sequence[str], out_fs, out_path: str, out: str) -> None:
    """Each ``--dedup-against`` build is a complete build with tables, and none is the build being written."""
    for other in builds:
        other_fs, other_path = filesystem(other, "--dedup-against")
        if other_fs.protocol == out_fs.protocol and _same_place(other_fs, other_path, out_path):
            raise VLConvertError(f"--dedup-against {other} is the build being written (--out {out}); name another build")
        _, _, manifest = complete_build(other)
        for split in manifest["splits"]:
            split_shards(manifest, split, other)


def _same_place(fs, a: str, b: str) -> bool:
    if isinstance(fs, LocalFileSystem):
        return os.path.realpath(a) == os.path.realpath(b)
    return a.strip("/") == b.strip("/")
