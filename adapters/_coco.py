"""Streams a COCO-style classification JSON (images, annotations, categories) into Arrow.

iNat-2021's train.json is about 1 GB with 2.7M images: loaded with ``json.load``
it would become several GB of Python dicts.  ijson's C backend parses one list
item at a time; every chunk of items is packed into Arrow columns and written
to an Arrow IPC file in a spill folder, then memory-mapped back.  Planning
touches only the id and label columns, so the process keeps a few hundred MB
resident however large the file is, and the page cache holds the rest.

The file is someone else's, so ijson reads it through a ``NestingGuard``
(``_json_guard.py``): ijson keeps a prefix string per level, and a 100 KB file
of ``[[[[…`` would cost gigabytes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import ijson
import pyarrow as pa
import pyarrow.compute as pc

from vlconvert.errors import VLConvertError
from vlconvert.records import KEY_PATTERN, Rejected, key_rule

from ._json_guard import NestingGuard

CHUNK_ROWS = 20_000
_READ_BUFFER = 1 << 20
ESCAPES_ROOT = "_file_name_escapes_root"
# The joined label; a name no image field uses (iNat entries may carry their own "label").
LABEL = "_vlconvert_label"


def read_list(
    fs, path: str, section: str, spill_dir: str | None = None, chunk_rows: int = CHUNK_ROWS,
    annotate: Callable[[pa.Table], pa.Table] | None = None, open_file: Callable[[str], Any] | None = None,
    guard: bool = True,
) -> pa.Table:
    """Every item of the top-level list ``section`` as one table; missing fields are null.

    With ``spill_dir`` the columns live in memory-mapped files there, not on the heap.
    ``open_file(path)`` opens it (default ``fs.open``): a release's own, under the read policy.
    ``guard=False`` skips the nesting guard, for a second pass over a file a guarded pass read whole.
    ``annotate`` may add derived columns to each chunk while it is still in memory:
    a check over a whole spilled column would page all of it back in.
    """
    chunks: list[pa.Table] = []
    starts: list[int] = []  # index in the list of each chunk's first item, for error messages
    pending: list[dict] = []

    def flush() -> None:
        starts.append(sum(len(c) for c in chunks))
        table = _to_table(pending, path, section, starts[-1])
        pending.clear()
        if annotate:
            table = annotate(table)
        chunks.append(_spill(table, os.path.join(spill_dir, f"{section}-{len(chunks):05d}.arrow")) if spill_dir else table)

    opener = open_file or (lambda p: fs.open(p, "rb"))
    try:
        with opener(path) as raw:
            stream = NestingGuard(raw, path) if guard else raw
            # An empty section means the document itself is the list (iNat-2018's categories.json).
            for item in ijson.items(stream, f"{section}.item" if section else "item", use_float=True, buf_size=_READ_BUFFER):
                if not isinstance(item, dict):
                    raise VLConvertError(f"{path}: every entry of {section!r} must be an object, found {item!r}")
                pending.append(item)
                if len(pending) == chunk_rows:
                    flush()
    except ijson.JSONError as exc:
        # yajl's message draws the spot on further lines; the first one says what is wrong.
        raise VLConvertError(f"{path}: not valid JSON ({str(exc).strip().splitlines()[0].strip()})") from exc
    if pending:
        flush()
    if not chunks:
        if section:
            _require_section(opener, path, section)
        return pa.table({})
    try:
        return pa.concat_tables(chunks, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise VLConvertError(_conflict_between_chunks(chunks, starts, path, section) or f"{path}: {section}: {exc}") from exc


_EVENT_KINDS = {"start_map": "an object", "string": "a string", "number": "a number", "boolean": "a boolean", "null": "null"}


def _require_section(opener, path: str, section: str) -> None:
    # Only reached when the list yielded nothing: tell "empty" from "absent" from "not a list".
    try:
        with opener(path) as raw:
            for prefix, event, _ in ijson.parse(NestingGuard(raw, path), buf_size=_READ_BUFFER):
                if prefix == section and event != "map_key":
                    if event == "start_array":
                        return  # an empty list
                    raise VLConvertError(f"{path}: {section!r} must be a list, but it is {_EVENT_KINDS.get(event, event)}")
                if prefix == "" and event in ("start_array", "string", "number", "boolean", "null"):
                    raise VLConvertError(f"{path}: the file is {_EVENT_KINDS.get(event, 'a list')}, not an object "
                                         f"holding the {section!r} list; is this a COCO-style annotation file?")
    except ijson.JSONError as exc:
        raise VLConvertError(f"{path}: not valid JSON ({str(exc).strip().splitlines()[0].strip()})") from exc
    raise VLConvertError(f"{path}: has no {section!r} list; is this a COCO-style annotation file?")


def _to_table(items: list[dict], path: str, section: str, start: int) -> pa.Table:
    try:
        return pa.Table.from_struct_array(pa.array(items))
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        for field in dict.fromkeys(k for item in items for k in item):
            values = [item.get(field) for item in items]
            kinds = [_kind(v) for v in values if v is not None]
            for i, value in enumerate(values):
                if value is not None and kinds and _kind(value) != kinds[0]:
                    raise VLConvertError(
                        f"{path}: {section}[{start + i}].{field} is {value!r}, but earlier entries hold {kinds[0]} values"
                    ) from exc
        raise VLConvertError(f"{path}: {section}[{start}:{start + len(items)}] cannot be read: {exc}") from exc


def _kind(value) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return {str: "string", dict: "object", list: "list"}.get(type(value), type(value).__name__)


def _conflict_between_chunks(chunks: list[pa.Table], starts: list[int], path: str, section: str) -> str | None:
    seen: dict[str, tuple[pa.DataType, int]] = {}
    for chunk, start in zip(chunks, starts):
        for column in chunk.schema:
            if pa.types.is_null(column.type):
                continue
            first_type, first_start = seen.setdefault(column.name, (column.type, start))
            if first_type != column.type and not (_numeric(first_type) and _numeric(column.type)):
                return (
                    f"{path}: {section}.{column.name} holds {first_type} values from {section}[{first_start}] "
                    f"but {column.type} values from {section}[{start}] on"
                )
    return None


def _numeric(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t)


def _spill(table: pa.Table, path: str) -> pa.Table:
    with pa.ipc.new_file(path, table.schema) as writer:
        writer.write_table(table)
    return pa.ipc.open_file(pa.memory_map(path)).read_all()


def require_columns(table: pa.Table, columns: tuple[str, ...], path: str, section: str) -> None:
    missing = [c for c in columns if c not in table.column_names]
    if missing and table.num_rows:
        raise VLConvertError(f"{path}: entries of {section!r} lack the field(s) {', '.join(missing)}")


@dataclass
class LabelledImages:
    """The images of one split joined to their labels, plus what could not be joined."""

    table: pa.Table  # every image entry's fields, plus LABEL
    rows: pa.Array  # positions in ``table`` of the usable images; a filtered copy would double memory
    rejected: list[Rejected] = field(default_factory=list)


def join_labels(
    images: pa.Table, annotations: pa.Table, category_ids: pa.Array, split: str, path: str
) -> LabelledImages:
    """Label every image through its annotation; reject those that cannot be labelled.

    ``category_ids`` is sorted, so a category's label is its position in it.
    """
    require_columns(images, ("id", "file_name"), path, "images")
    require_columns(annotations, ("image_id", "category_id"), path, "annotations")
    if images.num_rows == 0:
        return LabelledImages(images.append_column(LABEL, pa.array([], pa.int64())), pa.array([], pa.int64()))
    ids, file_names = images["id"], images["file_name"]
    if not (pa.types.is_integer(ids.type) or pa.types.is_string(ids.type) or pa.types.is_null(ids.type)):
        raise VLConvertError(f"{path}: image ids must be integers or strings, found {ids.type} values")
    if not (pa.types.is_string(file_names.type) or pa.types.is_null(file_names.type)):
        raise VLConvertError(f"{path}: image file_name fields must be strings, found {file_names.type} values")
    ann_ids = annotations["image_id"] if annotations.num_rows else pa.array([], ids.type)
    ann_cats = annotations["category_id"] if annotations.num_rows else pa.array([], pa.int64())
    try:
        first = pc.index_in(ids, value_set=ids)
        ann_pos = pc.index_in(ids, value_set=ann_ids)
        conflicting = pc.is_in(ids, value_set=_images_with_conflicting_labels(ann_ids, ann_cats))
        cat = pc.take(ann_cats, ann_pos)
        label = pc.index_in(cat, value_set=category_ids)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        raise VLConvertError(f"{path}: image ids, annotation image_ids and category ids must be of matching types ({exc})") from exc

    def id_of(i: int):
        return ids[i].as_py()

    # In order of precedence: an image gets the first reason that applies.
    checks: list[tuple[pa.Array, Callable[[int], str]]] = [
        (pc.is_null(ids), lambda i: "image entry has no id"),
        (_invalid_keys(ids), lambda i: f"image id {id_of(i)!r} cannot be a sample key {key_rule(id_of(i))}"),
        (pc.is_null(file_names), lambda i: "image entry has no file_name"),
        (images[ESCAPES_ROOT] if ESCAPES_ROOT in images.column_names else pa.repeat(False, len(ids)),
         lambda i: f"file_name {file_names[i].as_py()!r} points outside the dataset root"),
        (pc.not_equal(first, pa.array(range(len(ids)), first.type)),
         lambda i: f"duplicate image id {id_of(i)} (first at images[{first[i].as_py()}])"),
        (pc.is_null(ann_pos), lambda i: f"image id {id_of(i)} has no annotation"),
        (conflicting, lambda i: f"image id {id_of(i)} has annotations with different category ids"),
        (pc.is_null(cat), lambda i: f"image id {id_of(i)} has an annotation without category_id"),
        (pc.is_null(label), lambda i: f"unknown category id {cat[i].as_py()}"),
    ]
    reasons: dict[int, str] = {}
    bad = pa.repeat(False, len(ids))
    for mask, reason in checks:
        mask = pc.fill_null(mask, False)
        for i in pc.indices_nonzero(pc.and_not(mask, bad)).to_pylist():
            reasons[i] = reason(i)
        bad = pc.or_(bad, mask)
    rejected = [
        Rejected(split, _key_text(id_of(i), i), f"{path} images[{i}] {file_names[i].as_py()}", reasons[i])
        for i in sorted(reasons)
    ]
    rows = pc.indices_nonzero(pc.invert(bad)).cast(pa.int64())
    return LabelledImages(images.append_column(LABEL, label.cast(pa.int64())), rows, rejected)


def _invalid_keys(ids) -> pa.Array:
    if not pa.types.is_string(ids.type):
        return pa.repeat(False, len(ids))  # integers always make valid keys
    return pc.invert(pc.match_substring_regex(ids, KEY_PATTERN))


def flag_paths_escaping_root(images: pa.Table) -> pa.Table:
    """Adds the ESCAPES_ROOT column: file_names that are absolute, climb out with '..', start at
    home ('~'), or carry a scheme or '::' chain (fsspec would read file://, local:// anywhere)."""
    if "file_name" not in images.column_names or not pa.types.is_string(images["file_name"].type):
        return images
    escapes = pc.match_substring_regex(images["file_name"], r"^/|^~|^[A-Za-z][A-Za-z0-9+.-]*:|::|(^|/)\.\.(/|$)")
    return images.append_column(ESCAPES_ROOT, escapes)


def _images_with_conflicting_labels(ann_ids: pa.Array, ann_cats: pa.Array) -> pa.Array:
    if len(ann_ids) == 0:
        return ann_ids
    grouped = pa.table({"image_id": ann_ids, "category_id": ann_cats}).group_by("image_id").aggregate(
        [("category_id", "count_distinct")]
    )
    return grouped.filter(pc.greater(grouped["category_id_count_distinct"], 1))["image_id"]


def _key_text(image_id, position: int) -> str:
    return str(image_id) if image_id is not None else f"images[{position}]"
