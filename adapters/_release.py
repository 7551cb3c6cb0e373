"""What the file-based adapters share: reading a release's small text files with
errors that name the file and line, option parsing, caching the parsed release,
and turning per-image tables into records and rejections.
"""

from __future__ import annotations

import math
import os
import posixpath
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fsspec.implementations.local import LocalFileSystem

from vlconvert.image_files import within
from vlconvert.records import ClassInfo, Record, Rejected, VLConvertError, is_valid_key
from vlconvert.storage import NotARegularFile, filesystem, open_regular, read_at_most

# The largest text file of a known release is CUB's image_attribute_labels.txt, about 75 MB.
MAX_RELEASE_FILE_BYTES = 512 << 20


class ReleaseFiles:
    """The files of one dataset release under ROOT (a local folder or an fsspec URL).

    ``allow_outside_root``: the release's paths and links may lead out of ROOT (by
    default a path leaving it is rejected, and a local image must resolve inside it)."""

    def __init__(self, root: str, dataset: str, allow_outside_root: bool | str = False):
        self.root = root
        self.dataset = dataset
        self.allow_outside_root = option_bool(allow_outside_root, "allow_outside_root")
        self.fs, self.path = filesystem(root, "--root")
        self._beside_root: set[str] = set()
        self._protocol = root.split("://", 1)[0] if "://" in root else None
        if not self.fs.isdir(self.path):
            raise VLConvertError(f"{root}: no such folder (the {dataset} root)")

    def join(self, *parts: str) -> str:
        return posixpath.join(self.path, *parts)

    @property
    def image_root(self) -> str | None:
        """The folder local images must resolve into; None when the release may lead anywhere (or is remote)."""
        return None if self.allow_outside_root or not isinstance(self.fs, LocalFileSystem) else self.path

    def exists(self, relative: str) -> bool:
        return self.fs.exists(self.join(relative))

    def location(self, relative: str) -> str:
        """What a Record's ``image`` should hold for a file named by the release; URLs and absolute paths stay.

        A ``file://`` path is the local path it names, read as :func:`leaves_root` checked it: a
        relative one is relative to the root, never to the folder vlconvert happens to run in."""
        scheme, sep, rest = relative.partition("://")
        if sep and scheme.lower() == "file" and "::" not in relative and not rest.startswith("/"):
            relative = rest
        if "://" in relative or relative.startswith("/"):
            return relative
        path = self.join(relative)
        return f"{self._protocol}://{path}" if self._protocol and self._protocol != "file" else path

    def require(self, relative: str, expected: str) -> str:
        if not self.exists(relative):
            raise VLConvertError(f"{self.root}: {relative} not found; {self.dataset} expects {expected}")
        return relative

    def open_path(self, path: str, confine: bool = True):
        """A release file (``path`` as :meth:`join` makes it) opened for reading, under the read policy
        (docs/security.md): a regular file, inside the root after resolving links unless the release may
        leave it.  A metadata file linked to /etc/passwd would otherwise be read, and its lines quoted
        in the error; a FIFO named val.json would block for ever."""
        shown = posixpath.join(self.root, posixpath.relpath(path, self.path)) if path.startswith(self.path) else path
        if confine and self.image_root is not None:
            real, root = os.path.realpath(path), os.path.realpath(self.path)
            if not within(real, root) and real not in self._beside_root:
                raise VLConvertError(f"{shown}: resolves to {real}, outside the dataset root; not read "
                                     "(--option allow_outside_root=true to read it anyway)")
        try:
            return open_regular(self.fs, path)
        except FileNotFoundError:
            raise VLConvertError(f"{shown}: not found") from None
        except (NotARegularFile, IsADirectoryError) as exc:
            raise VLConvertError(f"{shown}: {exc.strerror}; not read") from None

    def allow_beside_root(self, relative: str) -> None:
        """A file the layout itself puts outside ROOT (CUB's attributes.txt beside CUB_200_2011/), read where it
        lies: a link there to anywhere else is still refused."""
        if self.image_root is not None:
            self._beside_root.add(os.path.normpath(os.path.join(os.path.realpath(self.path), relative)))

    def read_bytes(self, relative: str, limit: int = MAX_RELEASE_FILE_BYTES) -> bytes:
        with self.open_path(self.join(relative)) as f:
            data = read_at_most(f, limit)
        if len(data) > limit:
            raise VLConvertError(f"{self.root}/{relative}: larger than {limit >> 20} MB; not a release file vlconvert reads")
        return data

    def read_text(self, relative: str, expected: str) -> str:
        self.require(relative, expected)
        data = self.read_bytes(relative)
        try:
            return data.decode("utf-8-sig")  # a BOM would otherwise stick to the first id
        except UnicodeDecodeError:
            return data.decode("latin-1")  # older releases are not all UTF-8

    def rows(self, relative: str, fields: int, expected: str, rest: bool = False) -> Iterator[tuple[int, list[str]]]:
        """(line number, fields) of a whitespace-separated file; with ``rest`` the last field keeps its spaces."""
        for number, line in enumerate(self.read_text(relative, expected).splitlines(), start=1):
            if not line.strip():
                continue
            # Stray spaces at a line's end (or inside a name's last field) are not part of any value.
            parts = [p.strip() for p in line.split(maxsplit=fields - 1)] if rest else line.split()
            if len(parts) != fields:
                raise VLConvertError(f"{self.root}/{relative}, line {number}: expected '{expected}', found {line!r}")
            yield number, parts

    def table(self, relative: str, expected: str, parse: Callable[[list[str]], Any], fields: int, rest: bool = False) -> dict:
        """First field → ``parse(other fields)``; a bad value or a repeated id names the line."""
        out: dict[str, Any] = {}
        for number, (key, *values) in self.rows(relative, fields, expected, rest):
            if key in out:
                raise VLConvertError(f"{self.root}/{relative}, line {number}: id {key} appears a second time")
            try:
                out[key] = parse(values)
            except ValueError:
                raise VLConvertError(
                    f"{self.root}/{relative}, line {number}: expected '{expected}', found {' '.join([key, *values])!r}"
                ) from None
        return out


def option_float(value: Any, name: str, low: float, high: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise VLConvertError(f"option {name}={value!r} is not a number") from None
    if not low <= number <= high:
        raise VLConvertError(f"option {name}={value!r} must be between {low} and {high}")
    return number


def option_bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off", ""}:
        return False
    raise VLConvertError(f"option {name}={value!r} is not true or false")


@dataclass
class Release:
    """A parsed release: its classes, and per split the records and the rejected rows."""

    classes: list[ClassInfo]
    records: dict[str, list[Record]] = field(default_factory=dict)
    rejected: dict[str, list[Rejected]] = field(default_factory=dict)
    ignored: dict[str, list[str]] = field(default_factory=dict)  # hidden entries, by split


class ReleaseAdapter:
    """Base of the adapters that parse a whole release once: subclasses implement ``load``."""

    name = ""
    description = ""

    def __init__(self, root: str, allow_outside_root: bool | str = False):
        self.files = ReleaseFiles(root, self.name, allow_outside_root)
        self._release: Release | None = None

    @property
    def image_root(self) -> str | None:
        return self.files.image_root

    def ignored(self, split: str) -> list[str]:
        """Entries left out by convention (hidden files), for the manifest's count and --dry-run's list."""
        return self.release.ignored.get(split, [])

    def load(self) -> Release:
        raise NotImplementedError

    @property
    def release(self) -> Release:
        if self._release is None:
            self._release = self.load()
        return self._release

    def classes(self) -> list[ClassInfo]:
        return self.release.classes

    def splits(self) -> list[str]:
        return list(self.release.records)

    def records(self, split: str) -> list[Record]:
        if split not in self.release.records:
            raise VLConvertError(f"{self.files.root}: split {split!r} not found; {self.name} has {', '.join(self.splits())}")
        return self.release.records[split]

    def rejected(self, split: str) -> list[Rejected]:
        return self.release.rejected.get(split, [])


@dataclass(frozen=True)
class ImageRow:
    """One image as listed by a release, before it is checked."""

    image_id: str
    path: str  # relative to the release root
    class_id: str | None  # None: the release gives the image no class
    split: str | None  # None: the release gives the image no split
    metadata: Mapping[str, Any] = field(default_factory=dict)
    crop: tuple | None = None
    problem: str | None = None  # a reason, found by the adapter, why this row cannot be a record


def assemble(
    files: ReleaseFiles, rows: Sequence[ImageRow], label_of: Mapping[str, int], splits: Sequence[str], where: str,
) -> tuple[dict[str, list[Record]], dict[str, list[Rejected]]]:
    """Records per split for every row that can be one; a Rejected, with its reason, for every other.

    A path that leaves the release's folder (absolute, ``..``, ``file://``) is refused, never
    read, unless the release allows it: a dataset file must not make vlconvert read /etc/passwd.
    Remote URLs (``https://``, ``s3://``) are references by design and stay."""
    records: dict[str, list[Record]] = {s: [] for s in splits}
    rejected: dict[str, list[Rejected]] = {s: [] for s in splits}
    first_seen: dict[tuple[str, str], str] = {}
    for row in rows:
        split = row.split if row.split in records else splits[0]
        reason = _reason(row, splits, label_of)
        if not reason and not files.allow_outside_root and leaves_root(files.join(""), row.path):
            reason = f"path {row.path!r} points outside the dataset root"
        if not reason and (split, row.image_id) in first_seen:
            reason = f"duplicate image id {row.image_id} (first: {first_seen[split, row.image_id]})"
        first_seen.setdefault((split, row.image_id), row.path)
        if reason:
            rejected[split].append(Rejected(split, row.image_id, f"{where} image {row.image_id} {row.path}", reason))
            continue
        records[split].append(Record(
            key=row.image_id, image=files.location(row.path), label=label_of[row.class_id], split=split,
            metadata=dict(row.metadata), source=row.path, crop=row.crop,
        ))
    return records, rejected


REMOTE_SCHEMES = ("http", "https", "s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "hf")


def leaves_root(root: str, path: str) -> bool:
    """Whether a listed path may resolve outside ``root`` (the release folder, as its filesystem names it).

    Remote URLs of the usual stores are references by design and stay; every other scheme
    (``file:``, ``local:``, a ``::`` chain, ``~``) could reach any local file, so it counts
    as leaving unless a ``file://`` path normalises to somewhere under the root."""
    scheme, sep, rest = path.partition("://")
    if sep and "::" not in path and scheme.lower() in REMOTE_SCHEMES:
        return False
    if sep:
        if scheme.lower() != "file" or "::" in path:
            return True
        path = rest
    if "::" in path or path.startswith("~") or re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", path):
        return True
    root = posixpath.normpath(root or ".")
    target = posixpath.normpath(path if path.startswith("/") else posixpath.join(root, path))
    if not target.startswith("/") and root.startswith("/"):
        return True
    return not (target == root or target.startswith(root.rstrip("/") + "/"))


def _reason(row: ImageRow, splits: Sequence[str], label_of: Mapping[str, int]) -> str | None:
    if row.problem:
        return row.problem
    if not row.path:
        return "the release gives this image no file"
    if row.split is None:
        return "the release assigns this image to no split"
    if row.split not in splits:
        return f"unknown split {row.split!r}"
    if row.class_id is None:
        return "the release gives this image no class"
    if row.class_id not in label_of:
        return f"unknown class {row.class_id!r}"
    if not is_valid_key(row.image_id):
        return f"image id {row.image_id!r} cannot be a sample key (letters, digits, '_' and '-' only)"
    return None


TRAIN_TEST = ("train", "test")


def zero_one(values: list[str]) -> bool:
    """The ``is_training_image`` column of CUB and NABirds."""
    if values[0] not in {"0", "1"}:
        raise ValueError(values[0])
    return values[0] == "1"


def train_or_test(is_train: Mapping[str, bool], image_id: str) -> str | None:
    return None if image_id not in is_train else TRAIN_TEST[0] if is_train[image_id] else TRAIN_TEST[1]


def box_crop(box: Sequence[float] | None) -> tuple[tuple | None, str | None]:
    """An (x, y, width, height) box as a Record crop, or the reason it cannot be one."""
    if not box:
        return None, "crop is on but the release gives this image no bounding box"
    x, y, width, height = box
    if not all(math.isfinite(v) for v in box):
        return None, f"bounding box {list(box)} is not a finite box"
    if width <= 0 or height <= 0 or x + width <= 0 or y + height <= 0:
        return None, f"bounding box {list(box)} is empty or outside the image"
    return (max(0.0, x), max(0.0, y), x + width, y + height), None


def id_order(value: str):
    """Sorts ids numerically when they are numbers ("2" before "10"), as text otherwise."""
    return (0, int(value), "") if value.isdigit() else (1, 0, value)
