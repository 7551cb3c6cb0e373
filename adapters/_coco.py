"""A COCO-style classification file's images joined to their labels through its annotations.

The lists come from ``_json_tables.py`` as Arrow tables; every image that
cannot be labelled (no id, a duplicate id, no annotation, conflicting or
unknown categories, a file name leaving the root) is rejected with its reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from vlconvert.errors import VLConvertError
from vlconvert.records import KEY_PATTERN, Rejected, key_rule

from ._sorted_join import Lookups, sorted_lookups

ESCAPES_ROOT = "_file_name_escapes_root"
# The joined label; a name no image field uses (iNat entries may carry their own "label").
LABEL = "_vlconvert_label"


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
        first, ann_pos, conflicting, cat = sorted_lookups(ids, ann_ids, ann_cats) or _hashed_lookups(ids, ann_ids, ann_cats)
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


def _hashed_lookups(ids, ann_ids, ann_cats) -> Lookups:
    ann_pos = pc.index_in(ids, value_set=ann_ids)
    return Lookups(first=pc.index_in(ids, value_set=ids), ann_pos=ann_pos,
                   conflicting=pc.is_in(ids, value_set=_images_with_conflicting_labels(ann_ids, ann_cats)),
                   cat=pc.take(ann_cats, ann_pos))


def _images_with_conflicting_labels(ann_ids: pa.Array, ann_cats: pa.Array) -> pa.Array:
    if len(ann_ids) == 0:
        return ann_ids
    grouped = pa.table({"image_id": ann_ids, "category_id": ann_cats}).group_by("image_id").aggregate(
        [("category_id", "count_distinct")]
    )
    return grouped.filter(pc.greater(grouped["category_id_count_distinct"], 1))["image_id"]


def _key_text(image_id, position: int) -> str:
    return str(image_id) if image_id is not None else f"images[{position}]"
