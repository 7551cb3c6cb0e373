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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

# The tar member name is "<key>.<ext>" and webdataset splits at the first dot,
# so a dot (or a slash) inside a key would silently break samples apart.
KEY_PATTERN = r"^[A-Za-z0-9_\-]+$"
_KEY_RE = re.compile(KEY_PATTERN)


class VLConvertError(Exception):
    """A problem with the user's input or options: reported without a traceback."""


class BuildFailed(RuntimeError):
    """A failure while running that is not the input's fault (a worker died): one line, exit 1, rerun to resume."""


class TooManyRejected(Exception):
    """More records were rejected than ``--strict`` / ``--max-error-rate`` allow (exit 3).

    Raised before any image is read when the adapter's rejections alone pass the limit
    (``summary`` is None), otherwise after a complete build (``summary`` describes it)."""

    def __init__(self, message: str, summary=None):
        super().__init__(message)
        self.summary = summary


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
        if not is_valid_key(self.key):
            raise InvalidRecordError(
                f"record key {self.key!r} must be letters, digits, '_' or '-' "
                "(webdataset splits member names at the first dot)"
            )


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
