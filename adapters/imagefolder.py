"""A folder of class folders, as torchvision's ImageFolder and Hugging Face's imagefolder read it.

Two layouts: ``ROOT/<split>/<class>/…/*.jpg`` when the top-level folders are
split names (train, val, validation, test, dev), else ``ROOT/<class>/…`` with
``val_fraction`` of the images (chosen by a seeded hash of their path) in a
``val`` split.  Classes are the class folder names, sorted.

Options: ``val_fraction`` (default 0), ``seed`` (default 0), and ``taxonomy``,
a CSV/TSV/Parquet/JSONL table with one row per class folder (column
``folder``, or ``taxonomy_key``) and any of ``name``, ``common_name``, the
ranks ``kingdom`` … ``species``, and more columns, so a user's own dataset gets
taxonomic captions.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re

from fsspec.implementations.local import LocalFileSystem

from vlconvert.records import VLConvertError

from ._release import ImageRow, Release, ReleaseAdapter, assemble, option_float
from ._tables import classes_from_keys, read_taxonomy

SPLIT_NAMES = ("train", "val", "validation", "valid", "test", "dev")
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


class ImageFolderAdapter(ReleaseAdapter):
    name = "imagefolder"
    description = "ROOT/<split>/<class>/*.jpg or ROOT/<class>/*.jpg (torchvision / Hugging Face convention), optional taxonomy table"

    def __init__(self, root: str, val_fraction: float | str = 0, seed: int | str = 0, taxonomy: str | None = None,
                 taxonomy_key: str | None = None):
        super().__init__(root)
        self.val_fraction = option_float(val_fraction, "val_fraction", 0, 1)
        self.seed = int(option_float(seed, "seed", -(2**63), 2**63))
        self.taxonomy, self.taxonomy_key = taxonomy, taxonomy_key

    def load(self) -> Release:
        top, loose = self._entries(self.files.path)
        if not top:
            raise VLConvertError(f"{self.files.root}: holds no folders; expected ROOT/<class>/*.jpg or ROOT/<split>/<class>/*.jpg")
        split_layout = any(name.lower() in SPLIT_NAMES for name in top)
        if split_layout:
            odd = [name for name in top if name.lower() not in SPLIT_NAMES]
            if odd:
                raise VLConvertError(
                    f"{self.files.root}/{odd[0]}: not a split folder; beside split folders every top-level folder "
                    f"must be one of {', '.join(SPLIT_NAMES)}"
                )
            if self.val_fraction:
                raise VLConvertError(f"{self.files.root}: already split into {', '.join(top)}; val_fraction applies only to ROOT/<class>/")
            splits = top
        else:
            splits = ["train", "val"] if self.val_fraction else ["train"]
        rows, class_names = [], set()
        for split_dir in (top if split_layout else [""]):
            classes, files = self._entries(self.files.join(split_dir)) if split_dir else (top, loose)
            rows += [self._stray(posixpath.join(split_dir, name), split_dir or "train") for name in files]
            for class_name in classes:
                class_names.add(class_name)
                rows += self._rows(posixpath.join(split_dir, class_name), class_name, split_dir or None)
        taxonomy = read_taxonomy(self.taxonomy, self.taxonomy_key)
        classes = classes_from_keys(sorted(class_names), taxonomy, self.taxonomy_key, self.taxonomy or "")
        label_of = {c.extra["class_key"]: c.label for c in classes}
        records, rejected = assemble(self.files, rows, label_of, splits, self.files.root)
        return Release(classes, records, rejected)

    def _entries(self, path: str) -> tuple[list[str], list[str]]:
        """The folders and the files directly in ``path``, hidden ones left out; symlinked folders count as folders."""
        folders, files = [], []
        for entry in self.files.fs.ls(path, detail=True):
            name = posixpath.basename(entry["name"].rstrip("/"))
            if name.startswith("."):
                continue
            is_folder = entry["type"] == "directory" or (entry["type"] != "file" and self.files.fs.isdir(entry["name"]))
            (folders if is_folder else files).append(name)
        return sorted(folders), sorted(files)

    def _stray(self, relative: str, split: str) -> ImageRow:
        return ImageRow(path_key(relative), relative, None, split, problem="a file outside any class folder")

    def _rows(self, folder: str, class_name: str, split: str | None) -> list[ImageRow]:
        rows = []
        for path in sorted(self._files_under(folder)):
            relative = posixpath.relpath(path, self.files.path)
            if any(part.startswith(".") for part in relative.split("/")):
                continue  # .DS_Store, .ipynb_checkpoints: not part of the dataset
            extension = posixpath.splitext(relative)[1].lower()
            row_split = split or ("val" if self._in_val(relative) else "train")
            problem = None if extension in IMAGE_EXTENSIONS else f"not an image file (extension {extension or 'none'})"
            rows.append(ImageRow(path_key(relative), relative, class_name, row_split, {"path": relative}, problem=problem))
        return rows

    def _files_under(self, folder: str) -> list[str]:
        path = self.files.join(folder)
        if not isinstance(self.files.fs, LocalFileSystem):
            return self.files.fs.find(path)

        # fsspec's find skips a folder it cannot list; its images would vanish without a trace.
        def fail(error: OSError) -> None:
            raise VLConvertError(f"{error.filename}: cannot list this folder ({error.strerror}); its images would be lost")

        return [posixpath.join(top, name) for top, _, names in os.walk(path, onerror=fail, followlinks=True) for name in names]

    def _in_val(self, relative: str) -> bool:
        if not self.val_fraction:
            return False
        digest = hashlib.blake2b(f"{self.seed}:{relative}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") / 2**64 < self.val_fraction


def path_key(relative: str) -> str:
    """A sample key for a file: readable, unique (a 64-bit hash of the whole path), dot-free."""
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", posixpath.splitext(posixpath.basename(relative))[0]).strip("_")[:40]
    digest = hashlib.blake2b(relative.encode("utf-8", "surrogateescape"), digest_size=8).hexdigest()
    return f"{stem}_{digest}" if stem else digest
