"""The iNaturalist competition releases: COCO-style JSON per split plus image folders.

``INatAdapter`` holds everything the years share (streaming the JSON,
labels by category id, rejections, records built on demand); each year's
adapter names its split files, its rank fields and where its categories are.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import weakref
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterator, Sequence
from functools import cached_property
from itertools import accumulate

import pyarrow as pa
import pyarrow.compute as pc

from vlconvert.errors import VLConvertError
from vlconvert.records import ClassInfo, Record

from ._base import DatasetAdapter, SplitContents
from ._coco import ESCAPES_ROOT, LABEL, LabelledImages, flag_paths_escaping_root, join_labels, require_columns
from ._json_tables import CHUNK_ROWS, read_list, read_lists

# (rank in the taxonomy, field of the category).  The species rank holds the
# specific epithet, as in BioCLIP's taxonomic captions.
LINNAEAN_FIELDS = (
    ("kingdom", "kingdom"),
    ("phylum", "phylum"),
    ("class", "class"),
    ("order", "order"),
    ("family", "family"),
    ("genus", "genus"),
    ("species", "specific_epithet"),
)


class INatAdapter(DatasetAdapter):
    split_files: dict[str, str] = {}  # split → its JSON file under ROOT
    rank_fields: tuple[tuple[str, str], ...] = LINNAEAN_FIELDS
    chunk_rows = CHUNK_ROWS  # JSON list items per spilled Arrow chunk
    category_section = "categories"  # where category_file() keeps them; "" when the file is the list itself

    def __init__(self, root: str, spill_dir: str | None = None, allow_outside_root: bool | str = False):
        super().__init__(root, allow_outside_root)
        self._spill_parent = spill_dir
        self._splits = [s for s, f in self.split_files.items() if self.files.exists(f)]
        if not self._splits:
            raise VLConvertError(
                f"{root}: found none of {', '.join(self.split_files.values())}; "
                f"point --root at the folder where the {self.name} annotation files were extracted"
            )
        self._parsed: dict[str, LabelledImages] = {}
        self._read: dict[str, dict[str, pa.Table]] = {}

    def splits(self) -> list[str]:
        return list(self._splits)

    def classes(self) -> list[ClassInfo]:
        return self._classes

    def read_split(self, split: str) -> SplitContents:
        # Records are built afresh over the cached parse: they hold the adapter, and with it the spill folder.
        parsed = self._parse(split)
        return SplitContents(INatRecords(self, split, parsed.table, parsed.rows), parsed.rejected)

    def image_location(self, file_name: str) -> str:
        return self.files.location(file_name)

    def _json_path(self, split: str) -> str:
        return self.files.join(self.split_files[split])

    def category_file(self) -> str:
        """Every split's file lists the same categories: read them from the smallest."""
        split = min(self._splits, key=lambda s: self.files.fs.size(self._json_path(s)))
        return self._json_path(split)

    @classmethod
    def class_info(cls, label: int, row: dict) -> ClassInfo:
        name = row.pop("name")
        common_name = row.pop("common_name", None) or ""
        taxonomy = tuple((rank, row[f]) for rank, f in cls.rank_fields if row.get(f))
        return ClassInfo(label=label, name=name, common_name=common_name, taxonomy=taxonomy, extra=row)

    @cached_property
    def _spill_dir(self) -> str:
        # The parsed JSON is memory-mapped from here; it goes when the adapter does.
        folder = tempfile.mkdtemp(prefix="vlconvert-inat2021-", dir=self._spill_parent)
        weakref.finalize(self, shutil.rmtree, folder, ignore_errors=True)
        return folder

    @cached_property
    def _categories(self) -> pa.Table:
        path = self.category_file()
        split = next((s for s in self._splits if self._json_path(s) == path), None)
        if split is not None and self.category_section == "categories":
            categories = self._lists(split)["categories"]  # read with the split's images, in the same pass
        else:
            categories = read_list(self.files.fs, path, self.category_section, open_file=self.files.open_path)
        return _checked_categories(categories, path, self.category_section)

    @cached_property
    def _classes(self) -> list[ClassInfo]:
        return [self.class_info(label, row) for label, row in enumerate(self._categories.to_pylist())]

    def _parse(self, split: str) -> LabelledImages:
        if split not in self._parsed:
            lists = self._lists(split)
            categories = self._categories["id"]
            self._parsed[split] = join_labels(lists["images"], lists["annotations"], categories, split, self._json_path(split))
            del self._read[split]  # the annotations are joined in; the images live on in the parse
        return self._parsed[split]

    def _lists(self, split: str) -> dict[str, pa.Table]:
        """The split file's images and annotations (and categories, when they are read from it), in one pass."""
        if split not in self._read:
            path = self._json_path(split)
            spill = os.path.join(self._spill_dir, split)
            os.makedirs(spill, exist_ok=True)
            flag = None if self.files.allow_outside_root else flag_paths_escaping_root
            sections = {"images": {"spill_dir": spill, "chunk_rows": self.chunk_rows, "annotate": flag},
                        "annotations": {"spill_dir": spill, "chunk_rows": self.chunk_rows}}
            if self.category_section == "categories" and self.category_file() == path:
                sections["categories"] = {}
            self._read[split] = read_lists(self.files.fs, path, sections, open_file=self.files.open_path)
        return self._read[split]


class INatRecords(Sequence):
    """The records of one split, built on demand from the Arrow table."""

    def __init__(self, adapter: INatAdapter, split: str, table: pa.Table, rows: pa.Array):
        self._adapter, self._split, self._rows = adapter, split, rows
        # Table.take on a many-chunk table first concatenates every column (a full
        # copy), so rows are looked up chunk by chunk instead.
        self._batches = table.to_batches()
        self._offsets = list(accumulate((b.num_rows for b in self._batches), initial=0))

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.take(range(*index.indices(len(self))))
        return self.take([index])[0]

    def labels(self) -> list[int]:
        """Every record's label, without building the records (holding classes out of 2.7M images)."""
        if not self._batches:
            return []
        return pa.chunked_array([b.column(LABEL) for b in self._batches]).take(self._rows).to_pylist()

    def keys(self) -> Iterator[str]:
        """Every record's key (its image id, as ``_record`` makes it), a block at a time: capping classes of 2.7M images."""
        if not self._batches:
            return
        ids = pa.chunked_array([b.column("id") for b in self._batches]).take(self._rows)
        for start in range(0, len(ids), 65536):
            yield from map(str, ids.slice(start, 65536).to_pylist())

    def take(self, indices) -> list[Record]:
        wanted: dict[int, list[tuple[int, int]]] = defaultdict(list)  # batch → [(row in batch, output position)]
        for position, row in enumerate(self._rows.take(pa.array(indices, pa.int64())).to_pylist()):
            batch = bisect_right(self._offsets, row) - 1
            wanted[batch].append((row - self._offsets[batch], position))
        out: list[Record | None] = [None] * len(indices)
        for batch, items in wanted.items():
            rows = self._batches[batch].take(pa.array([r for r, _ in items], pa.int64())).to_pylist()
            for (_, position), row in zip(items, rows):
                out[position] = self._record(row)
        return out

    def _record(self, row: dict) -> Record:
        file_name = row.pop("file_name")
        label = row.pop(LABEL)
        row.pop(ESCAPES_ROOT, None)
        return Record(
            key=str(row["id"]),
            image=self._adapter.image_location(file_name),
            label=label,
            split=self._split,
            metadata=row,
            source=file_name,
        )


def _checked_categories(categories: pa.Table, path: str, section: str) -> pa.Table:
    require_columns(categories, ("id", "name"), path, "categories")
    if categories.num_rows == 0 and not section:
        raise VLConvertError(f"{path}: expected a bare JSON list of categories, as released")
    if categories.num_rows == 0:
        raise VLConvertError(f"{path}: the 'categories' list is empty")
    ids, names = categories["id"], categories["name"]
    if pc.any(pc.is_null(ids)).as_py():
        raise VLConvertError(f"{path}: a category has no id")
    if not pa.types.is_string(names.type):
        raise VLConvertError(f"{path}: category names must be strings, found {names.type} values")
    nameless = pc.or_kleene(pc.is_null(names), pc.equal(pc.utf8_trim_whitespace(names), ""))
    if pc.any(nameless).as_py():
        raise VLConvertError(f"{path}: category id {ids.filter(nameless)[0].as_py()} has no name")
    duplicates = pc.not_equal(pc.index_in(ids, value_set=ids), pa.array(range(len(ids))))
    if pc.any(duplicates).as_py():
        dup = ids.filter(duplicates)[0].as_py()
        raise VLConvertError(f"{path}: category id {dup} appears more than once")
    # A class's label is its position among the categories sorted by id.
    return categories.take(pc.sort_indices(ids))

