"""Streams a COCO-style classification JSON (images, annotations, categories) into Arrow.

iNat-2021's train.json is about 1 GB with 2.7M images: loaded with ``json.load``
it would become several GB of Python dicts.  ijson's C backend parses one list
item at a time; every chunk of items is packed into Arrow columns and written
to an Arrow IPC file in a spill folder, then memory-mapped back.  Planning
touches only the id and label columns, so the process keeps a few hundred MB
resident however large the file is, and the page cache holds the rest.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

import ijson
import pyarrow as pa
import pyarrow.compute as pc

from vlconvert.records import Rejected, VLConvertError

_CHUNK = 20_000
_READ_BUFFER = 1 << 20


def read_list(fs, path: str, section: str, spill_dir: str | None = None) -> pa.Table:
    """Every item of the top-level list ``section`` as one table; missing fields are null.

    With ``spill_dir`` the columns live in memory-mapped files there, not on the heap.
    """
    chunks: list[pa.Table] = []
    pending: list[dict] = []

    def flush() -> None:
        try:
            table = pa.Table.from_struct_array(pa.array(pending))
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise VLConvertError(f"{path}: the {section!r} list has fields of mixed types: {exc}") from exc
        pending.clear()
        chunks.append(_spill(table, os.path.join(spill_dir, f"{section}-{len(chunks):05d}.arrow")) if spill_dir else table)

    try:
        with fs.open(path, "rb") as stream:
            for item in ijson.items(stream, f"{section}.item", use_float=True, buf_size=_READ_BUFFER):
                if not isinstance(item, dict):
                    raise VLConvertError(f"{path}: every entry of {section!r} must be an object, found {item!r}")
                pending.append(item)
                if len(pending) == _CHUNK:
                    flush()
    except ijson.JSONError as exc:
        raise VLConvertError(f"{path}: not valid JSON ({exc})") from exc
    if pending:
        flush()
    if not chunks:
        return pa.table({})
    try:
        return pa.concat_tables(chunks, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise VLConvertError(f"{path}: the {section!r} list has fields of mixed types: {exc}") from exc


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

    table: pa.Table  # every image entry's fields, plus "label"
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
        return LabelledImages(images.append_column("label", pa.array([], pa.int64())), pa.array([], pa.int64()))
    ids = images["id"]
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
        (pc.is_null(images["file_name"]), lambda i: "image entry has no file_name"),
        (pc.not_equal(first, pa.array(range(len(ids)), first.type)), lambda i: f"duplicate image id {id_of(i)} (first at images[{first[i].as_py()}])"),
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
        Rejected(split, _key_text(id_of(i), i), f"{path} images[{i}] {images['file_name'][i].as_py()}", reasons[i])
        for i in sorted(reasons)
    ]
    rows = pc.indices_nonzero(pc.invert(bad)).cast(pa.int64())
    return LabelledImages(images.append_column("label", label.cast(pa.int64())), rows, rejected)


def _images_with_conflicting_labels(ann_ids: pa.Array, ann_cats: pa.Array) -> pa.Array:
    if len(ann_ids) == 0:
        return ann_ids
    grouped = pa.table({"image_id": ann_ids, "category_id": ann_cats}).group_by("image_id").aggregate(
        [("category_id", "count_distinct")]
    )
    return grouped.filter(pc.greater(grouped["category_id_count_distinct"], 1))["image_id"]


def _key_text(image_id, position: int) -> str:
    return str(image_id) if image_id is not None else f"images[{position}]"
