"""Batches from vlconvert shards for LiT training: each rank reads its own shards.

The stream of one rank in one epoch depends only on (seed, epoch, rank), so a
run with cached image features sees exactly the batches the uncached run saw,
and a resumed run the batches an uninterrupted one would have.
"""

from __future__ import annotations

import io
import json
import posixpath
import random
from collections.abc import Iterator

import fsspec
import torch
from PIL import Image
from webdataset.tariterators import group_by_keys, tar_file_expander

from vlconvert.records import VLConvertError
from vlconvert.storage import filesystem

IMAGE_MEMBERS = ("jpg", "png", "webp")
_SHUFFLE_BUFFER = 512


def split_shards(data: str, split: str) -> tuple[list[str], int]:
    """The split's shard URLs and its sample count, from its sizes.json."""
    fs, path = filesystem(data, "--data")
    sizes_path = posixpath.join(path, split, "sizes.json")
    if not fs.exists(sizes_path):
        raise VLConvertError(f"{data}: no {split}/sizes.json; --data is the --out folder of `vlconvert build`")
    with fs.open(sizes_path, "rb") as f:
        sizes = json.load(f)
    protocol = data.split("://", 1)[0] if "://" in data else None
    urls = [posixpath.join(path, split, name) for name in sorted(sizes)]
    if protocol and protocol != "file":
        urls = [f"{protocol}://{u}" for u in urls]
    return urls, sum(sizes.values())


def read_samples(urls: list[str]) -> Iterator[dict]:
    """webdataset's own tar reading and grouping, over streams fsspec opens (any URL it knows)."""
    def streams():
        for url in urls:
            with fsspec.open(url, "rb") as stream:
                yield {"url": url, "stream": stream}

    return group_by_keys(tar_file_expander(streams()))


class Batches:
    def __init__(self, urls: list[str], rank: int, seed: int, batch_size: int, member: str, preprocess=None, tokenizer=None):
        self.urls = urls  # this rank's shards
        self.rank, self.seed, self.batch_size, self.member = rank, seed, batch_size, member
        self.preprocess, self.tokenizer = preprocess, tokenizer

    def epoch(self, epoch: int, steps: int, with_images: bool = True) -> Iterator[tuple[list[str], torch.Tensor | None, torch.Tensor]]:
        samples = self._samples(epoch)
        for _ in range(steps):
            chunk = [next(samples) for _ in range(self.batch_size)]
            keys = [s["__key__"] for s in chunk]
            texts = self.tokenizer([_text(s, self.member) for s in chunk])
            images = torch.stack([self.preprocess(sample_image(s)) for s in chunk]) if with_images else None
            yield keys, images, texts

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


def _text(sample: dict, member: str) -> str:
    if member not in sample:
        raise VLConvertError(f"sample {sample['__key__']} in {sample.get('__url__')} has no {member} member; "
                             "choose one the build wrote with --caption-member")
    return sample[member].decode("utf-8")


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
    fs, path = filesystem(data, "--data")
    try:
        with fs.open(posixpath.join(path, "manifest.json"), "rb") as f:
            manifest = json.load(f)
    except FileNotFoundError:
        return {}
    return {posixpath.basename(s["name"]): s["sha256"] for split in manifest.get("splits", {}).values() for s in split["shards"]}
