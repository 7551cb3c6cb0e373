"""The image-id keyed text files that CUB-200-2011 and NABirds share.

Both releases list images in ``images.txt`` ("<image_id> <path under images/>"),
labels in ``image_class_labels.txt``, the split in ``train_test_split.txt``
(1 = train) and boxes in ``bounding_boxes.txt`` ("<image_id> <x> <y> <width> <height>").
"""

from __future__ import annotations

import math
import posixpath
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from vlconvert.errors import VLConvertError

from ._release import ReleaseFiles
from ._rows import ImageRow, id_order

TRAIN_TEST = ("train", "test")


def zero_one(values: list[str]) -> bool:
    """The ``is_training_image`` column of CUB and NABirds."""
    if values[0] not in {"0", "1"}:
        raise ValueError(values[0])
    return values[0] == "1"


def train_or_test(is_train: Mapping[str, bool], image_id: str) -> str | None:
    return None if image_id not in is_train else TRAIN_TEST[0] if is_train[image_id] else TRAIN_TEST[1]


def box_crop(box: Sequence[float] | None) -> tuple[tuple | None, str | None]:
    """An (x, y, width, height) box as a Record crop, or the reason it cannot be one."""
    if not box:
        return None, "crop is on but the release gives this image no bounding box"
    x, y, width, height = box
    if not all(math.isfinite(v) for v in box):
        return None, f"bounding box {list(box)} is not a finite box"
    if width <= 0 or height <= 0 or x + width <= 0 or y + height <= 0:
        return None, f"bounding box {list(box)} is empty or outside the image"
    return (max(0.0, x), max(0.0, y), x + width, y + height), None


@dataclass
class ImageTables:
    paths: dict[str, str]
    labels: dict[str, str]
    is_train: dict[str, bool]
    boxes: dict[str, list[float]]
    images_file: str


def read_image_tables(files: ReleaseFiles, folder: str = "") -> ImageTables:
    def at(name: str) -> str:
        return posixpath.join(folder, name) if folder else name

    paths = files.table(at("images.txt"), "<image_id> <path>", lambda v: v[0], 2, rest=True)
    if not paths:
        raise VLConvertError(f"{files.root}/{at('images.txt')}: lists no images")
    return ImageTables(
        paths=paths,
        labels=files.table(at("image_class_labels.txt"), "<image_id> <class_id>", lambda v: v[0], 2),
        is_train=files.table(at("train_test_split.txt"), "<image_id> <is_training_image 0|1>", zero_one, 2),
        boxes=files.table(at("bounding_boxes.txt"), "<image_id> <x> <y> <width> <height>", lambda v: [float(x) for x in v], 5)
        if files.exists(at("bounding_boxes.txt")) else {},
        images_file=at("images.txt"),
    )


def image_rows(tables: ImageTables, image_folder: str, crop: bool, metadata: Callable[[str], dict]) -> list[ImageRow]:
    """One row per image of ``images.txt``, plus one per id the other files list but images.txt does not."""
    rows = []
    for image_id in sorted(tables.paths, key=id_order):
        box = tables.boxes.get(image_id)
        region, problem = box_crop(box) if crop else (None, None)
        rows.append(ImageRow(
            image_id, posixpath.join(image_folder, tables.paths[image_id]), tables.labels.get(image_id),
            train_or_test(tables.is_train, image_id), {"image_id": image_id, "bbox": box, **metadata(image_id)}, region, problem,
        ))
    strays = (set(tables.labels) | set(tables.is_train)) - set(tables.paths)
    for image_id in sorted(strays, key=id_order):
        rows.append(ImageRow(image_id, "", tables.labels.get(image_id), train_or_test(tables.is_train, image_id),
                             problem=f"listed in image_class_labels.txt or train_test_split.txt but not in {tables.images_file}"))
    return rows
