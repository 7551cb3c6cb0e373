"""NABirds, read from the release as extracted (the ``nabirds/`` folder).

ROOT holds images.txt, classes.txt, hierarchy.txt (child → parent),
image_class_labels.txt, train_test_split.txt, sizes.txt, bounding_boxes.txt
and images/<class folder>/<uuid>.jpg.  The classes are the leaves images are
labelled with (visual categories such as "Red-winged Blackbird (Female/juvenile)");
the path of ancestors from the hierarchy's top becomes the taxonomy, as
``level_1`` (broadest) … ``level_N``.

Option: ``crop=true`` crops each image to its bounding box.
"""

from __future__ import annotations

import re

from vlconvert.errors import VLConvertError
from vlconvert.records import ClassInfo

from ._base import Release, ReleaseAdapter
from ._image_tables import TRAIN_TEST, image_rows, read_image_tables
from ._options import option_bool
from ._rows import assemble, id_order

ROOT_ID = "0"


class NABirdsAdapter(ReleaseAdapter):
    name = "nabirds"
    description = "NABirds: 555 North American bird categories with a class hierarchy, as released"
    homepage = "https://dl.allaboutbirds.org/nabirds"
    license = "other"
    license_url = "https://dl.allaboutbirds.org/nabirds"
    license_note = ("The Cornell Lab of Ornithology provides NABirds under the terms of use on its download page; the "
                    "photographs stay their contributors'. Read those terms before using or publishing these shards.")
    citation = """@inproceedings{van2015building,
  title = {Building a Bird Recognition App and Large Scale Dataset with Citizen Scientists:
           The Fine Print in Fine-Grained Dataset Collection},
  author = {Van Horn, Grant and Branson, Steve and Farrell, Ryan and Haber, Scott and Barry, Jessie
            and Ipeirotis, Panos and Perona, Pietro and Belongie, Serge},
  booktitle = {Proceedings of the IEEE Conference on Computer Vision and Pattern Recognition (CVPR)},
  year = {2015}
}"""

    def __init__(self, root: str, crop: bool | str = False, allow_outside_root: bool | str = False):
        super().__init__(root, allow_outside_root)
        self.crop = option_bool(crop, "crop")
        self.files.require("images.txt", "the nabirds folder of the release (images.txt, classes.txt, hierarchy.txt, …)")

    def load(self) -> Release:
        f = self.files
        names = f.table("classes.txt", "<class_id> <class name>", lambda v: tidy_name(v[0]), 2, rest=True)
        parents = f.table("hierarchy.txt", "<child_class_id> <parent_class_id>", lambda v: v[0], 2)
        sizes = f.table("sizes.txt", "<image_id> <width> <height>", lambda v: [int(x) for x in v], 3) if f.exists("sizes.txt") else {}
        tables = read_image_tables(f)
        used = sorted({c for c in tables.labels.values() if c in names}, key=id_order)
        classes = [self._class(label, class_id, names, parents) for label, class_id in enumerate(used)]
        rows = image_rows(tables, "images", self.crop,
                          lambda image_id: dict(zip(("width", "height"), sizes.get(image_id, (None, None)))))
        label_of = {class_id: label for label, class_id in enumerate(used)}
        records, rejected = assemble(f, rows, label_of, TRAIN_TEST, tables.images_file)
        return Release(classes, records, rejected)

    def _class(self, label: int, class_id: str, names: dict, parents: dict) -> ClassInfo:
        lineage, node = [], class_id
        while node in parents:
            node = parents[node]
            if node in lineage or len(lineage) > 64:
                raise VLConvertError(f"{self.files.root}/hierarchy.txt: class {class_id} has a cycle among its ancestors")
            lineage.append(node)
        # The root (id 0, "Birds") is the whole tree; it tells nothing about a class.
        ancestors = [names.get(n, n) for n in reversed(lineage) if n != ROOT_ID]
        taxonomy = tuple((f"level_{depth}", name) for depth, name in enumerate(ancestors + [names[class_id]], start=1))
        return ClassInfo(label, names[class_id], "", taxonomy, {"class_id": class_id})


def tidy_name(name: str) -> str:
    """The release writes some qualifiers as "(Adult )"; captions want "(Adult)"."""
    return re.sub(r"\(\s+", "(", re.sub(r"\s+\)", ")", " ".join(name.split())))
