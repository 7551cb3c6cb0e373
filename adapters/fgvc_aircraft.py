"""FGVC-Aircraft (fgvc-aircraft-2013b), read from the release as extracted.

ROOT is ``fgvc-aircraft-2013b`` (or its ``data`` folder): variants.txt,
families.txt, manufacturers.txt, images_{variant,family,manufacturer}_{train,val,test}.txt
("<7-digit id> <name>", names may hold spaces and '/', as in "F/A-18"),
images_box.txt and images/<id>.jpg.  Each class carries the three-rank
hierarchy manufacturer → family → variant.

Options: ``level=variant|family|manufacturer`` (default variant) picks what a
class is; ``crop_banner=true`` cuts the 20-pixel copyright banner off the
bottom of every image.
"""

from __future__ import annotations

from vlconvert.records import ClassInfo, VLConvertError

from ._release import ImageRow, Release, ReleaseAdapter, assemble, option_bool

SPLITS = ("train", "val", "test")
LEVELS = ("manufacturer", "family", "variant")
LEVEL_FILES = {"manufacturer": "manufacturers.txt", "family": "families.txt", "variant": "variants.txt"}
BANNER_PIXELS = 20


class FGVCAircraftAdapter(ReleaseAdapter):
    name = "fgvc_aircraft"
    description = "FGVC-Aircraft 2013b: 100 aircraft variants in 70 families by 30 manufacturers, as released"

    def __init__(self, root: str, level: str = "variant", crop_banner: bool | str = False):
        super().__init__(root)
        if level not in LEVELS:
            raise VLConvertError(f"option level={level!r} must be one of {', '.join(LEVELS)}")
        self.level = level
        self.crop_banner = option_bool(crop_banner, "crop_banner")
        self.base = "data/" if self.files.exists("data/variants.txt") else ""
        self.files.require(self.base + "variants.txt", "fgvc-aircraft-2013b/data with variants.txt, images_variant_train.txt, …")

    def load(self) -> Release:
        f, base = self.files, self.base
        names = [line.strip() for line in f.read_text(base + LEVEL_FILES[self.level], f"one {self.level} name per line").splitlines()
                 if line.strip()]
        label_of = {name: label for label, name in enumerate(names)}
        boxes = f.table(base + "images_box.txt", "<image_id> <xmin> <ymin> <xmax> <ymax>", lambda v: [float(x) for x in v], 5) \
            if f.exists(base + "images_box.txt") else {}
        rows, lineage = [], {}
        for split in SPLITS:
            per_level = {
                level: f.table(base + f"images_{level}_{split}.txt", f"<image_id> <{level} name>", lambda v: v[0], 2, rest=True)
                for level in LEVELS
            }
            for image_id, variant in per_level["variant"].items():
                ranks = (per_level["manufacturer"].get(image_id), per_level["family"].get(image_id), variant)
                chosen = ranks[LEVELS.index(self.level)]
                lineage.setdefault(chosen, ranks[: LEVELS.index(self.level) + 1])
                metadata = {"image_id": image_id, "bbox": boxes.get(image_id), **dict(zip(LEVELS, ranks))}
                crop = (0, 0, None, -BANNER_PIXELS) if self.crop_banner else None
                rows.append(ImageRow(image_id, f"{base}images/{image_id}.jpg", chosen, split, metadata, crop))
        classes = [
            ClassInfo(label, name, "", tuple((level, value) for level, value in zip(LEVELS, lineage.get(name, ())) if value))
            for label, name in enumerate(names)
        ]
        records, rejected = assemble(f, rows, label_of, SPLITS, base + f"images_{self.level}_<split>.txt")
        return Release(classes, records, rejected)
