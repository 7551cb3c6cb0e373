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
    homepage = "https://github.com/visipedia/inat_comp/tree/master/2021"
    license = "other"
    license_url = "https://github.com/visipedia/inat_comp/tree/master/2021#terms-of-use"
    license_note = ("Each image keeps the license its iNaturalist observer chose (KEY.json's metadata.license is an id into "
                    "the licenses list of the release's JSON; metadata.rights_holder names the photographer). The release's "
                    "terms of use allow non-commercial research and educational use only, and do not allow distributing "
                    "the dataset's images: do not publish these shards without checking that your use is allowed.")
    citation = """@inproceedings{van2021benchmarking,
  title = {Benchmarking Representation Learning for Natural World Image Collections},
  author = {Van Horn, Grant and Cole, Elijah and Beery, Sara and Wilber, Kimberly and Belongie, Serge and Mac Aodha, Oisin},
  booktitle = {Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  year = {2021}
}"""
