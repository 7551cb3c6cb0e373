"""Cached image features: the locked tower's output for every sample, computed once.

The image tower is frozen and images are not augmented, so its output for a
sample never changes; training with the cache runs the text tower alone.
The cache is one file per shard, keyed by sample key, and remembers what
produced it (model, weights' content hash, the shard's sha256 from the
manifest), so a cache of another model, weights or build is rebuilt rather
than misused.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from vlconvert.lit.data import read_samples, sample_image


def cache_file(run: Path, split: str, shard: str) -> Path:
    """One file per shard: each rank builds and loads only the shards it reads."""
    return run / "image_features" / split / f"{shard}.pt"


def build(model, preprocess, urls: list[str], identity: dict, path: Path, batch_size: int, device) -> float:
    """Encodes every sample once; returns the seconds it took."""
    started = time.perf_counter()
    keys, chunks, pending, pending_keys = [], [], [], []
    model.visual.eval()

    def flush():
        with torch.no_grad():
            images = torch.stack(pending).to(device)
            chunks.append(model.encode_image(images, normalize=True).float().cpu())
        keys.extend(pending_keys)
        pending.clear()
        pending_keys.clear()

    for sample in read_samples(urls):
        pending.append(preprocess(sample_image(sample)))
        pending_keys.append(sample["__key__"])
        if len(pending) == batch_size:
            flush()
    if pending:
        flush()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    torch.save({"identity": identity, "keys": keys, "features": torch.cat(chunks)}, partial)
    partial.replace(path)  # a cache file is either whole or absent
    return time.perf_counter() - started


def load(path: Path, identity: dict) -> tuple[dict[str, int], torch.Tensor] | None:
    """(key → row, features), or None when there is no cache for exactly this identity."""
    if not path.exists():
        return None
    cache = torch.load(path, map_location="cpu", weights_only=False)
    if cache.get("identity") != identity:
        return None
    return {key: row for row, key in enumerate(cache["keys"])}, cache["features"]
