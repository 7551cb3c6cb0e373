"""``vlconvert inspect``: what a finished build holds, read cheaply enough to run on a full-size build.

Counts come from ``manifest.json`` (per split and per class, written by the
build), so they cost nothing at any scale.  Captions and sample metadata need
the shards themselves: those are streamed from a seeded, bounded subset of the
shards (``max_shards``), and the samples shown are a seeded reservoir draw from
that stream, so the same seed shows the same samples and memory stays bounded.
"""

from __future__ import annotations

import heapq
import json
import posixpath
import random
from dataclasses import dataclass, field

from vlconvert.captions.lengths import over_context, token_lengths
from vlconvert.errors import VLConvertError
from vlconvert.format import CAPTION_MEMBER, ERRORS, IMAGE_MEMBERS, MANIFEST, METADATA_MEMBER, is_caption_member, is_training_split
from vlconvert.readback.build_folder import listed_shards, manifest_problems, open_build
from vlconvert.readback.stats import frequency_groups
from vlconvert.readback.tar_stream import UnreadableTar, read_samples
from vlconvert.storage import NotARegularFile, bounded_lines, open_regular

MAX_ERRORS_LISTED = 20
MAX_CAPTION_BYTES = 64 << 10


@dataclass
class Sample:
    split: str
    shard: str
    key: str
    captions: dict[str, str]  # member suffix ("txt", "scientific.txt") → caption
    info: dict  # KEY.json
    image: bytes | None = None
    image_ext: str = ""


@dataclass
class SplitRow:
    split: str
    shards: int
    samples: int
    classes_present: int
    bytes: int
    errors: int


@dataclass
class Inspection:
    out: str
    manifest: dict
    rows: list[SplitRow]
    num_classes: int
    templates: list[str]
    frequency_split: str | None = None
    class_counts: list[int] = field(default_factory=list)
    cutoffs: tuple[int, int] | None = None  # (tail below, head from), as `vlconvert zeroshot` cuts them
    groups: dict[str, int] = field(default_factory=dict)
    read_shards: list[str] = field(default_factory=list)  # the shards streamed, as the manifest names them
    shards_total: int = 0
    samples_read: int = 0
    samples: list[Sample] = field(default_factory=list)
    char_lengths: list[int] = field(default_factory=list)
    token_lengths: list[int] | None = None
    tokenizer_note: str = ""
    errors_by_stage: dict[str, int] = field(default_factory=dict)
    errors_total: int = 0
    first_errors: list[dict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # damage found on the way, one line each (validate checks it all)

    @property
    def shards_read(self) -> int:
        return len(self.read_shards)

    @property
    def over_context(self) -> int:
        return over_context(self.token_lengths)


def _count(value) -> int:
    """A count from a manifest that may have been edited: anything but a whole number counts 0 (and is reported)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _counts(values) -> list[int] | None:
    return values if isinstance(values, list) and all(_count(v) == v for v in values) else None


def inspect(out: str, *, samples: int = 5, seed: int = 0, max_shards: int = 20) -> Inspection:
    """What the build in ``out`` holds.  Damage (a truncated shard, a mistyped manifest field) is listed
    in ``problems``, one line each, and the rest is shown; ``vlconvert validate`` checks everything."""
    fs, path, manifest = open_build(out)
    if manifest is None:
        raise VLConvertError(f"{out}: its {MANIFEST} is not valid JSON (run `vlconvert validate {out}`)")
    problems = [f"{MANIFEST}: {what}" for what in manifest_problems(manifest)]
    raw_splits = manifest.get("splits") if isinstance(manifest.get("splits"), dict) else {}
    splits = {s: i for s, i in raw_splits.items() if isinstance(i, dict)}
    for s, info in splits.items():
        shards = info.get("shards") if isinstance(info.get("shards"), list) else []
        info["shards"] = listed_shards(s, shards, lambda where, what: problems.append(f"{where}: {what}"))
    rows = [SplitRow(s, len(i["shards"]), _count(i.get("written")), sum(c > 0 for c in _counts(i.get("class_counts")) or []),
                     sum(_count(sh.get("bytes")) for sh in i["shards"]), _count(i.get("errored")))
            for s, i in splits.items()]
    templates = [f"{t.get('name')} ({'KEY.' + str(t['member']) if 'member' in t else '?'})"
                 for t in manifest.get("templates") if isinstance(t, dict)] if isinstance(manifest.get("templates"), list) else []
    result = Inspection(out, manifest, rows, _count(manifest.get("num_classes")), templates, problems=problems)

    # The training split is what head/tail means for a model; without one, the largest split says most.
    with_counts = [s for s in splits if _counts(splits[s].get("class_counts"))]
    training = [s for s in with_counts if is_training_split(s)]
    counted = training or sorted(with_counts, key=lambda s: -_count(splits[s].get("written")))
    if counted:
        result.frequency_split = counted[0]
        result.class_counts = list(splits[counted[0]]["class_counts"])
        result.cutoffs, result.groups = frequency_groups(result.class_counts)

    captions = _read_shards(fs, path, splits, result, samples, seed, max_shards)
    result.token_lengths, result.tokenizer_note = token_lengths(captions)
    _read_errors(fs, path, manifest, result)
    return result


def _pick_shards(splits: dict, seed: int, max_shards: int) -> list[tuple[str, str]]:
    """A seeded subset, taken round-robin across splits so every split is represented before any gets a second shard."""
    rng = random.Random(f"vlconvert-inspect:{seed}")
    queues = []
    for split, info in splits.items():
        names = [sh["name"] for sh in info.get("shards") or [] if isinstance(sh, dict) and "name" in sh]
        rng.shuffle(names)
        queues.append([(split, n) for n in names])
    picked: list[tuple[str, str]] = []
    while len(picked) < max_shards and any(queues):
        for queue in queues:
            if queue and len(picked) < max_shards:
                picked.append(queue.pop(0))
    return picked


def _read_shards(fs, path: str, splits: dict, result: Inspection, k: int, seed: int, max_shards: int) -> list[str]:
    """Fills the counts and the sample reservoir; returns the KEY.txt captions read, for the tokenizer."""
    captions: list[str] = []
    reservoir: list[tuple[float, int, Sample]] = []  # max-heap on the key: the largest kept key is evicted first
    picked = _pick_shards(splits, seed, max_shards)
    result.shards_total = sum(len(i.get("shards") or []) for i in splits.values())
    rng = random.Random(f"vlconvert-inspect-samples:{seed}")
    listed = {sh["name"]: sh.get("samples") for info in splits.values() for sh in info.get("shards") or []}
    for split, name in picked:
        read_before = result.samples_read
        try:
            with open_regular(fs, posixpath.join(path, name)) as f:
                for sample in _samples(f, split, name):
                    result.samples_read += 1
                    primary = sample.captions.get(CAPTION_MEMBER)
                    if primary is not None:
                        result.char_lengths.append(len(primary))
                        captions.append(primary)
                    # A uniform draw from a stream of unknown length holding only k images: keep the k smallest random
                    # keys.  The n smallest are the same for any k >= n, so -n 5 shows the HTML grid's first five.
                    priority = (rng.random(), result.samples_read)
                    if len(reservoir) < k:
                        heapq.heappush(reservoir, (-priority[0], -priority[1], sample))
                    elif k and priority[0] < -reservoir[0][0]:
                        heapq.heapreplace(reservoir, (-priority[0], -priority[1], sample))
        except FileNotFoundError:
            result.problems.append(f"{name}: missing: listed in manifest.json but not on disk")
            continue
        except (NotARegularFile, IsADirectoryError) as exc:
            result.problems.append(f"{name}: {exc.strerror}; not read")
            continue
        except (UnreadableTar, OSError) as exc:  # OSError: a read that failed on opening
            result.problems.append(f"{name}: unreadable after {result.samples_read - read_before} samples: {exc} "
                                   f"(run `vlconvert validate` for the whole build)")
        else:
            # tarfile ends a stream cut between two members quietly: only the count tells.
            if listed.get(name) != result.samples_read - read_before:
                result.problems.append(f"{name}: {result.samples_read - read_before} samples, the manifest says {listed.get(name)}: "
                                       "truncated or damaged (run `vlconvert validate`)")
        result.read_shards.append(name)
    result.samples = [entry[2] for entry in sorted(reservoir, key=lambda e: (-e[0], -e[1]))]
    return captions


def _samples(f, split: str, shard: str):
    """The shard's samples as inspect shows them: captions, metadata, the image; what no build writes is left out
    (validate reports it)."""
    for read in read_samples(f):
        sample = Sample(split, shard, read.key, {}, {})
        for member, data in read.members:
            if is_caption_member(member):
                # A build writes at most 2,000 characters; a tampered shard's long "captions" are not kept for counting.
                sample.captions[member] = data.decode("utf-8", "replace") if len(data) <= MAX_CAPTION_BYTES else "<too long>"
            elif member == METADATA_MEMBER:
                try:
                    info = json.loads(data)
                except (ValueError, RecursionError):
                    info = {}
                sample.info = info if isinstance(info, dict) else {}
            elif member in IMAGE_MEMBERS:
                sample.image, sample.image_ext = data, member
        yield sample


def _read_errors(fs, path: str, manifest: dict, result: Inspection) -> None:
    errors = manifest.get("errors") if isinstance(manifest.get("errors"), dict) else {}
    by_stage = errors.get("by_stage") if isinstance(errors.get("by_stage"), dict) else {}
    result.errors_by_stage = {str(k): _count(v) for k, v in by_stage.items()}
    result.errors_total = _count(errors.get("count")) or sum(result.errors_by_stage.values())
    try:  # always the build's own errors.jsonl: a manifest's "file" entry is not followed out of OUT
        f = open_regular(fs, posixpath.join(path, ERRORS))
    except FileNotFoundError:
        return
    except (NotARegularFile, IsADirectoryError) as exc:
        result.problems.append(f"{ERRORS}: {exc.strerror}; not read")
        return
    with f:  # only the head: errors.jsonl of a large build can hold millions of lines
        for _, line in bounded_lines(f, 1 << 20):
            if len(result.first_errors) >= MAX_ERRORS_LISTED:
                break
            if line is None:
                result.first_errors.append({"reason": "<a line longer than 1 MB, not read>"})
                continue
            try:
                entry = json.loads(line)
            except (ValueError, RecursionError):
                entry = None
            result.first_errors.append(entry if isinstance(entry, dict) else {"reason": line.decode("utf-8", "replace").strip()})

