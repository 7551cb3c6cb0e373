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

from vlconvert.records import ClassInfo, VLConvertError

from ._release import TRAIN_TEST, ImageRow, Release, ReleaseAdapter, assemble, box_crop, option_bool, train_or_test, zero_one


class NABirdsAdapter(ReleaseAdapter):
    name = "nabirds"
    description = "NABirds: 555 North American bird categories with a class hierarchy, as released"

    def __init__(self, root: str, crop: bool | str = False):
        super().__init__(root)
        self.crop = option_bool(crop, "crop")
        self.files.require("images.txt", "the nabirds folder of the release (images.txt, classes.txt, hierarchy.txt, …)")

    def load(self) -> Release:
        f = self.files
        names = f.table("classes.txt", "<class_id> <class name>", lambda v: v[0], 2, rest=True)
        parents = f.table("hierarchy.txt", "<child_class_id> <parent_class_id>", lambda v: v[0], 2)
        paths = f.table("images.txt", "<image_id> <path>", lambda v: v[0], 2, rest=True)
        labels = f.table("image_class_labels.txt", "<image_id> <class_id>", lambda v: v[0], 2)
        is_train = f.table("train_test_split.txt", "<image_id> <is_training_image 0|1>", zero_one, 2)
        sizes = f.table("sizes.txt", "<image_id> <width> <height>", lambda v: [int(x) for x in v], 3) if f.exists("sizes.txt") else {}
        boxes = f.table("bounding_boxes.txt", "<image_id> <x> <y> <width> <height>", lambda v: [float(x) for x in v], 5) \
            if f.exists("bounding_boxes.txt") else {}

        used = sorted({c for c in labels.values() if c in names}, key=_numeric)
        classes = [self._class(label, class_id, names, parents) for label, class_id in enumerate(used)]
        rows = []
        for image_id, path in paths.items():
            box = boxes.get(image_id)
            width, height = sizes.get(image_id, (None, None))
            metadata = {"image_id": image_id, "width": width, "height": height, "bbox": box}
            crop = box_crop(box) if self.crop else None
            split = train_or_test(is_train, image_id)
            rows.append(ImageRow(image_id, f"images/{path}", labels.get(image_id), split, metadata, crop))
        label_of = {class_id: label for label, class_id in enumerate(used)}
        records, rejected = assemble(f, rows, label_of, TRAIN_TEST, "images.txt")
        return Release(classes, records, rejected)

    def _class(self, label: int, class_id: str, names: dict, parents: dict) -> ClassInfo:
        lineage, node = [], class_id
        while node in parents:
            node = parents[node]
            if node in lineage or len(lineage) > 64:
                raise VLConvertError(f"{self.files.root}/hierarchy.txt: class {class_id} has a cycle among its ancestors")
            lineage.append(node)
        # The topmost node is the whole tree ("Birds"); it tells nothing about a class.
        ancestors = [names.get(n, n) for n in reversed(lineage[:-1])]
        taxonomy = tuple((f"level_{depth}", name) for depth, name in enumerate(ancestors + [names[class_id]], start=1))
        return ClassInfo(label, names[class_id], "", taxonomy, {"class_id": int(class_id)})


def _numeric(class_id: str):
    return (0, int(class_id), "") if class_id.isdigit() else (1, 0, class_id)
