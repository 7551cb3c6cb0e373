"""Writes small datasets in the exact release layouts of CUB-200-2011, NABirds and FGVC-Aircraft."""

from __future__ import annotations

import random
import uuid
from pathlib import Path

from inat_layout import write_image

DATA = Path(__file__).parent / "data"


def cub_classes() -> list[tuple[int, str]]:
    """The 200 classes of CUB-200-2011's classes.txt."""
    lines = (DATA / "cub200_classes.txt").read_text(encoding="utf-8").splitlines()
    return [(int(a), b) for a, b in (line.split() for line in lines)]


def write_lines(path: Path, lines) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


def make_cub(root: Path, classes=None, counts=None, attributes=True, size=(40, 30), seed=0) -> Path:
    """``counts`` maps class id → (train images, test images); default 2 + 1 for each class."""
    classes = classes or cub_classes()[:5]
    counts = counts or {cid: (2, 1) for cid, _ in classes}
    rng = random.Random(seed)
    base = root / "CUB_200_2011"
    images, labels, split, boxes, attribute_rows = [], [], [], [], []
    image_id = 0
    for class_id, raw in classes:
        train, test = counts[class_id]
        for n in range(train + test):
            image_id += 1
            path = f"{raw}/{raw.split('.', 1)[1]}_{image_id:04d}_{rng.randint(1000, 99999)}.jpg"
            write_image(base / "images" / path, (class_id % 256, 80, 200 - class_id % 200), size)
            images.append(f"{image_id} {path}")
            labels.append(f"{image_id} {class_id}")
            split.append(f"{image_id} {1 if n < train else 0}")
            boxes.append(f"{image_id} 4.0 3.0 {size[0] - 10}.0 {size[1] - 8}.0")
            # is_present, certainty (4 = definitely, 1 = not visible); one line carries the release's extra field
            attribute_rows += [f"{image_id} 1 1 4 2.5", f"{image_id} 2 1 3 0 1.509", f"{image_id} 3 0 4 1.0", f"{image_id} 4 1 1 3.0"]
    write_lines(base / "images.txt", images)
    write_lines(base / "classes.txt", [f"{cid} {raw}" for cid, raw in classes])
    write_lines(base / "image_class_labels.txt", labels)
    write_lines(base / "train_test_split.txt", split)
    write_lines(base / "bounding_boxes.txt", boxes)
    if attributes:
        write_lines(base / "attributes" / "image_attribute_labels.txt", attribute_rows)
        write_lines(root / "attributes.txt", ["1 has_bill_shape::cone", "2 has_wing_color::black",
                                              "3 has_crown_color::red", "4 has_size::small_(5_-_9_in)"])
    return root


NABIRDS_CLASSES = {
    # id: (name, parent id) — the real shape: a root, groups, species, and visual categories
    0: ("Birds", None),
    1: ("Perching Birds", 0),
    2: ("Blackbirds and Orioles", 1),
    3: ("Red-winged Blackbird", 2),
    4: ("Red-winged Blackbird (Male)", 3),
    5: ("Red-winged Blackbird (Female/juvenile)", 3),
    6: ("Birds of Prey", 0),
    7: ("Bald Eagle (Adult, subadult)", 6),
    8: ("Sharp-shinned Hawk (Adult )", 6),  # the release's stray space before ")"
    9: ("Cooper's Hawk (Immature)", 6),
}


def make_nabirds(root: Path, per_class: int = 2, size=(40, 30)) -> Path:
    images, labels, split, sizes, boxes = [], [], [], [], []
    rng = random.Random(1)
    for class_id in (4, 5, 7, 8, 9):
        for n in range(per_class):
            image_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            path = f"{class_id:04d}/{image_id.replace('-', '')}.jpg"
            write_image(root / "images" / path, (class_id * 30, 90, 60), size)
            images.append(f"{image_id} {path}")
            labels.append(f"{image_id} {class_id}")
            split.append(f"{image_id} {1 if n == 0 else 0}")
            sizes.append(f"{image_id} {size[0]} {size[1]}")
            boxes.append(f"{image_id} 2 3 20 15")
    write_lines(root / "images.txt", images)
    write_lines(root / "classes.txt", [f"{cid} {name}" for cid, (name, _) in NABIRDS_CLASSES.items()])
    write_lines(root / "hierarchy.txt", [f"{cid} {parent}" for cid, (_, parent) in NABIRDS_CLASSES.items() if parent is not None])
    write_lines(root / "image_class_labels.txt", labels)
    write_lines(root / "train_test_split.txt", split)
    write_lines(root / "sizes.txt", sizes)
    write_lines(root / "bounding_boxes.txt", boxes)
    return root


FGVC = [  # (manufacturer, family, variant): names with spaces and '/'
    ("Boeing", "Boeing 707", "707-320"),
    ("McDonnell Douglas", "F/A-18", "F/A-18"),
    ("Cessna", "Cessna 172", "Cessna 172"),
]


def make_fgvc(root: Path, size=(60, 50)) -> Path:
    data = root / "data"
    per = {(level, split): [] for level in ("variant", "family", "manufacturer") for split in ("train", "val", "test")}
    boxes, number = [], 34309
    for manufacturer, family, variant in FGVC:
        for split in ("train", "val", "test"):
            image_id = f"{number:07d}"  # 7 digits with leading zeros, as released
            number += 1
            image = data / "images" / f"{image_id}.jpg"
            write_image(image, (40, 40, 40), size)
            per[("variant", split)].append(f"{image_id} {variant}")
            per[("family", split)].append(f"{image_id} {family}")
            per[("manufacturer", split)].append(f"{image_id} {manufacturer}")
            boxes.append(f"{image_id} 3 4 50 25")
    for (level, split), lines in per.items():
        write_lines(data / f"images_{level}_{split}.txt", lines)
    write_lines(data / "variants.txt", [v for _, _, v in FGVC])
    write_lines(data / "families.txt", sorted({f for _, f, _ in FGVC}))
    write_lines(data / "manufacturers.txt", sorted({m for m, _, _ in FGVC}))
    write_lines(data / "images_box.txt", boxes)
    return root
