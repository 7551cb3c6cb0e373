"""A survey that lists its images in ROOT/survey.csv: image,genus,species,depth_m."""

import csv
from pathlib import Path

from vlconvert import ClassInfo, Record, Rejected, VLConvertError


class PlanktonAdapter:
    name = "plankton"
    description = "Plankton survey: ROOT/survey.csv (image,genus,species,depth_m) and the images beside it"

    def __init__(self, root, min_depth="0"):
        self.root = Path(root)
        try:
            self.min_depth = float(min_depth)
            with open(self.root / "survey.csv", newline="", encoding="utf-8") as f:
                self.rows = list(csv.DictReader(f))
            for row in self.rows:
                row["depth_m"] = float(row["depth_m"])
        except FileNotFoundError:
            raise VLConvertError(f"{root}: survey.csv not found; plankton expects ROOT/survey.csv") from None
        except (KeyError, ValueError) as exc:  # a user's mistake gets one line, never a traceback
            raise VLConvertError(f"{root}/survey.csv: expected columns image,genus,species,depth_m with numeric depths ({exc})") from None
        taxa = sorted({(r["genus"], r["species"]) for r in self.rows})
        self.label_of = {taxon: label for label, taxon in enumerate(taxa)}

    def classes(self):
        return [ClassInfo(label, f"{genus} {species}", "", (("genus", genus), ("species", species)))
                for (genus, species), label in self.label_of.items()]

    def splits(self):
        return ["train"]

    def records(self, split):
        for n, row in enumerate(self.rows):
            if row["depth_m"] >= self.min_depth:
                yield Record(key=f"plankton-{n}", image=str(self.root / row["image"]), split=split,
                             label=self.label_of[(row["genus"], row["species"])], metadata={"depth_m": row["depth_m"]})

    def rejected(self, split):
        return [Rejected(split, f"plankton-{n}", f"survey.csv row {n + 2}", f"shallower than min_depth={self.min_depth}")
                for n, row in enumerate(self.rows) if row["depth_m"] < self.min_depth]
