"""iNaturalist 2021, read from the official release layout.

ROOT holds ``train.json``, ``train_mini.json`` and/or ``val.json`` (COCO-style:
images, annotations, categories) and the image folders their ``file_name``
fields name (``train/00000_Animalia_…/<uuid>.jpg``).  ROOT may be a local
folder or any fsspec URL.  Option ``spill_dir``: where the parsed JSON is kept
(memory-mapped) during the build; default the system's temporary folder.
"""

from ._inat import INatAdapter


class INat2021Adapter(INatAdapter):
    name = "inat2021"
    description = "iNaturalist 2021: train.json / train_mini.json / val.json and their image folders (10,000 species)"
    split_files = {"train": "train.json", "train_mini": "train_mini.json", "val": "val.json"}
