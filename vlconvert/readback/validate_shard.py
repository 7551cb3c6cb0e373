"""Reads one shard back as open_clip would, member by member, and says what is wrong with it.

The shard is read through :mod:`vlconvert.readback.tar_stream`, hashed on the
way.  A file that ends between two members reads as a complete tar, so the
byte count, the sha256 and the sample count against the manifest are what
catch a truncated shard.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field

from vlconvert.format import CAPTION_MEMBER, IMAGE_MEMBERS, LABEL_MEMBER, METADATA_MEMBER
from vlconvert.pipeline.decode import ImageError, check_decodes
from vlconvert.readback.tar_stream import TarSample, UnreadableTar, read_samples
from vlconvert.storage import NotARegularFile, open_regular

MAX_LISTED = 10  # problems listed per shard; a shard that is garbage throughout would otherwise flood the report


@dataclass(frozen=True)
class SampleRules:
    num_classes: int
    captions: tuple[str, ...] = (CAPTION_MEMBER,)  # caption members every sample carries: txt, plus one per named template
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
    try:
        for sample in read_samples(reader, skipped=lambda name, why: check.problem(f"{name}: {why}")):
            _check_members(sample, check, rules)
            _finish(sample, check, rules)
    except UnreadableTar as exc:
        if exc.partial is not None:
            _check_members(exc.partial, check, rules)
        check.problem(f"unreadable tar after {check.samples + (exc.partial is not None)} samples: {exc}")
        if exc.partial is not None:
            _finish(exc.partial, check, rules)


def _check_members(sample: TarSample, check: ShardCheck, rules: SampleRules) -> None:
    seen = set()
    for member, data in sample.members:
        if member in seen:
            check.problem(f"{sample.key}.{member}: repeated within the sample")
        seen.add(member)
        if member in IMAGE_MEMBERS and rules.decode:
            try:  # as strictly as the build decodes (libjpeg's warnings count), within the same budget
                check_decodes(data)
            except ImageError as exc:
                check.problem(f"{sample.key}.{member}: image does not decode: {exc}")
    if sample.overflow:
        check.problem(f"{sample.key}: {sample.overflow}; the rest of the sample is not read")


def _finish(sample: TarSample, check: ShardCheck, rules: SampleRules) -> None:
    check.samples += 1
    k = sample.key
    check.keys.append(k)
    if sample.image() is None:
        check.problem(f"{k}: no image member ({', '.join(IMAGE_MEMBERS)})")
    for member in rules.captions:
        text = sample.get(member)
        if text is None:
            check.problem(f"{k}: no caption {k}.{member}")
        elif not _text(text).strip():
            check.problem(f"{k}.{member}: empty caption")
    label = _label(sample, check, rules)
    if label is not None:
        check.labels[label] += 1
    _check_json(sample, check, label)


def _label(sample: TarSample, check: ShardCheck, rules: SampleRules) -> int | None:
    k, data = sample.key, sample.get(LABEL_MEMBER)
    if data is None:
        check.problem(f"{k}: no label {k}.{LABEL_MEMBER}")
        return None
    try:
        label = int(_text(data).strip())
    except ValueError:
        check.problem(f"{k}.{LABEL_MEMBER}: {_text(data)[:20]!r} is not an integer label")
        return None
    if not 0 <= label < rules.num_classes:
        check.problem(f"{k}.{LABEL_MEMBER}: label {label} outside 0..{rules.num_classes - 1}")
        return None
    return label


def _check_json(sample: TarSample, check: ShardCheck, label: int | None) -> None:
    k, raw = sample.key, sample.get(METADATA_MEMBER)
    if raw is None:
        check.problem(f"{k}: no {k}.{METADATA_MEMBER}")
        return
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        check.problem(f"{k}.{METADATA_MEMBER}: not valid JSON: {exc}")
        return
    if not isinstance(data, dict):
        check.problem(f"{k}.{METADATA_MEMBER}: not a JSON object")
    elif data.get("key") != k or (label is not None and data.get("label") != label):
        check.problem(f"{k}.{METADATA_MEMBER}: key/label {data.get('key')!r}/{data.get('label')!r} disagree with the "
                      f"member name/.{LABEL_MEMBER}")


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")
