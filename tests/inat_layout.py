"""Writes small datasets in the exact iNat-2021 release layout, with real categories."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "inat2021_mini"
# All 10,000 iNat-2021 categories, verbatim (the release's "categories" list), gzipped: 364 KB instead of 3.5 MB.
ALL_CATEGORIES = REPO / "tests" / "data" / "inat2021_categories.json.gz"


def example_categories() -> list[dict]:
    """The 12 real iNat-2021 categories of the embedded example, verbatim."""
    return json.loads((EXAMPLE / "val.json").read_text(encoding="utf-8"))["categories"]


def all_categories() -> list[dict]:
    """The 10,000 real iNat-2021 categories, in the release's order (id 0 first)."""
    with gzip.open(ALL_CATEGORIES, "rt", encoding="utf-8") as f:
        return json.load(f)


def category(name: str) -> dict:
    return next(c for c in example_categories() if c["name"] == name)


def write_image(path: Path, colour: tuple[int, int, int], size=(64, 48), fmt="JPEG") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, format=fmt)


def make_inat_root(
    root: Path,
    categories: list[dict] | None = None,
    per_class: dict[str, int] | None = None,
    seed: int = 0,
) -> Path:
    """Writes ROOT/<split>.json and its images; ``per_class`` maps split → images per class.

    The categories are written in shuffled order, as nothing in the format
    promises they are sorted; image ids run on across splits.
    """
    categories = categories or example_categories()
    per_class = per_class or {"train": 3, "val": 1}
    rng = random.Random(seed)
    image_id = 1000
    for split, count in per_class.items():
        folder = "train" if split == "train_mini" else split
        images, annotations = [], []
        for cat in categories:
            for n in range(count):
                file_name = f"{folder}/{cat['image_dir_name']}/{split}-{image_id}.jpg"
                write_image(root / file_name, (rng.randrange(256), rng.randrange(256), rng.randrange(256)))
                images.append({
                    "id": image_id, "width": 64, "height": 48, "file_name": file_name, "license": 1,
                    "rights_holder": "Kōji Tanaka", "date": f"2019-0{1 + n % 9}-15 10:00:00+00:00",
                    "latitude": 35.5 + n, "longitude": 139.25, "location_uncertainty": None,
                })
                annotations.append({"id": image_id, "image_id": image_id, "category_id": cat["id"]})
                image_id += 1
        shuffled = list(categories)
        rng.shuffle(shuffled)
        write_json(root / f"{split}.json", {
            "info": {"year": 2021}, "images": images, "categories": shuffled,
            "annotations": annotations, "licenses": [{"id": 1, "name": "CC BY-NC", "url": ""}],
        })
    return root


def write_json(path: Path, document: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")


def read_json(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))
