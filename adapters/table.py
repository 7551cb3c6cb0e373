"""A table that lists images: CSV, TSV, Parquet or JSONL, read with pyarrow.

ROOT is the table file, or a folder holding Hugging Face's ``metadata.csv`` /
``metadata.jsonl`` / ``metadata.parquet``.  Each row names an image (a path
relative to the table's folder, or a URL), its class, and any metadata, which
reaches templates as ``meta``.  A path outside the table's folder (absolute,
``..``, ``file://``) is refused unless ``allow_outside_root=true``.

Columns are found by their usual names, or named with options:
``image_column`` (file_name, image, image_path, filepath, path, url),
``label_column`` (label, class, category, species, class_name),
``split_column`` (split; without one every row is in ``train``) and
``key_column`` (key, id, image_id; without one, the row number).
``taxonomy`` / ``taxonomy_key`` add ranks and names per class, as for imagefolder.
"""

from __future__ import annotations

import posixpath

from vlconvert.errors import VLConvertError
from vlconvert.storage import filesystem

from ._base import Release, ReleaseAdapter
from ._release import leaves_root
from ._rows import ImageRow, assemble, id_order
from ._tables import classes_from_keys, pick_column, read_table, read_taxonomy

HF_METADATA = ("metadata.csv", "metadata.jsonl", "metadata.parquet")
COLUMN_NAMES = {  # looked for, in this order, when no option names the column
    "image": ("file_name", "image", "image_path", "filepath", "path", "url"),
    "label": ("label", "class", "category", "species", "class_name"),
    "split": ("split",),
    "key": ("key", "id", "image_id"),
}


class TableAdapter(ReleaseAdapter):
    name = "table"
    description = "a CSV / TSV / Parquet / JSONL table of image paths or URLs, labels and metadata (incl. Hugging Face metadata.csv)"

    def __init__(self, root: str, image_column: str | None = None, label_column: str | None = None,
                 split_column: str | None = None, key_column: str | None = None, taxonomy: str | None = None,
                 taxonomy_key: str | None = None, allow_outside_root: bool | str = False):
        fs, path = filesystem(root, "--root")
        folder, self.table_file = (root, None) if fs.isdir(path) else (posixpath.dirname(root.rstrip("/")) or ".", posixpath.basename(root))
        super().__init__(folder, allow_outside_root)
        self.found_table = self.table_file is None
        if self.table_file is None:
            self.table_file = next((n for n in HF_METADATA if self.files.exists(n)), None)
            if self.table_file is None:
                raise VLConvertError(f"{root}: a folder without {', '.join(HF_METADATA)}; give the table file itself as --root")
        self.columns = {"image": image_column, "label": label_column, "split": split_column, "key": key_column}
        self.taxonomy, self.taxonomy_key = taxonomy, taxonomy_key

    def load(self) -> Release:
        shown = posixpath.join(self.files.root, self.table_file)
        text = tuple(c for group in COLUMN_NAMES.values() for c in group) + tuple(c for c in self.columns.values() if c)
        # A table named on the command line is the user's choice; one found in the folder is the dataset's.
        confine = self.found_table
        table = read_table(self.files.fs, self.files.join(self.table_file), shown, text,
                           open_file=lambda path: self.files.open_path(path, confine=confine))
        if table.num_rows == 0:
            raise VLConvertError(f"{shown}: lists no rows")
        image = pick_column(table, self.columns["image"], COLUMN_NAMES["image"], "image_column", shown)
        label = pick_column(table, self.columns["label"], COLUMN_NAMES["label"], "label_column", shown)
        split = pick_column(table, self.columns["split"], COLUMN_NAMES["split"], "split_column", shown, required=False)
        key = pick_column(table, self.columns["key"], COLUMN_NAMES["key"], "key_column", shown, required=False)
        rows = []
        used = {image, label, split, key}
        for number, row in enumerate(table.to_pylist()):
            class_value, problem = _label_text(row[label], label)
            rows.append(ImageRow(
                image_id=str(row[key]) if key and row[key] not in (None, "") else f"row{number}",
                path=str(row[image]) if row[image] else "",
                class_id=class_value,
                split=(str(row[split]) if row[split] not in (None, "") else None) if split else "train",
                metadata={k: v for k, v in row.items() if k not in used},
                problem=problem or self._absolute(str(row[image]) if row[image] else ""),
            ))
        keys = sorted({r.class_id for r in rows if r.class_id is not None}, key=id_order)
        classes = classes_from_keys(keys, read_taxonomy(self.taxonomy, self.taxonomy_key), self.taxonomy_key, self.taxonomy or "")
        label_of = {c.extra["class_key"]: c.label for c in classes}
        splits = sorted({r.split for r in rows if r.split}) or ["train"]
        records, rejected = assemble(self.files, rows, label_of, splits, shown)
        return Release(classes, records, rejected)

    def _absolute(self, path: str) -> str | None:
        """Why an absolute path is refused, saying how paths are read: a table of absolute paths is a common first try."""
        if not path.startswith("/") or self.files.allow_outside_root or not leaves_root(self.files.join(""), path):
            return None
        return (f"absolute path {path!r} points outside the dataset root: image paths in a table are relative to the "
                f"table's folder {self.files.root!r} (--option allow_outside_root=true reads them where they are)")


def _label_text(value, column: str) -> tuple[str | None, str | None]:
    """A label cell as class text, or why the row has none."""
    if value is None or value == "":
        return None, None
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # Parquet or JSON may store integer labels as floats
    if not isinstance(value, (str, int, float, bool)):
        return None, f"the {column} cell holds {type(value).__name__} {value!r}, not one label"
    return str(value), None
