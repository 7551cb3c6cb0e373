"""The base of the built-in adapters: a release's files under ROOT, and per split its
records, rejections and ignored entries behind the adapter protocol (docs/adapters.md).

``DatasetAdapter`` answers ``records``/``rejected``/``ignored`` for a split, refusing one the
root does not have; a subclass says which splits there are and how to read one.
``ReleaseAdapter`` is the subclass for releases small enough to parse whole, once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from vlconvert.errors import VLConvertError
from vlconvert.records import ClassInfo, Record, Rejected

from ._release import ReleaseFiles


@dataclass(frozen=True)
class SplitContents:
    """What one split holds: its records, the rows that could not be records, and the entries left out by convention."""

    records: Sequence[Record]
    rejected: Sequence[Rejected] = ()
    ignored: Sequence[str] = ()


class DatasetAdapter:
    """Subclasses implement ``classes``, ``splits`` and ``read_split``."""

    name = ""
    description = ""
    # What the build's dataset card (README.md) says of the source; "" where the adapter does not know.
    license = ""  # a Hugging Face Hub license id: "cc-by-4.0", "unknown", or "other" for the release's own terms
    license_url = ""  # where those terms are written
    license_note = ""  # one or two sentences a user of the shards must read
    citation = ""  # BibTeX of the paper the release asks to cite
    homepage = ""

    def __init__(self, root: str, allow_outside_root: bool | str = False):
        self.files = ReleaseFiles(root, self.name, allow_outside_root)

    @property
    def image_root(self) -> str | None:
        return self.files.image_root

    def classes(self) -> list[ClassInfo]:
        raise NotImplementedError

    def splits(self) -> list[str]:
        raise NotImplementedError

    def read_split(self, split: str) -> SplitContents:
        """The contents of ``split``, one of :meth:`splits`; a subclass keeps what is costly to read again."""
        raise NotImplementedError

    def records(self, split: str) -> Sequence[Record]:
        return self._contents(split).records

    def rejected(self, split: str) -> list[Rejected]:
        return list(self._contents(split).rejected)

    def ignored(self, split: str) -> list[str]:
        """Entries left out by convention (hidden files), for the manifest's count and --dry-run's list."""
        return list(self._contents(split).ignored)

    def _contents(self, split: str) -> SplitContents:
        available = self.splits()
        if split not in available:
            raise VLConvertError(f"{self.files.root}: split {split!r} not found; this root has {', '.join(available)}")
        return self.read_split(split)


@dataclass
class Release:
    """A parsed release: its classes, and per split the records and the rejected rows."""

    classes: list[ClassInfo]
    records: dict[str, list[Record]] = field(default_factory=dict)
    rejected: dict[str, list[Rejected]] = field(default_factory=dict)
    ignored: dict[str, list[str]] = field(default_factory=dict)  # hidden entries, by split


class ReleaseAdapter(DatasetAdapter):
    """An adapter that parses its whole release once: subclasses implement ``load``."""

    def __init__(self, root: str, allow_outside_root: bool | str = False):
        super().__init__(root, allow_outside_root)
        self._release: Release | None = None

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

    def read_split(self, split: str) -> SplitContents:
        release = self.release
        return SplitContents(release.records[split], release.rejected.get(split, []), release.ignored.get(split, []))
