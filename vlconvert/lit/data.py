"""Batches from vlconvert shards for LiT training: each rank reads its own shards.

The stream of one rank in one epoch depends only on (seed, epoch, rank), so a
run with cached image features sees exactly the batches the uncached run saw,
and a resumed run the batches an uninterrupted one would have.

A build is read only through :mod:`vlconvert.format` (its manifest and
sizes.json) and :mod:`vlconvert.readback.tar_stream` (its shards).
"""

from __future__ import annotations

import io
import posixpath
import random
from collections.abc import Iterator

import fsspec
import torch
from PIL import Image

import vlconvert.readback.tar_stream as tar_stream
from vlconvert.errors import VLConvertError
from vlconvert.format import IMAGE_MEMBERS, SIZES, read_sizes
from vlconvert.lit.caption_keys import CaptionChoice
from vlconvert.readback.build_folder import build_manifest
from vlconvert.storage import filesystem

_SHUFFLE_BUFFER = 512


def split_shards(data: str, split: str) -> tuple[list[str], int]:
    """The split's shard URLs and its sample count, from its sizes.json."""
    fs, path = filesystem(data, "BUILD")
    try:
        sizes = read_sizes(fs, posixpath.join(path, split))
    except FileNotFoundError:
        raise VLConvertError(f"{data}: no {split}/{SIZES}; BUILD is the --out folder of `vlconvert build`") from None
    urls = [fs.unstrip_protocol(posixpath.join(path, split, name)) for name in sorted(sizes)]
    return urls, sum(sizes.values())


def read_samples(urls: list[str]) -> Iterator[dict]:
    """The samples of the shards at ``urls`` (any URL fsspec opens), in order, as webdataset gives them:
    ``{"__key__": key, "__url__": url, member: bytes, …}``."""
    for url in urls:
        with fsspec.open(url, "rb") as stream:
            try:
                for sample in tar_stream.read_samples(stream):
                    yield {"__key__": sample.key, "__url__": url, **dict(sample.members)}
            except tar_stream.UnreadableTar as exc:
                raise VLConvertError(f"{url}: not a readable shard ({exc}); `vlconvert validate` checks the build") from None


class Batches:
    def __init__(self, urls: list[str], rank: int, seed: int, batch_size: int, captions: CaptionChoice | str,
                 preprocess=None, tokenizer=None):
        self.urls = urls  # this rank's shards
        self.rank, self.seed, self.batch_size = rank, seed, batch_size
        self.captions = captions if isinstance(captions, CaptionChoice) else CaptionChoice(member=captions)
        self.preprocess, self.tokenizer = preprocess, tokenizer

    def epoch(self, epoch: int, steps: int,
              with_images: bool = True) -> Iterator[tuple[list[str], torch.Tensor | None, torch.Tensor, list[str]]]:
        """(keys, images, tokens, where each caption came from: its member or JSON key) per step."""
        samples = self._samples(epoch)
        for _ in range(steps):
            chunk = [next(samples) for _ in range(self.batch_size)]
            keys = [s["__key__"] for s in chunk]
            # Each sample's caption is drawn when its batch is made (seeded by seed, epoch and key): cached image
            # features leave the text side untouched, so mixed captions are drawn afresh every epoch either way.
            captions = [self.captions.text(s, self.seed, epoch) for s in chunk]
            texts = self.tokenizer([text for text, _ in captions])
            images = torch.stack([self.preprocess(sample_image(s)) for s in chunk]) if with_images else None
            yield keys, images, texts, [source for _, source in captions]

    def _samples(self, epoch: int) -> Iterator[dict]:
        """Endless, seeded: the rank's shards in a shuffled order, through a seeded shuffle buffer."""
        rng = random.Random(f"lit:{self.seed}:{epoch}:{self.rank}")
        buffer: list[dict] = []
        while True:
            order = list(self.urls)
            rng.shuffle(order)
            for sample in read_samples(order):
                buffer.append(sample)
                if len(buffer) >= _SHUFFLE_BUFFER:
                    yield buffer.pop(rng.randrange(len(buffer)))
            rng.shuffle(buffer)
            while buffer:
                yield buffer.pop()


def sample_image(sample: dict) -> Image.Image:
    member = next((m for m in IMAGE_MEMBERS if m in sample), None)
    if member is None:
        raise VLConvertError(f"sample {sample['__key__']} has no image member")
    with Image.open(io.BytesIO(sample[member])) as img:
        return img.convert("RGB")


def rank_shards(urls: list[str], rank: int, world: int) -> list[str]:
    if len(urls) < world:
        raise VLConvertError(f"{len(urls)} shards cannot feed {world} processes; rebuild with a smaller --shard-size")
    return urls[rank::world]


def shard_hashes(data: str) -> dict[str, str]:
    """Shard file name → sha256, from the build's manifest (empty when there is none)."""
    _, _, manifest = build_manifest(data, required=False)
    if manifest is None:
        return {}
    return {posixpath.basename(s["name"]): s["sha256"] for split in manifest.get("splits", {}).values() for s in split["shards"]}
