"""Writes a full-size iNat-2021 train.json: 2,686,843 images over the real 10,000 categories.

The images are not written (only the JSON), which is all that planning and
``--dry-run`` read.  Field order, types and value shapes follow the official
file; values are synthetic and deterministic.

    python benchmarks/make_inat2021_train_json.py --categories ../shared/data/inat2021_categories.json --out /tmp/inat-full
"""

from __future__ import annotations

import argparse
import json
import random
import uuid
from pathlib import Path

TRAIN_IMAGES = 2_686_843


def per_class_counts(n_classes: int, total: int, rng: random.Random) -> list[int]:
    # iNat-2021 train has between 152 and 300 images per species.
    counts = [rng.randint(152, 300) for _ in range(n_classes)]
    while (diff := total - sum(counts)) != 0:
        i = rng.randrange(n_classes)
        counts[i] = min(300, max(152, counts[i] + (1 if diff > 0 else -1)))
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--categories", required=True)
    parser.add_argument("--out", required=True, help="folder to write train.json into")
    parser.add_argument("--images", type=int, default=TRAIN_IMAGES)
    args = parser.parse_args()
    categories = json.loads(Path(args.categories).read_text(encoding="utf-8"))
    rng = random.Random(2021)
    counts = per_class_counts(len(categories), args.images, rng)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "train.json", "w", encoding="utf-8") as f:
        f.write('{"info": {"year": 2021, "version": "synthetic full-size", "description": "vlconvert benchmark"}, "images": [')
        image_id, first = 0, True
        for cat, count in zip(categories, counts):
            for _ in range(count):
                entry = {
                    "id": image_id, "width": 500, "height": rng.choice((375, 333, 281, 500)),
                    "file_name": f"train/{cat['image_dir_name']}/{uuid.UUID(int=rng.getrandbits(128), version=4)}.jpg",
                    "license": rng.randint(1, 6), "rights_holder": f"observer {rng.randint(1, 200_000)}",
                    "date": f"20{rng.randint(10, 20)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d} 12:00:00+00:00",
                    "latitude": round(rng.uniform(-50, 70), 6), "longitude": round(rng.uniform(-170, 175), 6),
                    "location_uncertainty": rng.choice((None, 5, 20, 100, 3000)),
                }
                f.write(("" if first else ", ") + json.dumps(entry, ensure_ascii=False))
                first = False
                image_id += 1
        f.write('], "categories": ' + json.dumps(categories, ensure_ascii=False) + ', "annotations": [')
        f.write(", ".join(json.dumps({"id": i, "image_id": i, "category_id": c["id"]})
                          for i, c in enumerate(c for c, n in zip(categories, counts) for _ in range(n))))
        f.write('], "licenses": []}')
    print(f"wrote {image_id} images over {len(categories)} categories to {out / 'train.json'}")


if __name__ == "__main__":
    main()
