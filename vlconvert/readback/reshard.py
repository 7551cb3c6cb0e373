"""``vlconvert.reshard``: a new build folder holding a chosen subset of a build's samples.

The samples are copied member for member (no image is decoded or re-encoded), in
the source's order, into new shards of ``shard_size``; each new shard gets its
table (the source's rows, unchanged) and the folder gets the side files and a
manifest whose account still starts from the dataset: per split, ``read`` is the
source's, the samples left out are counted (``filtered``, or ``deduplicated`` for
``vlconvert dedup``), and the source's rejections stay in ``errors.jsonl``.
``derived_from`` names the source build and its manifest's sha256.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
from collections import Counter
from collections.abc import Mapping, Sequence

import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

import vlconvert.format as output_format
from vlconvert.errors import VLConvertError
from vlconvert.pipeline import output_folder
from vlconvert.pipeline.build_tables import complete_build, read_table, read_tables, split_shards, table_schema
from vlconvert.pipeline.dataset_card import write_card
from vlconvert.pipeline.tar_writer import RollingTarWriter, TarPart
from vlconvert.readback.tar_stream import read_samples
from vlconvert.registry import available_adapters
from vlconvert.storage import filesystem, open_regular, storage_errors

_COPIED = (output_format.CLASSNAMES, output_format.CLASSES, output_format.ZEROSHOT_TEMPLATES, output_format.ERRORS,
           output_format.ERRORS_TABLE, output_format.DUPLICATES)
_OPTIONAL = (output_format.ERRORS_TABLE, output_format.DUPLICATES)  # copied when the source has them


_SHAPE = ("a selection is a table with split and key columns (what read_tables() gives, filtered), a pandas frame with "
          "them, or a mapping of split name to keys")


def selected_keys(selection) -> dict[str, set[str]]:
    """``selection``: a table (pyarrow, or anything with ``split`` and ``key`` columns, such as a pandas frame) or a
    mapping of split → keys."""
    if isinstance(selection, Mapping):
        pairs = [(split, key) for split, keys in selection.items() for key in _values(keys)]
    else:
        try:
            if not isinstance(selection, pa.Table):
                selection = pa.Table.from_pandas(selection) if hasattr(selection, "to_dict") else pa.table(selection)
        except (TypeError, ValueError, pa.ArrowException):
            raise VLConvertError(_SHAPE + f"; got {type(selection).__name__}") from None
        if "split" not in selection.column_names or "key" not in selection.column_names:
            raise VLConvertError(_SHAPE + f"; this one has the columns {', '.join(selection.column_names) or 'none'}")
        pairs = list(zip(selection.column("split").to_pylist(), selection.column("key").to_pylist()))
    chosen: dict[str, set[str]] = {}
    for split, key in pairs:
        if not isinstance(split, str) or not isinstance(key, str):
            raise VLConvertError(f"the selection names split {split!r}, key {key!r}: both must be text")
        chosen.setdefault(split, set()).add(key)
    return chosen


def _values(keys) -> list:
    if isinstance(keys, (str, bytes)):
        raise VLConvertError(_SHAPE + f"; a mapping's value is a list of keys, not the text {keys!r}")
    if hasattr(keys, "to_pylist"):  # a pyarrow array or column
        return keys.to_pylist()
    try:
        return list(keys)
    except TypeError:
        raise VLConvertError(_SHAPE + f"; a mapping's value is a list of keys, not {type(keys).__name__}") from None


@storage_errors
def reshard(out: str, selection, new_out: str, *, shard_size: int = 1000, overwrite: bool = False, left_out_as: str = "filtered",
            extra_files: Mapping[str, bytes] | None = None, extra_manifest: Mapping | None = None,
            keep_apart: Sequence[str] = ()) -> dict:
    """Write the samples of ``out`` that ``selection`` names (see :func:`selected_keys`) as a new build in ``new_out``;
    returns its manifest.  Splits with nothing selected are kept, empty, so the account of every split stays whole.
    ``keep_apart``: other builds ``new_out`` may not be (``vlconvert dedup``'s ``--against``)."""
    if isinstance(shard_size, bool) or not isinstance(shard_size, int) or shard_size < 1:
        raise VLConvertError(f"shard_size must be a whole number of at least 1, got {shard_size!r}")
    fs, path, manifest = complete_build(out)
    chosen = selected_keys(selection)
    unknown = [s for s in chosen if s not in manifest["splits"]]
    if unknown:
        raise VLConvertError(f"{out}: has no split {unknown[0]!r}; it has {', '.join(manifest['splits'])}")
    written = read_tables(out, columns=["key"])
    present: dict[str, set[str]] = {}
    for split, key in zip(written.column("split").to_pylist(), written.column("key").to_pylist()):
        present.setdefault(split, set()).add(key)
    for split, keys in chosen.items():
        missing = sorted(keys - present.get(split, set()))
        if missing:  # before NEW_OUT is claimed: a wrong selection leaves nothing behind
            raise VLConvertError(f"{out}: split {split} has no written sample with key {missing[0]!r}"
                                 + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    new_fs, new_path = filesystem(new_out, "the new build's folder")
    output_folder.check_apart(new_fs, new_path, fs, path, new_out, out, flag="--out", source_is="the build it reads")
    _apart_from(new_fs, new_path, new_out, keep_apart)
    source_digest = hashlib.sha256(fs.cat_file(posixpath.join(path, output_format.MANIFEST))).hexdigest()
    claim = hashlib.sha256(json.dumps([source_digest, sorted((s, sorted(k)) for s, k in chosen.items())]).encode()).hexdigest()
    output_folder.prepare(new_fs, new_out, new_path, list(manifest["splits"]), claim, overwrite, resume=False, resumable=False)
    splits, files = {}, {}
    for split, account in manifest["splits"].items():
        keys = chosen.get(split, set())
        splits[split], files[f"{split}/{output_format.SIZES}"] = _copy_split(
            fs, path, manifest, split, keys, new_fs, new_path, shard_size, out)
        left = account["written"] - splits[split]["written"]
        splits[split] = {**account, **splits[split], left_out_as: account.get(left_out_as, 0) + left}
    for name, data in {**side_files(fs, path, manifest, out), **(extra_files or {})}.items():
        files[name] = output_format.write_bytes(new_fs, posixpath.join(new_path, name), data)
    for split, account in splits.items():
        if account["shards"]:  # wids refuses an index without shards
            files[f"{split}/{output_format.wids_index_name(split)}"] = output_format.write_wids_index(
                new_fs, posixpath.join(new_path, split), split, account["shards"])
    derived = {"build": out, "manifest_sha256": source_digest, "left_out_as": left_out_as,
               "left_out": {s: manifest["splits"][s]["written"] - splits[s]["written"] for s in splits}}
    new = {**manifest, "splits": splits, "files": files, "derived_from": derived, **(extra_manifest or {})}
    # The card is made from the manifest, which records the card's sha256: the card first, as a build does.
    files[output_format.CARD] = write_card(new_fs, new_path, new, _adapter_class(manifest),
                                           {s: a["image_members"] for s, a in splits.items()})
    new["files"] = dict(sorted(files.items()))
    output_format.write_manifest(new_fs, new_path, new)
    return new


def side_files(fs, path: str, manifest: dict, out: str) -> dict[str, bytes]:
    """The source's side files that a copy keeps, each checked against the sha256 its manifest records."""
    recorded = manifest.get("files") or {}
    copied = {}
    for name in _COPIED:
        if name not in recorded and name in _OPTIONAL:
            continue
        with open_regular(fs, posixpath.join(path, name)) as f:
            data = f.read()
        info = recorded.get(name)
        if info is not None and output_format.file_info(data) != {"bytes": info.get("bytes"), "sha256": info.get("sha256")}:
            raise VLConvertError(f"{out}: {name} changed since the build wrote it; run `vlconvert validate {out}`")
        copied[name] = data
    return copied


def _adapter_class(manifest: dict):
    """The source's adapter class, for the card's license and citation (class attributes); None when it is gone."""
    entry = available_adapters().get((manifest.get("adapter") or {}).get("name"))
    try:
        return entry.load() if entry else None
    except VLConvertError:
        return None


def _copy_split(fs, path: str, manifest: dict, split: str, keys: set[str], new_fs, new_path: str, shard_size: int,
                out: str) -> tuple[dict, dict]:
    split_dir = posixpath.join(new_path, split)
    new_fs.makedirs(split_dir, exist_ok=True)
    expected = table_schema(manifest)
    counts: Counter = Counter()
    members: Counter = Counter()
    found: set[str] = set()

    def open_part(part: int) -> TarPart:
        return TarPart(new_fs.open(posixpath.join(split_dir, f"_tmp-000000-{part:03d}.part"), "wb"),
                       posixpath.join(split_dir, f"_tmp-000000-{part:03d}.part"))

    tables: list[list[pa.Table]] = []
    with RollingTarWriter(open_part, shard_size, manifest.get("shard_max_bytes") or (1 << 40)) as writer:
        for shard in split_shards(manifest, split, out):
            table = read_table(fs, path, shard, expected)
            wanted = [i for i, key in enumerate(table.column("key").to_pylist()) if key in keys]
            if not wanted:
                continue
            wanted_keys = {table.column("key")[i].as_py(): i for i in wanted}
            with open_regular(fs, posixpath.join(path, shard["name"])) as f:
                for sample in read_samples(f):
                    if sample.key in wanted_keys:
                        part = writer.write(sample.key, sample.members)
                        tables.extend([] for _ in range(part + 1 - len(tables)))
                        tables[part].append(table.slice(wanted_keys[sample.key], 1))
                        found.add(sample.key)
            counts.update(table.take(wanted).column("label").to_pylist())
            members.update(table.take(wanted).column("image_format").to_pylist())
        parts = writer.close()
    if keys - found:  # the tables list it but the tar does not: the build changed since (vlconvert validate says how)
        raise VLConvertError(f"{out}: split {split}: the tar shards lack {len(keys - found)} samples their tables list; "
                             "run `vlconvert validate`")
    shards = []
    for number, (info, part_rows) in enumerate(zip(parts, tables)):
        name, table_name = output_format.shard_name(split, number), output_format.table_name(split, number)
        new_fs.mv(info.path, posixpath.join(split_dir, name))
        table_info = output_format.write_bytes(new_fs, posixpath.join(split_dir, table_name), _parquet(pa.concat_tables(part_rows)))
        shards.append({"name": f"{split}/{name}", "samples": info.samples, "bytes": info.bytes, "sha256": info.sha256,
                       "table": {"name": f"{split}/{table_name}", **table_info}})
    sizes = output_format.write_sizes(new_fs, split_dir, shards)
    num_classes = manifest.get("num_classes") or 0
    written = sum(s["samples"] for s in shards)
    return {"written": written, "shards": shards, "class_counts": [counts.get(label, 0) for label in range(num_classes)],
            "image_members": dict(sorted(members.items()))}, sizes


def _parquet(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue().to_pybytes()


def _apart_from(new_fs, new_path: str, new_out: str, others: Sequence[str]) -> None:
    """``new_out`` may not be, hold or sit inside another build the caller reads (with ``--overwrite`` it would
    replace an evaluation set with a copy of the training data)."""
    for other in others:
        other_fs, other_path = filesystem(other, "--against")
        if other_fs.protocol != new_fs.protocol:
            continue
        local = isinstance(new_fs, LocalFileSystem)
        a, b = (os.path.realpath(p) if local else "/" + p.strip("/") for p in (new_path, other_path))
        if a == b or a.startswith(b.rstrip("/") + "/") or b.startswith(a.rstrip("/") + "/"):
            raise VLConvertError(f"--out {new_out} is, holds or sits inside the --against build {other}; "
                                 "the copy must go to a folder of its own")
