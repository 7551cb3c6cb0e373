"""Which caption each training sample gives: a member (``txt``, ``scientific.txt``) or, as open_clip's
``--json-text-key`` and ``--json-text-key-probs`` choose it, a top-level key of the sample's ``KEY.json``.

The semantics are open_clip's (``JsonCaptionExtractor``, ``open_clip_train/data.py``): ``--json-text-key``
is a ``;``-separated list of keys; without weights the first key whose value is a non-empty string wins;
with weights (one per key, missing trailing ones 0) each sample draws a priority order, the keys of
positive weight without replacement with probability proportional to weight, then the keys of weight 0 in
order as fallbacks, and the first non-empty string wins.  open_clip draws with the global ``random``;
here each sample draws with its own generator, seeded by (run seed, epoch, sample key), so a run, its
resumption and its cached-features twin see the same captions.

Imports no torch: the command checks these options before it loads the ``lit`` extra.
"""

from __future__ import annotations

import json
import math
import posixpath
import random
from dataclasses import dataclass

import vlconvert.readback.tar_stream as tar_stream
from vlconvert.errors import VLConvertError
from vlconvert.format import CAPTION_MEMBER, METADATA_MEMBER, read_sizes
from vlconvert.storage import filesystem

JSON_CAPTION_PREFIX = "caption_"  # a build writes caption_<template> in KEY.json for every caption it renders
_TEMPLATE_KEY = "caption_template"  # also in KEY.json: the name of the template txt was rendered from


@dataclass(frozen=True)
class CaptionChoice:
    member: str = CAPTION_MEMBER
    keys: tuple[str, ...] = ()  # --json-text-key, split at ';'; empty: read ``member``
    weights: tuple[float, ...] | None = None  # --json-text-key-probs, one per key (padded with 0); None: first non-empty

    def text(self, sample: dict, seed: int, epoch: int) -> tuple[str, str]:
        """(caption, where it came from: the member or the JSON key) of a sample as read_samples gives it."""
        if not self.keys:
            if self.member not in sample:
                raise VLConvertError(f"sample {sample['__key__']} in {sample.get('__url__')} has no {self.member} member; "
                                     "choose one the build wrote with --caption-member")
            return sample[self.member].decode("utf-8"), self.member
        meta = _metadata(sample.get(METADATA_MEMBER), sample["__key__"], sample.get("__url__"))
        for key in self.order(seed, epoch, sample["__key__"]):
            value = meta.get(key)
            if isinstance(value, str) and (caption := value.strip()):
                return caption, key
        raise VLConvertError(f"sample {sample['__key__']} in {sample.get('__url__')}: its {METADATA_MEMBER} has no "
                             f"non-empty text under {', '.join(self.keys)} (--json-text-key)")

    def order(self, seed: int, epoch: int, key: str) -> list[str]:
        """The keys in the order this sample tries them (drawn when there are weights)."""
        if self.weights is None:
            return list(self.keys)
        return weighted_order(self.keys, self.weights, random.Random(f"lit-caption:{seed}:{epoch}:{key}"))


def weighted_order(keys, weights, rng: random.Random) -> list[str]:
    """open_clip's ``_weighted_order`` with a given generator: the positive-weight keys drawn without
    replacement, P ∝ weight, then the zero-weight keys in their order."""
    positive = [[key, weight] for key, weight in zip(keys, weights) if weight > 0]
    order = []
    while positive:
        i = rng.choices(range(len(positive)), weights=[w for _, w in positive], k=1)[0]
        order.append(positive.pop(i)[0])
    order.extend(key for key, weight in zip(keys, weights) if weight <= 0)
    return order


def split_keys(text: str) -> tuple[str, ...]:
    """``"caption_a; caption_b"`` → ``("caption_a", "caption_b")``, as open_clip splits it (blanks dropped)."""
    return tuple(part for key in text.split(";") if (part := key.strip()))


def caption_choice(member: str = CAPTION_MEMBER, json_text_key: str | None = None,
                   json_text_key_probs=None) -> CaptionChoice:
    """The options as a :class:`CaptionChoice`; a one-line VLConvertError for values open_clip would refuse
    or silently misread (more weights than keys, a negative weight, none positive)."""
    if json_text_key is None:
        if json_text_key_probs is not None:
            raise VLConvertError("--json-text-key-probs weighs the keys of --json-text-key; give --json-text-key too")
        return CaptionChoice(member=member)
    if member != CAPTION_MEMBER:
        raise VLConvertError(f"--caption-member {member} and --json-text-key {json_text_key}: give one caption source, not both")
    keys = split_keys(json_text_key)
    if not keys:
        raise VLConvertError(f"--json-text-key {json_text_key!r}: names no key; give top-level keys of the samples' "
                             "JSON separated by ';', e.g. 'caption_scientific;caption_taxonomic_common'")
    if _TEMPLATE_KEY in keys:
        raise VLConvertError(f"--json-text-key {json_text_key}: {_TEMPLATE_KEY} names the template each sample's txt came from, "
                             "it is not a caption; give caption_<template> keys, e.g. 'caption_scientific'")
    twice = sorted({key for key in keys if keys.count(key) > 1})
    if twice:
        raise VLConvertError(f"--json-text-key {json_text_key}: names {', '.join(twice)} more than once")
    if json_text_key_probs is None:
        return CaptionChoice(keys=keys)
    weights = tuple(json_text_key_probs)
    shown = " ".join(f"{w:g}" for w in weights)
    if not weights:
        raise VLConvertError("--json-text-key-probs: give one weight per key of --json-text-key")
    if len(weights) > len(keys):
        raise VLConvertError(f"--json-text-key-probs {shown}: {len(weights)} weights for {len(keys)} keys "
                             f"({';'.join(keys)}); give at most one weight per key")
    if not all(math.isfinite(w) and w >= 0 for w in weights):
        raise VLConvertError(f"--json-text-key-probs {shown}: every weight must be a finite number ≥ 0")
    if not any(w > 0 for w in weights):
        raise VLConvertError(f"--json-text-key-probs {shown}: at least one weight must be positive "
                             "(a key of weight 0 is only a fallback)")
    return CaptionChoice(keys=keys, weights=weights + (0.0,) * (len(keys) - len(weights)))


def parse_weights(text: str | None) -> tuple[float, ...] | None:
    """The command's ``--json-text-key-probs`` words (``"0.5 0.5"``, or ``"0.5,0.5"``) as numbers."""
    if text is None:
        return None
    words = text.replace(",", " ").split()
    try:
        return tuple(float(word) for word in words)
    except ValueError:
        raise VLConvertError(f"--json-text-key-probs {' '.join(words)}: give numbers, one weight per key") from None


def check_keys(data: str, split: str, choice: CaptionChoice) -> None:
    """A one-line VLConvertError when a key of ``--json-text-key`` is not text in the split's first sample's JSON
    (a build gives every sample the same keys).  Quiet when the split cannot be read: training says why."""
    if not choice.keys:
        return
    found = _first_metadata(data, split)
    if found is None:
        return
    meta, where = found
    captions = sorted(k for k, v in meta.items() if isinstance(v, str) and is_caption_key(k))
    others = sorted(k for k, v in meta.items() if isinstance(v, str) and not is_caption_key(k))
    for key in choice.keys:
        if isinstance(meta.get(key), str):
            continue
        what = "no such key" if key not in meta else f"holds {type(meta[key]).__name__}, not text"
        have = (f"its captions: {', '.join(captions)}" if captions else
                f"it has no {JSON_CAPTION_PREFIX}<template> keys (rebuild with this vlconvert, or use --caption-member)")
        raise VLConvertError(f"--json-text-key {key}: {what} in the samples' JSON ({where}); {have}; "
                             f"other text keys: {', '.join(others) or 'none'}")


def is_caption_key(key: str) -> bool:
    """Whether a key of KEY.json holds a rendered caption (``caption_template`` names the template of ``txt``)."""
    return key.startswith(JSON_CAPTION_PREFIX) and key != _TEMPLATE_KEY


def _first_metadata(data: str, split: str) -> tuple[dict, str] | None:
    fs, path = filesystem(data, "BUILD")
    try:
        sizes = read_sizes(fs, posixpath.join(path, split))
    except (OSError, ValueError):  # no sizes.json, or not one
        return None
    for name in sorted(sizes):
        try:
            with fs.open(posixpath.join(path, split, name), "rb") as stream:
                sample = next(iter(tar_stream.read_samples(stream)), None)
        except (OSError, tar_stream.UnreadableTar):
            return None
        if sample is not None:
            where = f"{split}/{name}, sample {sample.key}"
            return _metadata(sample.get(METADATA_MEMBER), sample.key, f"{split}/{name}"), where
    return None


def _metadata(raw: bytes | None, key: str, url: str | None) -> dict:
    if raw is None:
        raise VLConvertError(f"sample {key} in {url} has no {METADATA_MEMBER} member; --json-text-key reads KEY.{METADATA_MEMBER}")
    try:
        meta = json.loads(raw)
    except ValueError:
        meta = None
    if not isinstance(meta, dict):
        raise VLConvertError(f"sample {key} in {url}: its {METADATA_MEMBER} member is not a JSON object; "
                             "`vlconvert validate` checks the build")
    return meta
