"""The one tar reader of the read-back tools and ``lit/``: a shard's samples, front to back.

The tar is streamed (``r|``: no seeking, so an object store streams it once),
and a shard of any size costs one sample's members in memory.  Every bound
here is what a build writes with room to spare: a tampered shard's larger
headers, members and samples are skipped or cut short, never read into memory.

tarfile treats a file that ends between two members as a complete archive, so
a shard cut there reads "cleanly"; only its byte count, sha256 and sample
count against the manifest tell (``validate`` checks all three).
"""

from __future__ import annotations

import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from vlconvert.format import IMAGE_MEMBERS

MAX_MEMBER_BYTES = 512 << 20  # an image: more than --max-image-bytes allows
MAX_TEXT_MEMBER_BYTES = 16 << 20  # a caption (at most 2,000 characters), the JSON, the label
MAX_MEMBERS_PER_SAMPLE = 1000
MAX_SAMPLE_TEXT_BYTES = 4 * MAX_TEXT_MEMBER_BYTES
MAX_SAMPLE_IMAGE_BYTES = MAX_MEMBER_BYTES  # a build writes one image per sample
MAX_HEADER_BYTES = 1 << 20  # a PAX or GNU long-name header (a member name is at most a few hundred bytes)


class BoundedTarInfo(tarfile.TarInfo):
    """tarfile reads a PAX or GNU long-name header's data whole before the member it describes: a tampered
    shard's 3 GB "long name" would be read into memory.  Refuse one larger than any a build writes."""

    def _proc_member(self, tarfile_):
        if self.type in (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE, tarfile.XGLTYPE,
                         tarfile.SOLARIS_XHDTYPE) and self.size > MAX_HEADER_BYTES:
            raise tarfile.ReadError(f"a {self.size:,}-byte extended header, larger than any a build writes")
        return super()._proc_member(tarfile_)


def open_tar_stream(fileobj) -> tarfile.TarFile:
    """A tar read front to back, headers bounded."""
    return tarfile.open(fileobj=fileobj, mode="r|", tarinfo=BoundedTarInfo)


@dataclass
class TarSample:
    key: str
    members: list[tuple[str, bytes]] = field(default_factory=list)  # (member, data) in tar order, a repeated one too
    overflow: str = ""  # why the sample's later members were not read: "more members than a build writes (…)"
    _seen: int = field(default=0, repr=False)  # members met, read or not
    _text_bytes: int = field(default=0, repr=False)
    _image_bytes: int = field(default=0, repr=False)

    def get(self, member: str) -> bytes | None:
        """The member's data (the last one, if it is repeated), or None."""
        return next((data for name, data in reversed(self.members) if name == member), None)

    def image(self) -> tuple[str, bytes] | None:
        """(member, data) of the sample's first image member, or None."""
        return next(((name, data) for name, data in self.members if name in IMAGE_MEMBERS), None)

    def _add(self, member: str, info: tarfile.TarInfo, tar: tarfile.TarFile) -> None:
        self._seen += 1
        if self.overflow:
            return
        image = member in IMAGE_MEMBERS
        text_bytes = self._text_bytes + (0 if image else info.size)
        image_bytes = self._image_bytes + (info.size if image else 0)
        if self._seen > MAX_MEMBERS_PER_SAMPLE or text_bytes > MAX_SAMPLE_TEXT_BYTES:
            self.overflow = f"more members than a build writes ({self._seen}, {text_bytes:,} bytes of text)"
        elif image_bytes > MAX_SAMPLE_IMAGE_BYTES:
            self.overflow = f"more members than a build writes ({self._seen}, {image_bytes:,} bytes of images)"
        else:
            self._text_bytes, self._image_bytes = text_bytes, image_bytes
            self.members.append((member, tar.extractfile(info).read()))


class UnreadableTar(Exception):
    """The tar cannot be read on (a damaged header, a cut in a member, a failing read).  ``partial`` is the sample
    it was cut in, with the members read so far, or None when it was cut between samples."""

    def __init__(self, cause: BaseException, partial: TarSample | None):
        super().__init__(str(cause))
        self.cause, self.partial = cause, partial


def skipped_because(info: tarfile.TarInfo) -> str | None:
    """Why a tar entry is not a member a build writes, or None when it is one."""
    if not info.isfile():
        return "not a regular file"
    member = info.name.partition(".")[2]
    if info.size > (MAX_MEMBER_BYTES if member in IMAGE_MEMBERS else MAX_TEXT_MEMBER_BYTES):
        return f"{info.size:,} bytes, larger than any member a build writes; not read"
    if "." not in info.name or "/" in info.name:
        return "not a KEY.EXTENSION member"
    return None


def read_samples(fileobj, skipped: Callable[[str, str], None] | None = None) -> Iterator[TarSample]:
    """The samples of a shard in tar order: members grouped by key, a key ending at the name's first dot
    (webdataset's rule).  Entries no build writes are left out and passed to ``skipped(name, why)``;
    a tar that cannot be read on raises :class:`UnreadableTar`."""
    current: TarSample | None = None
    try:
        with open_tar_stream(fileobj) as tar:
            for info in tar:
                why = skipped_because(info)
                if why:
                    if skipped:
                        skipped(info.name, why)
                    continue
                key, _, member = info.name.partition(".")
                if current is None or key != current.key:
                    if current is not None:
                        yield current
                    current = TarSample(key)
                current._add(member, info, tar)
    except (tarfile.TarError, EOFError, OSError) as exc:
        # Cut inside a sample's first member: nothing of that sample was read, so there is no sample to report.
        raise UnreadableTar(exc, current if current is not None and current.members else None) from exc
    if current is not None:
        yield current
