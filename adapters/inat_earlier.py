"""The iNaturalist competition releases before 2021, where their formats differ.

- ``inat2017``: train2017.json / val2017.json; categories carry only ``name``
  and ``supercategory`` (images under train_val_images/<supercategory>/<species>/).
- ``inat2018``: train2018.json / val2018.json ship obfuscated category names;
  the real names and taxonomy are in the separate ``categories.json`` released
  in June 2018, which must sit in ROOT.
- ``inat2019``: train2019.json / val2019.json; categories carry ``name`` and
  the ranks kingdom … genus.

For 2018 and 2019 the species rank (the epithet) is taken from the name when
the name starts with the genus.
"""

from __future__ import annotations

from vlconvert.errors import VLConvertError
from vlconvert.records import ClassInfo

from ._inat import INatAdapter

UP_TO_GENUS = (("kingdom", "kingdom"), ("phylum", "phylum"), ("class", "class"), ("order", "order"),
               ("family", "family"), ("genus", "genus"))


class INat2017Adapter(INatAdapter):
    name = "inat2017"
    description = "iNaturalist 2017: train2017.json / val2017.json (5,089 species; names and supercategories only)"
    split_files = {"train": "train2017.json", "val": "val2017.json"}
    rank_fields = ()


class _WithEpithet(INatAdapter):
    rank_fields = UP_TO_GENUS

    @classmethod
    def class_info(cls, label: int, row: dict) -> ClassInfo:
        info = super().class_info(label, row)
        genus = info.ranks.get("genus", "")
        if genus and info.name.startswith(genus + " "):
            epithet = info.name[len(genus) + 1:]
            return ClassInfo(info.label, info.name, info.common_name, info.taxonomy + (("species", epithet),), info.extra)
        return info


class INat2018Adapter(_WithEpithet):
    name = "inat2018"
    description = "iNaturalist 2018: train2018.json / val2018.json with the un-obfuscated categories.json (8,142 species)"
    split_files = {"train": "train2018.json", "val": "val2018.json"}
    category_section = ""  # categories.json is a bare list

    def category_file(self) -> str:
        if not self.files.exists("categories.json"):
            raise VLConvertError(
                f"{self.files.root}: categories.json not found; inat2018's train2018.json has obfuscated category names, "
                "so inat2018 expects the un-obfuscated categories.json (released June 2018) in ROOT"
            )
        return self.files.join("categories.json")


class INat2019Adapter(_WithEpithet):
    name = "inat2019"
    description = "iNaturalist 2019: train2019.json / val2019.json (1,010 species, ranks up to genus)"
    split_files = {"train": "train2019.json", "val": "val2019.json"}
