"""Streams a COCO-style classification JSON (images, annotations, categories) into Arrow.

iNat-2021's train.json is about 1 GB with 2.7M images: loaded with ``json.load``
it would become several GB of Python dicts.  ijson's C backend parses one list
item at a time and pyarrow packs each chunk into columns, so peak memory stays
near the size of the useful columns, not of the document.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import ijson
import pyarrow as pa
import pyarrow.compute as pc

from vlconvert.records import Rejected, VLConvertError

_CHUNK = 50_000
_READ_BUFFER = 1 << 20


def read_list(fs, path: str, section: str) -> pa.Table:
    """Every item of the top-level list ``section`` as one table; missing fields are null."""
    chunks: list[pa.Table] = []
    pending: list[dict] = []

    def flush() -> None:
        try:
            chunks.append(pa.Table.from_struct_array(pa.array(pending)))
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise VLConvertError(f"{path}: the {section!r} list has fields of mixed types: {exc}") from exc
        pending.clear()

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


def require_columns(table: pa.Table, columns: tuple[str, ...], path: str, section: str) -> None:
    missing = [c for c in columns if c not in table.column_names]
    if missing and table.num_rows:
        raise VLConvertError(f"{path}: entries of {section!r} lack the field(s) {', '.join(missing)}")


@dataclass
class LabelledImages:
    """The images of one split joined to their labels, plus what could not be joined."""

    table: pa.Table  # the image fields, plus "label"; one row per usable image
    rejected: list[Rejected] = field(default_factory=list)


def join_labels(
    images: pa.Table, annotations: pa.Table, category_ids: pa.Array, split: str, path: str
) -> LabelledImages:
    """Label every image through its annotation; reject those that cannot be labelled.

    ``category_ids`` is sorted, so a category's label is its position in it.
    """
    require_columns(images, ("id", "file_name"), path, "images")
    require_columns(annotations, ("image_id", "category_id"), path, "annotations")
    n = images.num_rows
    if n == 0:
        return LabelledImages(images.append_column("label", pa.array([], pa.int64())))
    ids = images["id"]
    reasons: list[str | None] = [None] * n

    def reject(mask, reason_for) -> None:
        for i in pc.indices_nonzero(pc.fill_null(mask, False)).to_pylist():
            if reasons[i] is None:
                reasons[i] = reason_for(i)

    positions = pa.array(range(n), pa.int64())
    reject(pc.is_null(ids), lambda i: "image entry has no id")
    reject(pc.is_null(images["file_name"]), lambda i: "image entry has no file_name")
    first = pc.index_in(ids, value_set=ids)
    reject(pc.not_equal(first, positions), lambda i: f"duplicate image id {ids[i].as_py()} (first at images[{first[i].as_py()}])")

    ann_ids = annotations["image_id"] if annotations.num_rows else pa.array([], ids.type)
    ann_cats = annotations["category_id"] if annotations.num_rows else pa.array([], pa.int64())
    ann_pos = pc.index_in(ids, value_set=ann_ids)
    reject(pc.is_null(ann_pos), lambda i: f"image id {ids[i].as_py()} has no annotation")
    conflicting = _images_with_conflicting_labels(ann_ids, ann_cats)
    reject(pc.is_in(ids, value_set=conflicting), lambda i: f"image id {ids[i].as_py()} has annotations with different category ids")
    cat = pc.take(ann_cats, ann_pos)
    label = pc.index_in(cat, value_set=category_ids)
    reject(pc.and_(pc.is_valid(cat), pc.is_null(label)), lambda i: f"unknown category id {cat[i].as_py()}")
    reject(pc.is_null(cat), lambda i: f"image id {ids[i].as_py()} has an annotation without category_id")

    keep = pa.array([r is None for r in reasons])
    rejected = [
        Rejected(split, _key_text(ids[i].as_py(), i), f"{path} images[{i}] {images['file_name'][i].as_py()}", reason)
        for i, reason in enumerate(reasons)
        if reason is not None
    ]
    table = images.append_column("label", label.cast(pa.int64())).filter(keep)
    return LabelledImages(table, rejected)


def _images_with_conflicting_labels(ann_ids: pa.Array, ann_cats: pa.Array) -> pa.Array:
    if len(ann_ids) == 0:
        return ann_ids
    grouped = pa.table({"image_id": ann_ids, "category_id": ann_cats}).group_by("image_id").aggregate(
        [("category_id", "count_distinct")]
    )
    return grouped.filter(pc.greater(grouped["category_id_count_distinct"], 1))["image_id"]


def _key_text(image_id, position: int) -> str:
    return str(image_id) if image_id is not None else f"images[{position}]"
