"""Image rows, as a release lists them, turned into records and rejections with their reasons."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from vlconvert.records import Record, Rejected, is_valid_key, key_rule

from ._release import ReleaseFiles, leaves_root


@dataclass(frozen=True)
class ImageRow:
    """One image as listed by a release, before it is checked."""

    image_id: str
    path: str  # relative to the release root
    class_id: str | None  # None: the release gives the image no class
    split: str | None  # None: the release gives the image no split
    metadata: Mapping[str, Any] = field(default_factory=dict)
    crop: tuple | None = None
    problem: str | None = None  # a reason, found by the adapter, why this row cannot be a record


def assemble(
    files: ReleaseFiles, rows: Sequence[ImageRow], label_of: Mapping[str, int], splits: Sequence[str], where: str,
) -> tuple[dict[str, list[Record]], dict[str, list[Rejected]]]:
    """Records per split for every row that can be one; a Rejected, with its reason, for every other.

    A path that leaves the release's folder (absolute, ``..``, ``file://``) is refused, never
    read, unless the release allows it: a dataset file must not make vlconvert read /etc/passwd.
    Remote URLs (``https://``, ``s3://``) are references by design and stay."""
    records: dict[str, list[Record]] = {s: [] for s in splits}
    rejected: dict[str, list[Rejected]] = {s: [] for s in splits}
    first_seen: dict[tuple[str, str], str] = {}
    for row in rows:
        split = row.split if row.split in records else splits[0]
        reason = _reason(row, splits, label_of)
        if not reason and not files.allow_outside_root and leaves_root(files.join(""), row.path):
            reason = f"path {row.path!r} points outside the dataset root"
        if not reason and (split, row.image_id) in first_seen:
            reason = f"duplicate image id {row.image_id} (first: {first_seen[split, row.image_id]})"
        first_seen.setdefault((split, row.image_id), row.path)
        if reason:
            rejected[split].append(Rejected(split, row.image_id, f"{where} image {row.image_id} {row.path}", reason))
            continue
        records[split].append(Record(
            key=row.image_id, image=files.location(row.path), label=label_of[row.class_id], split=split,
            metadata=dict(row.metadata), source=row.path, crop=row.crop,
        ))
    return records, rejected


def _reason(row: ImageRow, splits: Sequence[str], label_of: Mapping[str, int]) -> str | None:
    if row.problem:
        return row.problem
    if not row.path:
        return "the release gives this image no file"
    if row.split is None:
        return "the release assigns this image to no split"
    if row.split not in splits:
        return f"unknown split {row.split!r}"
    if row.class_id is None:
        return "the release gives this image no class"
    if row.class_id not in label_of:
        return f"unknown class {row.class_id!r}"
    if not is_valid_key(row.image_id):
        return f"image id {row.image_id!r} cannot be a sample key {key_rule(row.image_id)}"
    return None


def id_order(value: str):
    """Sorts ids numerically when they are numbers ("2" before "10"), as text otherwise."""
    return (0, int(value), "") if value.isdigit() else (1, 0, value)
