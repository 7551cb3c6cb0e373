"""CUB-200-2011, read from the release tarball as extracted.

ROOT is the folder the tarball was extracted into: it holds ``CUB_200_2011/``
(images.txt, classes.txt, image_class_labels.txt, train_test_split.txt,
bounding_boxes.txt, images/NNN.Class_Name/*.jpg, attributes/…) and, beside
it, ``attributes.txt`` with the attribute names.  ROOT may also be the
``CUB_200_2011`` folder itself.

Options: ``crop=true`` crops each image to its bounding box;
``attribute_certainty=N`` (default 3, "probably") is the lowest certainty at
which a present attribute reaches ``meta.attributes``.
"""

from __future__ import annotations

import posixpath
import re

from vlconvert.errors import VLConvertError
from vlconvert.records import ClassInfo

from ._base import Release, ReleaseAdapter
from ._image_tables import TRAIN_TEST, image_rows, read_image_tables
from ._options import option_bool, option_float
from ._rows import assemble, id_order


class CUB200Adapter(ReleaseAdapter):
    name = "cub200"
    description = "CUB-200-2011 birds: CUB_200_2011/ as released (200 species, bounding boxes, optional attributes)"
    homepage = "https://www.vision.caltech.edu/datasets/cub_200_2011/"
    license = "unknown"
    license_note = ("The release states no license; its images were collected from Flickr and their copyright stays "
                    "with the photographers.")
    citation = """@techreport{wah2011cub,
  title = {The Caltech-UCSD Birds-200-2011 Dataset},
  author = {Wah, Catherine and Branson, Steve and Welinder, Peter and Perona, Pietro and Belongie, Serge},
  institution = {California Institute of Technology},
  number = {CNS-TR-2011-001},
  year = {2011}
}"""

    def __init__(self, root: str, crop: bool | str = False, attribute_certainty: int | str = 3,
                 allow_outside_root: bool | str = False):
        super().__init__(root, allow_outside_root)
        self.crop = option_bool(crop, "crop")
        self.attribute_certainty = int(option_float(attribute_certainty, "attribute_certainty", 1, 4))
        self.base = "CUB_200_2011" if self.files.exists("CUB_200_2011/images.txt") else ""
        self.files.require(self._in_base("images.txt"), "the CUB_200_2011 folder of the release (images.txt, classes.txt, …)")

    def _in_base(self, name: str) -> str:
        return posixpath.join(self.base, name) if self.base else name

    def load(self) -> Release:
        raw_names = self.files.table(self._in_base("classes.txt"), "<class_id> <NNN.Class_Name>", lambda v: v[0], 2, rest=True)
        ordered = sorted(raw_names.items(), key=lambda kv: id_order(kv[0]))
        classes = [ClassInfo(label, clean_class_name(raw), "", (), {"raw_name": raw, "class_id": class_id})
                   for label, (class_id, raw) in enumerate(ordered)]
        tables = read_image_tables(self.files, self.base)
        attributes = self._attributes()
        rows = image_rows(tables, self._in_base("images"), self.crop, lambda image_id: {"attributes": attributes.get(image_id, [])})
        label_of = {class_id: label for label, (class_id, _) in enumerate(ordered)}
        records, rejected = assemble(self.files, rows, label_of, TRAIN_TEST, tables.images_file)
        return Release(classes, records, rejected)

    def _attributes(self) -> dict[str, list[str]]:
        """Image id → phrases of its present attributes ("cone-shaped bill"), when the release has them."""
        labels_file = self._in_base("attributes/image_attribute_labels.txt")
        if not self.files.exists(labels_file):
            return {}
        # The tarball puts attributes.txt beside CUB_200_2011/, the README inside attributes/.
        places = ["attributes.txt", self._in_base("attributes/attributes.txt")] + ([] if self.base else ["../attributes.txt"])
        names_file = next((n for n in places if self.files.exists(n)), None)
        if names_file == "../attributes.txt":
            self.files.allow_beside_root(names_file)
        if names_file is None:
            raise VLConvertError(f"{self.files.root}: {labels_file} is there but attributes.txt, the attribute names, is not "
                                 "(expected beside CUB_200_2011/ or in CUB_200_2011/attributes/)")
        names = self.files.table(names_file, "<attribute_id> <attribute_name>", lambda v: attribute_phrase(v[0]), 2, rest=True)
        present: dict[str, list[str]] = {}
        expected = "<image_id> <attribute_id> <is_present> <certainty_id> <time>"
        for number, parts in self.files.rows(labels_file, 1, expected, rest=True):
            # The released file has lines with an extra field; only the first four matter.
            fields = parts[0].split()
            try:
                image_id, attribute_id, is_present, certainty = fields[0], fields[1], int(fields[2]), int(fields[3])
            except (IndexError, ValueError):
                raise VLConvertError(f"{self.files.root}/{labels_file}, line {number}: expected '{expected}', found {parts[0]!r}") from None
            if is_present and certainty >= self.attribute_certainty and attribute_id in names:
                present.setdefault(image_id, []).append(names[attribute_id])
        return present


# The two names the hyphen rule below cannot recover.
_IRREGULAR_NAMES = {"Chuck_will_Widow": "Chuck-will's-widow", "Whip_poor_Will": "Whip-poor-will"}


def clean_class_name(raw: str) -> str:
    """'001.Black_footed_Albatross' → 'Black-footed Albatross'.

    The release writes both spaces and hyphens as '_'; a lower-case word after
    one was hyphenated ("Red_winged_Blackbird" is "Red-winged Blackbird")."""
    bare = re.sub(r"^\d+\.", "", raw.strip())
    if bare in _IRREGULAR_NAMES:
        return _IRREGULAR_NAMES[bare]
    words = bare.split("_")
    text = words[0]
    for word in words[1:]:
        text += ("-" if word[:1].islower() else " ") + word
    return text


def attribute_phrase(name: str) -> str:
    """'has_bill_shape::cone' → 'cone-shaped bill'; 'has_wing_color::black' → 'black wing'."""
    prop, _, value = name.partition("::")
    prop = prop.removeprefix("has_").replace("_", " ")
    value = value.replace("_", " ").strip()
    for suffix in (" color", " pattern"):
        if prop.endswith(suffix):
            return f"{value} {prop.removesuffix(suffix)}" + (" pattern" if suffix == " pattern" else "")
    if prop.endswith(" shape") and " " not in value:
        return f"{value}-shaped {prop.removesuffix(' shape')}"
    if prop.endswith(" length"):
        return f"{prop.removesuffix(' length')} {value}"
    return f"{value} {prop}"
