"""A table that lists images: CSV, TSV, Parquet or JSONL, read with pyarrow.

ROOT is the table file, or a folder holding Hugging Face's ``metadata.csv`` /
``metadata.jsonl`` / ``metadata.parquet``.  Each row names an image (a path
relative to the table's folder, an absolute path, or a URL), its class, and any
metadata, which reaches templates as ``meta``.

Columns are found by their usual names, or named with options:
``image_column`` (file_name, image, image_path, filepath, path, url),
``label_column`` (label, class, category, species, class_name),
``split_column`` (split; without one every row is in ``train``) and
``key_column`` (key, id, image_id; without one, the row number).
``taxonomy`` / ``taxonomy_key`` add ranks and names per class, as for imagefolder.
"""

from __future__ import annotations

import posixpath

from vlconvert.records import VLConvertError
from vlconvert.storage import filesystem

from ._release import ImageRow, Release, ReleaseAdapter, assemble
from ._tables import classes_from_keys, pick_column, read_table

HF_METADATA = ("metadata.csv", "metadata.jsonl", "metadata.parquet")


class TableAdapter(ReleaseAdapter):
    name = "table"
    description = "a CSV / TSV / Parquet / JSONL table of image paths or URLs, labels and metadata (incl. Hugging Face metadata.csv)"

    def __init__(self, root: str, image_column: str | None = None, label_column: str | None = None,
                 split_column: str | None = None, key_column: str | None = None, taxonomy: str | None = None,
                 taxonomy_key: str | None = None):
        fs, path = filesystem(root, "--root")
        folder, self.table_file = (root, None) if fs.isdir(path) else (posixpath.dirname(root.rstrip("/")) or ".", posixpath.basename(root))
        super().__init__(folder)
        if self.table_file is None:
            self.table_file = next((n for n in HF_METADATA if self.files.exists(n)), None)
            if self.table_file is None:
                raise VLConvertError(f"{root}: a folder without {', '.join(HF_METADATA)}; give the table file itself as --root")
        self.columns = {"image": image_column, "label": label_column, "split": split_column, "key": key_column}
        self.taxonomy, self.taxonomy_key = taxonomy, taxonomy_key

    def load(self) -> Release:
        shown = posixpath.join(self.files.root, self.table_file)
        table = read_table(self.files.fs, self.files.join(self.table_file), shown)
        image = pick_column(table, self.columns["image"], ("file_name", "image", "image_path", "filepath", "path", "url"), "image", shown)
        label = pick_column(table, self.columns["label"], ("label", "class", "category", "species", "class_name"), "label", shown)
        split = pick_column(table, self.columns["split"], ("split",), "split", shown, required=False)
        key = pick_column(table, self.columns["key"], ("key", "id", "image_id"), "key", shown, required=False)
        values = table.column(label).to_pylist()
        keys = sorted({v for v in values if v is not None}, key=lambda v: (isinstance(v, str), v))
        taxonomy = read_table(self.files.fs, self.taxonomy, self.taxonomy) if self.taxonomy else None
        classes = classes_from_keys([str(k) for k in keys], taxonomy, self.taxonomy_key, self.taxonomy or "")
        label_of = {c.extra["class_key"]: c.label for c in classes}
        used = {image, label, split, key}
        rows = []
        for number, row in enumerate(table.to_pylist()):
            reference, class_value = row[image], row[label]
            row_split = str(row[split]) if split and row[split] is not None else (None if split else "train")
            rows.append(ImageRow(
                image_id=str(row[key]) if key and row[key] is not None else f"row{number}",
                path=str(reference) if reference else "",
                class_id=None if class_value is None else str(class_value),
                split=row_split,
                metadata={k: v for k, v in row.items() if k not in used},
            ))
        splits = sorted({r.split for r in rows if r.split}) or ["train"]
        records, rejected = assemble(self.files, rows, label_of, splits, shown)
        return Release(classes, records, rejected)

