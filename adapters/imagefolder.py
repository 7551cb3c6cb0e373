"""A folder of class folders, as torchvision's ImageFolder and Hugging Face's imagefolder read it.

Two layouts: ``ROOT/<split>/<class>/…/*.jpg`` when the top-level folders are
split names (train, val, validation, test, dev), else ``ROOT/<class>/…`` with
``val_fraction`` of the images (chosen by a seeded hash of their path) in a
``val`` split.  Classes are the class folder names, sorted.

Options: ``val_fraction`` (default 0), ``seed`` (default 0), and ``taxonomy``,
a CSV/TSV/Parquet/JSONL table with one row per class folder (column
``folder``, or ``taxonomy_key``) and any of ``name``, ``common_name``, the
ranks ``kingdom`` … ``species``, and more columns, so a user's own dataset gets
taxonomic captions.  ``allow_outside_root=true`` follows links that lead out of ROOT.

Hidden files and folders (``.DS_Store``, ``._IMG_1.jpg``) are left out, as
torchvision and Hugging Face leave them out; the manifest counts them per split
and ``--dry-run`` lists them.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
import warnings

from fsspec.implementations.local import LocalFileSystem

from vlconvert.errors import VLConvertError
from vlconvert.storage import within

from ._base import Release, ReleaseAdapter
from ._options import option_float
from ._rows import ImageRow, assemble
from ._tables import classes_from_keys, read_taxonomy

SPLIT_NAMES = ("train", "val", "validation", "valid", "test", "dev")
INAT_FOLDER = re.compile(r"^\d{5}_[A-Z][a-z]+_")  # 00000_Animalia_Annelida_…: iNat-2021's image_dir_name
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


class ImageFolderAdapter(ReleaseAdapter):
    name = "imagefolder"
    description = "ROOT/<split>/<class>/*.jpg or ROOT/<class>/*.jpg (torchvision / Hugging Face convention), optional taxonomy table"

    def __init__(self, root: str, val_fraction: float | str = 0, seed: int | str = 0, taxonomy: str | None = None,
                 taxonomy_key: str | None = None, allow_outside_root: bool | str = False):
        super().__init__(root, allow_outside_root)
        self.val_fraction = option_float(val_fraction, "val_fraction", 0, 1)
        self.seed = int(option_float(seed, "seed", -(2**63), 2**63))
        self.taxonomy, self.taxonomy_key = taxonomy, taxonomy_key

    def load(self) -> Release:
        walk = _Walk(self.files)
        top, loose = walk.entries("")
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
            classes, files = walk.entries(split_dir) if split_dir else (top, loose)
            rows += [self._stray(posixpath.join(split_dir, name), split_dir or "train") for name in files]
            for class_name in classes:
                class_folder = posixpath.join(split_dir, class_name)
                found = walk.files_under(class_folder)
                if found:
                    class_names.add(class_name)
                rows += [self._row(path, class_name, split_dir or None) for path in found]
        rows += [ImageRow(path_key(path), path, None, self._split_of(path, splits, split_layout), problem=problem)
                 for path, problem in walk.refused]
        _suggest_inat(class_names, self.files.root)
        taxonomy = read_taxonomy(self.taxonomy, self.taxonomy_key)
        classes = classes_from_keys(sorted(class_names), taxonomy, self.taxonomy_key, self.taxonomy or "")
        label_of = {c.extra["class_key"]: c.label for c in classes}
        records, rejected = assemble(self.files, rows, label_of, splits, self.files.root)
        ignored: dict[str, list[str]] = {}
        for path in walk.hidden:
            ignored.setdefault(self._split_of(path, splits, split_layout), []).append(path)
        return Release(classes, records, rejected, ignored)

    def _split_of(self, relative: str, splits: list[str], split_layout: bool) -> str:
        first = relative.split("/", 1)[0]
        if split_layout:
            return first if first in splits else splits[0]
        return "val" if self._in_val(relative) else "train"

    def _stray(self, relative: str, split: str) -> ImageRow:
        return ImageRow(path_key(relative), relative, None, split, problem="a file outside any class folder")

    def _row(self, relative: str, class_name: str, split: str | None) -> ImageRow:
        extension = posixpath.splitext(relative)[1].lower()
        row_split = split or ("val" if self._in_val(relative) else "train")
        problem = None if extension in IMAGE_EXTENSIONS else f"not an image file (extension {extension or 'none'})"
        return ImageRow(path_key(relative), relative, class_name, row_split, {"path": relative}, problem=problem)

    def _in_val(self, relative: str) -> bool:
        if not self.val_fraction:
            return False
        digest = hashlib.blake2b(f"{self.seed}:{relative}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") / 2**64 < self.val_fraction


def _suggest_inat(class_names: set[str], root: str) -> None:
    """iNat-2021's folders read as imagefolder classes give captions of folder names and no common names: the
    build goes on, as the user may mean it, but says which adapter reads the release's taxonomy."""
    if class_names and sum(bool(INAT_FOLDER.match(name)) for name in class_names) * 2 > len(class_names):
        example = min(class_names)
        warnings.warn(f"{root}: the class folders are named like iNaturalist 2021's ({example[:40]}…); if this is an iNat "
                      "release with its train.json / val.json, --adapter inat2021 reads their taxonomy and common names",
                      stacklevel=2)


def path_key(relative: str) -> str:
    """A sample key for a file: readable, unique (a 64-bit hash of the whole path), dot-free."""
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", posixpath.splitext(posixpath.basename(relative))[0]).strip("_")[:40]
    digest = hashlib.blake2b(relative.encode("utf-8", "surrogateescape"), digest_size=8).hexdigest()
    return f"{stem}_{digest}" if stem else digest


class _Walk:
    """Lists a release's folders the way the read policy reads them (docs/security.md).

    Hidden entries (``.DS_Store``, ``.ipynb_checkpoints/``, ``._IMG_1.jpg``) are left
    out and listed in ``hidden``.  On a local disk links are not followed blindly: a
    link to a folder outside the root (unless ``allow_outside_root``) and a link to a
    folder already walked (a loop such as ``cat/loop -> .``, or a second path to the
    same images) are not entered, each becoming one row in ``refused`` with its reason.
    """

    def __init__(self, files):
        self.files = files
        self.local = isinstance(files.fs, LocalFileSystem)
        self.root_real = os.path.realpath(files.path) if self.local else ""
        self.hidden: list[str] = []
        self.refused: list[tuple[str, str]] = []  # (relative path, reason)
        self._walked: dict[tuple[int, int], str] = {}  # (device, inode) of each folder walked → its path

    def entries(self, relative: str) -> tuple[list[str], list[str]]:
        """The folders and the files directly in ``relative`` (sorted), hidden ones left out."""
        folders, files = [], []
        for name, is_folder in self._list(relative):
            (folders if is_folder else files).append(name)
        return sorted(folders), sorted(files)

    def files_under(self, relative: str) -> list[str]:
        """Every non-hidden file below the folder ``relative``, as paths relative to the root, sorted."""
        found, pending = [], [relative]
        while pending:  # a stack, not recursion: a hostile tree may be thousands of folders deep
            folder = pending.pop()
            for name, is_folder in self._list(folder):
                path = posixpath.join(folder, name)
                (pending if is_folder else found).append(path)
        return sorted(found)

    def _list(self, relative: str) -> list[tuple[str, bool]]:
        path = self.files.join(relative) if relative else self.files.path
        if not self.local:
            listing = [(posixpath.basename(entry["name"].rstrip("/")), entry["type"] == "directory")
                       for entry in self.files.fs.ls(path, detail=True)]
            return [(name, is_folder) for name, is_folder in listing if not self._hidden(relative, name, is_folder)]
        if not self._enter(path, relative):
            return []
        listing = []
        try:
            with os.scandir(path) as scan:
                for entry in scan:
                    shown = _utf8_or_escaped(entry.name)
                    if self._hidden(relative, shown, entry.is_dir(follow_symlinks=False)):
                        continue
                    if shown != entry.name:  # bytes that are not UTF-8 cannot reach a JSON member, a caption or the report
                        self.refused.append((posixpath.join(relative, shown), "its name is not valid UTF-8; rename it"))
                        continue
                    is_folder = self._is_folder(entry, posixpath.join(relative, entry.name))
                    if is_folder is not None:
                        listing.append((entry.name, is_folder))
        except OSError as error:
            # A folder that cannot be listed would lose its images without a trace.
            where = error.filename or path
            raise VLConvertError(f"{where}: cannot list this folder ({error.strerror}); its images would be lost") from None
        return listing

    def _hidden(self, relative: str, name: str, is_folder: bool) -> bool:
        """Whether the entry is hidden; a hidden one is noted in ``hidden``."""
        if name.startswith("."):
            self.hidden.append(posixpath.join(relative, name) + ("/" if is_folder else ""))
        return name.startswith(".")

    def _is_folder(self, entry: os.DirEntry, relative: str) -> bool | None:
        """True for a folder to walk, False for a file to list, None for a link refused here."""
        if not entry.is_symlink():
            return entry.is_dir(follow_symlinks=False)
        target = os.path.realpath(entry.path)
        if not os.path.isdir(target):
            return False  # a link to a file: the reader checks where it leads when it reads it
        if not self.files.allow_outside_root and not within(target, self.root_real):
            self.refused.append((relative, f"a link to the folder {target}, outside the dataset root; not followed "
                                           "(--option allow_outside_root=true to follow it)"))
            return None
        return True

    def _enter(self, path: str, relative: str) -> bool:
        try:
            info = os.stat(path)
        except OSError as error:
            raise VLConvertError(f"{path}: cannot list this folder ({error.strerror}); its images would be lost") from None
        identity = (info.st_dev, info.st_ino)
        first = self._walked.setdefault(identity, relative or ".")
        if first != (relative or "."):
            self.refused.append((relative, f"a link to the folder {first}, which is already read (a loop, or a second "
                                           "path to the same images); not followed"))
            return False
        return True


def _utf8_or_escaped(name: str) -> str:
    """``name`` itself when it is UTF-8; otherwise its bytes with the undecodable ones escaped (``c\\xfe.jpg``)."""
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
