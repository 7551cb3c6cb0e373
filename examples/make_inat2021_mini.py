"""Generates examples/inat2021_mini: a tiny dataset in the exact iNat-2021 release layout.

Twelve real species (categories copied verbatim from the iNat-2021 release),
spanning the three kingdoms and the naming quirks the adapter must survive:
a common name equal to the scientific name (Serpula columbiana), non-ASCII
names (Jorō Spider, Günther's Wrasse), apostrophes (Anna's Hummingbird), and
"Animalia" as both kingdom and supercategory (Lumbricus terrestris).

Each species is drawn as its own shape in its own colours, with jittered
position, size and background, so even a small model can tell them apart
(the LiT demo trains on them).  The output is committed; rerun this only to
change the example:

    python examples/make_inat2021_mini.py --categories ../shared/data/inat2021_categories.json
"""

from __future__ import annotations

import argparse
import colorsys
import json
import random
import uuid
from pathlib import Path

from PIL import Image, ImageDraw

SPECIES_IDS = [0, 2, 44, 1832, 2842, 3310, 3773, 5389, 5494, 5729, 7039, 8199]
SHAPES = ["circle", "square", "triangle", "diamond", "hstripes", "vstripes", "ring", "cross", "star", "checker", "dots", "hexagon"]
TRAIN_PER_CLASS, VAL_PER_CLASS = 10, 3
SIZE = (256, 192)
LICENSES = [
    {"id": 1, "name": "Attribution-NonCommercial License", "url": "http://creativecommons.org/licenses/by-nc/4.0/"},
    {"id": 2, "name": "Attribution License", "url": "http://creativecommons.org/licenses/by/4.0/"},
]


def draw(shape: str, hue: float, rng: random.Random) -> Image.Image:
    bg = tuple(int(255 * c) for c in colorsys.hsv_to_rgb((hue + 0.5) % 1, 0.25, 0.35 + 0.3 * rng.random()))
    fg = tuple(int(255 * c) for c in colorsys.hsv_to_rgb(hue, 0.85, 0.75 + 0.25 * rng.random()))
    img = Image.new("RGB", SIZE, bg)
    d = ImageDraw.Draw(img)
    w, h = SIZE
    r = int(min(w, h) * (0.28 + 0.12 * rng.random()))
    cx, cy = int(w * (0.35 + 0.3 * rng.random())), int(h * (0.35 + 0.3 * rng.random()))
    box = (cx - r, cy - r, cx + r, cy + r)
    if shape == "circle":
        d.ellipse(box, fill=fg)
    elif shape == "square":
        d.rectangle(box, fill=fg)
    elif shape == "triangle":
        d.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fg)
    elif shape == "diamond":
        d.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=fg)
    elif shape == "hstripes":
        for y in range(0, h, 24):
            d.rectangle((0, y + rng.randint(0, 4), w, y + 11), fill=fg)
    elif shape == "vstripes":
        for x in range(0, w, 24):
            d.rectangle((x + rng.randint(0, 4), 0, x + 11, h), fill=fg)
    elif shape == "ring":
        d.ellipse(box, outline=fg, width=max(6, r // 4))
    elif shape == "cross":
        d.rectangle((cx - r, cy - r // 4, cx + r, cy + r // 4), fill=fg)
        d.rectangle((cx - r // 4, cy - r, cx + r // 4, cy + r), fill=fg)
    elif shape == "star":
        d.regular_polygon((cx, cy, r), 5, rotation=rng.randint(0, 72), fill=fg)
        d.regular_polygon((cx, cy, r // 2), 5, rotation=36, fill=bg)
    elif shape == "checker":
        step = 32
        for i, x in enumerate(range(0, w, step)):
            for j, y in enumerate(range(0, h, step)):
                if (i + j) % 2:
                    d.rectangle((x, y, x + step - 1, y + step - 1), fill=fg)
    elif shape == "dots":
        for _ in range(14):
            x, y, s = rng.randint(0, w), rng.randint(0, h), rng.randint(8, 16)
            d.ellipse((x - s, y - s, x + s, y + s), fill=fg)
    elif shape == "hexagon":
        d.regular_polygon((cx, cy, r), 6, rotation=rng.randint(0, 60), fill=fg)
    return img


def image_entry(rng: random.Random, image_id: int, file_name: str) -> dict:
    lat, lon = round(rng.uniform(-45, 60), 6), round(rng.uniform(-120, 150), 6)
    return {
        "id": image_id,
        "width": SIZE[0],
        "height": SIZE[1],
        "file_name": file_name,
        "license": rng.choice(LICENSES)["id"],
        "rights_holder": rng.choice(["Ana Souza", "Jörg Müller", "Kōji Tanaka", "Priya Nair"]),
        "date": f"20{rng.randint(10, 20)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d} 12:00:00+00:00",
        "latitude": lat,
        "longitude": lon,
        "location_uncertainty": rng.choice([None, 5, 30, 120]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--categories", required=True, help="the iNat-2021 categories list (shared/data/inat2021_categories.json)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "inat2021_mini"))
    args = parser.parse_args()
    by_id = {c["id"]: c for c in json.loads(Path(args.categories).read_text(encoding="utf-8"))}
    categories = [by_id[i] for i in SPECIES_IDS]
    out = Path(args.out)
    rng = random.Random(2021)
    image_id = 0
    for split, per_class in (("train", TRAIN_PER_CLASS), ("val", VAL_PER_CLASS)):
        images, annotations = [], []
        for position, cat in enumerate(categories):
            hue = position / len(categories)
            for _ in range(per_class):
                file_name = f"{split}/{cat['image_dir_name']}/{uuid.UUID(int=rng.getrandbits(128), version=4)}.jpg"
                path = out / file_name
                path.parent.mkdir(parents=True, exist_ok=True)
                draw(SHAPES[position], hue, rng).save(path, quality=85)
                images.append(image_entry(rng, image_id, file_name))
                annotations.append({"id": image_id, "image_id": image_id, "category_id": cat["id"]})
                image_id += 1
        document = {
            "info": {"year": 2021, "version": "mini", "description": "vlconvert example in the iNat-2021 layout"},
            "images": images,
            "categories": categories,
            "annotations": annotations,
            "licenses": LICENSES,
        }
        (out / f"{split}.json").write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
    print(f"wrote {image_id} images of {len(categories)} species to {out}")


if __name__ == "__main__":
    main()
