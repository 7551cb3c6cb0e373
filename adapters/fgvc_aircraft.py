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

from vlconvert.errors import VLConvertError
from vlconvert.records import ClassInfo

from ._base import Release, ReleaseAdapter
from ._options import option_bool
from ._rows import ImageRow, assemble, id_order

SPLITS = ("train", "val", "test")
LEVELS = ("manufacturer", "family", "variant")
LEVEL_FILES = {"manufacturer": "manufacturers.txt", "family": "families.txt", "variant": "variants.txt"}
BANNER_PIXELS = 20


class FGVCAircraftAdapter(ReleaseAdapter):
    name = "fgvc_aircraft"
    description = "FGVC-Aircraft 2013b: 100 aircraft variants in 70 families by 30 manufacturers, as released"
    homepage = "https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/"
    license = "other"
    license_url = "https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/"
    license_note = ("The photographers (airplane spotters) made their images available for non-commercial research "
                    "purposes only; they keep the copyright and must be asked for any other use.")
    citation = """@techreport{maji2013fine,
  title = {Fine-Grained Visual Classification of Aircraft},
  author = {Maji, Subhransu and Kannala, Juho and Rahtu, Esa and Blaschko, Matthew and Vedaldi, Andrea},
  year = {2013},
  archivePrefix = {arXiv},
  eprint = {1306.5151},
  primaryClass = {cs.CV}
}"""

    def __init__(self, root: str, level: str = "variant", crop_banner: bool | str = False,
                 allow_outside_root: bool | str = False):
        super().__init__(root, allow_outside_root)
        if level not in LEVELS:
            raise VLConvertError(f"option level={level!r} must be one of {', '.join(LEVELS)}")
        self.level = level
        self.crop_banner = option_bool(crop_banner, "crop_banner")
        self.base = "data/" if self.files.exists("data/variants.txt") else ""
        self.files.require(self.base + "variants.txt", "fgvc-aircraft-2013b/data with variants.txt, images_variant_train.txt, …")

    def load(self) -> Release:
        f, base = self.files, self.base
        names_file = base + LEVEL_FILES[self.level]
        names = [line.strip() for line in f.read_text(names_file, f"one {self.level} name per line").splitlines() if line.strip()]
        if len(set(names)) < len(names):
            raise VLConvertError(f"{f.root}/{names_file}: a {self.level} is listed twice")
        label_of = {name: label for label, name in enumerate(names)}
        # images_box.txt holds 1-based xmin ymin xmax ymax; stored as 0-based x, y, width, height like CUB's and NABirds'.
        boxes = f.table(base + "images_box.txt", "<image_id> <xmin> <ymin> <xmax> <ymax>",
                        lambda v: [float(v[0]) - 1, float(v[1]) - 1, float(v[2]) - float(v[0]) + 1, float(v[3]) - float(v[1]) + 1], 5) \
            if f.exists(base + "images_box.txt") else {}
        rows, lineage = [], {}
        for split in SPLITS:
            per_level = {
                level: f.table(base + f"images_{level}_{split}.txt", f"<image_id> <{level} name>", lambda v: v[0], 2, rest=True)
                for level in LEVELS
            }
            listed = sorted(set().union(*per_level.values()), key=id_order)
            for image_id in listed:
                ranks = tuple(per_level[level].get(image_id) for level in LEVELS)
                chosen = ranks[LEVELS.index(self.level)]
                if chosen is not None:
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
