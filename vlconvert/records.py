"""The data model every stage shares: classes, records, rejections, adapters.

An adapter turns a dataset's release layout into three things:

* ``classes()``: one :class:`ClassInfo` per class, where ``label`` is the
  class's index in that sequence;
* ``splits()``: the split names the dataset has on disk;
* ``records(split)``: a sequence of :class:`Record`, one per usable image;
* ``rejected(split)``: a :class:`Rejected` for every input row that could not
  become a record, with the reason.  Together with ``records`` this accounts
  for every row of the input.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from vlconvert.errors import BuildFailed, TooManyRejected, VLConvertError  # noqa: F401  (re-exported: the API's old home)

# The tar member name is "<key>.<ext>" and webdataset splits at the first dot,
# so a dot (or a slash) inside a key would silently break samples apart.
KEY_CHARACTERS = "letters, digits, '_' and '-'"
# The longest member of a sample is "<key>.<template>.txt", and a template's name obeys the key rule too:
# at 120 characters each that is at most 245 bytes, within the 255 that ext4, APFS and NTFS allow a file
# name, so a sample unpacked with `tar x` is still files.  Every built-in adapter's keys fit with room
# to spare (imagefolder's are at most 57 characters, the others are release ids).
MAX_KEY_LENGTH = 120
# A plain regex (adapters/_coco.py hands it to Arrow); match it whole, as is_valid_key does.
KEY_PATTERN = rf"^[A-Za-z0-9_\-]{{1,{MAX_KEY_LENGTH}}}$"
_KEY_RE = re.compile(KEY_PATTERN)


class InvalidRecordError(VLConvertError, ValueError):
    """An adapter built a record the shards cannot hold."""


@dataclass(frozen=True)
class ClassInfo:
    """One class of the dataset, as captions and manifests see it.

    ``taxonomy`` is ordered from the broadest rank to the narrowest, e.g.
    ``(("kingdom", "Animalia"), …, ("genus", "Pica"), ("species", "hudsonia"))``.
    Following BioCLIP's taxonomic text, the ``species`` rank holds the specific
    epithet, not the binomial.
    """

    label: int
    name: str
    common_name: str = ""
    taxonomy: tuple[tuple[str, str], ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ranks(self) -> dict[str, str]:
        return dict(self.taxonomy)


@dataclass(frozen=True)
class Record:
    """One image of one split.

    ``image`` is a local path, an fsspec URL (``s3://…``, ``file://…``) or the
    encoded bytes themselves.  ``source`` says where the record came from, for
    the per-sample JSON and the error report.  ``crop`` asks for a region
    (left, top, right, bottom) in stored-pixel coordinates; a negative right or
    bottom counts from the far edge and None means the edge itself.
    """

    key: str
    image: str | bytes
    label: int
    split: str
    metadata: Mapping[str, Any] = field(default_factory=dict)
    source: str = ""
    crop: tuple[float | None, float | None, float | None, float | None] | None = None

    def __post_init__(self) -> None:
        problem = key_problem(self.key)
        if problem:
            raise InvalidRecordError(f"record key {self.key!r} {problem}")


@dataclass(frozen=True)
class Rejected:
    """An input row that did not become a record, and why."""

    split: str
    key: str
    source: str
    reason: str
    stage: str = "adapter"

    def as_json(self) -> dict[str, str]:
        return {
            "split": self.split,
            "key": self.key,
            "source": self.source,
            "stage": self.stage,
            "reason": self.reason,
        }


@runtime_checkable
class Adapter(Protocol):
    """What the pipeline needs from a dataset reader."""

    name: str
    description: str

    def classes(self) -> Sequence[ClassInfo]: ...

    def splits(self) -> Sequence[str]: ...

    def records(self, split: str) -> Sequence[Record] | Iterable[Record]: ...

    def rejected(self, split: str) -> Iterable[Rejected]: ...


def is_valid_key(key: object) -> bool:
    # fullmatch: with match, "$" would also accept a key ending in a newline.
    return isinstance(key, str) and bool(_KEY_RE.fullmatch(key))


def key_problem(key: object) -> str | None:
    """Why ``key`` cannot be a sample key (a phrase to follow the key in a message), or None if it can."""
    if is_valid_key(key):
        return None
    if isinstance(key, str) and len(key) > MAX_KEY_LENGTH:
        return f"is {len(key)} characters long; a key may have at most {MAX_KEY_LENGTH}"
    return f"must be {KEY_CHARACTERS} (webdataset splits member names at the first dot)"


def key_rule(key: object) -> str:
    """The rule a refused key broke, in brackets, for a reason that names the key first."""
    if isinstance(key, str) and len(key) > MAX_KEY_LENGTH:
        return f"(at most {MAX_KEY_LENGTH} characters; this one has {len(key)})"
    return f"({KEY_CHARACTERS} only)"


def validate_classes(classes: Sequence[ClassInfo], adapter: str) -> None:
    """Labels must be 0..N-1 in order: classnames.txt and zero-shot rely on it."""
    for position, cls in enumerate(classes):
        if not isinstance(cls.name, str) or not cls.name.strip():
            raise VLConvertError(f"adapter {adapter!r}: class {position} has no name ({cls.name!r})")
        if cls.label != position:
            raise VLConvertError(
                f"adapter {adapter!r}: class {cls.name!r} has label {cls.label} "
                f"but is at position {position}; labels must be 0..{len(classes) - 1} in order"
            )


def take_records(records: Sequence[Record], positions) -> list[Record]:
    """The records at ``positions``: in bulk when the sequence offers ``take`` (the iNat table), else one by one."""
    take = getattr(records, "take", None)
    return take(positions) if take else [records[i] for i in positions]


def record_labels(records: Sequence[Record]) -> list[int]:
    """Every record's label, in order: from ``labels()`` when the sequence offers it (the iNat table), without
    building 2.7M records to hold classes out or balance them."""
    labels = getattr(records, "labels", None)
    return labels() if labels else [r.label for r in records]


def record_keys(records: Sequence[Record]) -> Iterator[str]:
    """Every record's key, in order, from ``keys()`` when the sequence offers it; streamed, as there may be millions."""
    keys = getattr(records, "keys", None)
    return iter(keys()) if keys else (r.key for r in records)
