"""Reads one shard back as open_clip would, member by member, and says what is wrong with it.

The tar is streamed (``r|``), so a shard of any size costs one sample's
members in memory.  tarfile treats a file that ends between two members as a
complete archive, so a truncated shard reads "cleanly"; the byte count, the
sha256 and the sample count against the manifest are what catch it.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from collections import Counter
from dataclasses import dataclass, field

from .images import ImageError, check_decodes
from .storage import NotARegularFile, open_regular

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")
MAX_LISTED = 10  # problems listed per shard; a shard that is garbage throughout would otherwise flood the report
# What a build writes, with room to spare; a tampered shard's larger members are reported, not read into memory.
MAX_MEMBER_BYTES = 512 << 20  # an image: more than --max-image-bytes allows
MAX_TEXT_MEMBER_BYTES = 16 << 20  # a caption (at most 2,000 characters), the JSON, the label
MAX_MEMBERS_PER_SAMPLE = 1000
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
    """A tar read front to back (``r|``: no seeking, so an object store streams it once), headers bounded."""
    return tarfile.open(fileobj=fileobj, mode="r|", tarinfo=BoundedTarInfo)


@dataclass(frozen=True)
class SampleRules:
    num_classes: int
    captions: tuple[str, ...] = ("txt",)  # caption members every sample carries: txt, plus one per named template
    decode: bool = True


@dataclass
class ShardCheck:
    name: str  # as the manifest lists it: "<split>/<split>-NNNNNN.tar"
    samples: int = 0
    keys: list[str] = field(default_factory=list)  # in tar order; the split checks they are unique
    labels: Counter = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    unlisted: int = 0  # problems beyond MAX_LISTED

    def problem(self, what: str) -> None:
        if len(self.problems) < MAX_LISTED:
            self.problems.append(what)
        else:
            self.unlisted += 1

    @property
    def clean(self) -> bool:
        return not self.problems


class _HashingReader:
    def __init__(self, raw):
        self.raw = raw
        self.digest = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.digest.update(data)
        self.size += len(data)
        return data


def check_shard(fs, path: str, name: str, expected: dict, rules: SampleRules) -> ShardCheck:
    """``expected`` is the shard's manifest entry: samples, bytes, sha256."""
    check = ShardCheck(name)
    try:
        with open_regular(fs, path) as raw:
            reader = _HashingReader(raw)
            _read_tar(reader, check, rules)
            while reader.read(1 << 20):
                pass  # the end-of-archive blocks and padding count towards the file's sha256
    except FileNotFoundError:
        check.problems = ["missing: listed in manifest.json but not on disk"]
        return check
    except (NotARegularFile, IsADirectoryError) as exc:
        check.problems = [f"{exc.strerror}; not read"]
        return check
    # The whole file's problems come first and are never cut: they say what the member problems below them mean.
    whole = []
    size = expected.get("bytes")
    if not isinstance(size, int):
        whole.append(f"{reader.size:,} bytes; the manifest gives no size")
    elif reader.size != size:
        whole.append(f"{reader.size:,} bytes, the manifest says {size:,}{': truncated' if reader.size < size else ''}")
    digest = reader.digest.hexdigest()
    if digest != expected.get("sha256"):
        whole.append(f"sha256 {digest[:16]}… differs from the manifest's {str(expected.get('sha256'))[:16]}…")
    if check.samples != expected.get("samples"):
        whole.append(f"{check.samples} samples, the manifest says {expected.get('samples')}")
    check.problems[:0] = whole
    return check


def _read_tar(reader: _HashingReader, check: ShardCheck, rules: SampleRules) -> None:
    sample: _Sample | None = None
    try:
        with open_tar_stream(reader) as tar:
            for member in tar:
                if not member.isfile():
                    check.problem(f"{member.name}: not a regular file")
                    continue
                extension = member.name.partition(".")[2]
                if member.size > (MAX_MEMBER_BYTES if extension in IMAGE_EXTENSIONS else MAX_TEXT_MEMBER_BYTES):
                    check.problem(f"{member.name}: {member.size:,} bytes, larger than any member a build writes; not read")
                    continue
                key, dot, extension = member.name.partition(".")
                if not dot or "/" in member.name:
                    check.problem(f"{member.name}: not a KEY.EXTENSION member")
                    continue
                data = tar.extractfile(member).read()
                if sample is None or key != sample.key:
                    if sample is not None:
                        sample.finish(check, rules)
                    sample = _Sample(key)
                sample.add(extension, data, check, rules)
    except (tarfile.TarError, EOFError, OSError) as exc:
        check.problem(f"unreadable tar after {check.samples + (sample is not None)} samples: {exc}")
    if sample is not None:
        sample.finish(check, rules)


class _Sample:
    """One sample's members as they stream past; images are decoded on arrival, not kept."""

    def __init__(self, key: str):
        self.key = key
        self.images: list[str] = []
        self.small: dict[str, bytes] = {}
        self.members = self.kept = 0  # members seen; bytes of text members kept
        self.overflowed = False

    def add(self, extension: str, data: bytes, check: ShardCheck, rules: SampleRules) -> None:
        if extension in self.small or extension in self.images:
            check.problem(f"{self.key}.{extension}: repeated within the sample")
        self.members += 1
        if self.members > MAX_MEMBERS_PER_SAMPLE or self.kept + len(data) > MAX_TEXT_MEMBER_BYTES * 4:
            if not self.overflowed:
                check.problem(f"{self.key}: more members than a build writes ({self.members}, {self.kept + len(data):,} bytes "
                              "of text); the rest of the sample is not read")
            self.overflowed = True
            return
        if extension not in IMAGE_EXTENSIONS:
            self.kept += len(data)
        if extension in IMAGE_EXTENSIONS:
            self.images.append(extension)
            if rules.decode:
                try:  # as strictly as the build decodes (libjpeg's warnings count), within the same budget
                    check_decodes(data)
                except ImageError as exc:
                    check.problem(f"{self.key}.{extension}: image does not decode: {exc}")
        else:
            self.small[extension] = data

    def finish(self, check: ShardCheck, rules: SampleRules) -> None:
        check.samples += 1
        check.keys.append(self.key)
        k = self.key
        if not self.images:
            check.problem(f"{k}: no image member ({', '.join(IMAGE_EXTENSIONS)})")
        for member in rules.captions:
            text = self.small.get(member)
            if text is None:
                check.problem(f"{k}: no caption {k}.{member}")
            elif not _text(text).strip():
                check.problem(f"{k}.{member}: empty caption")
        label = self._label(check, rules)
        if label is not None:
            check.labels[label] += 1
        self._check_json(check, label)

    def _label(self, check: ShardCheck, rules: SampleRules) -> int | None:
        k = self.key
        if "cls" not in self.small:
            check.problem(f"{k}: no label {k}.cls")
            return None
        try:
            label = int(_text(self.small["cls"]).strip())
        except ValueError:
            check.problem(f"{k}.cls: {_text(self.small['cls'])[:20]!r} is not an integer label")
            return None
        if not 0 <= label < rules.num_classes:
            check.problem(f"{k}.cls: label {label} outside 0..{rules.num_classes - 1}")
            return None
        return label

    def _check_json(self, check: ShardCheck, label: int | None) -> None:
        k = self.key
        if "json" not in self.small:
            check.problem(f"{k}: no {k}.json")
            return
        try:
            data = json.loads(self.small["json"])
        except (ValueError, RecursionError) as exc:
            check.problem(f"{k}.json: not valid JSON: {exc}")
            return
        if not isinstance(data, dict):
            check.problem(f"{k}.json: not a JSON object")
        elif data.get("key") != k or (label is not None and data.get("label") != label):
            check.problem(f"{k}.json: key/label {data.get('key')!r}/{data.get('label')!r} disagree with the member name/.cls")


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")
