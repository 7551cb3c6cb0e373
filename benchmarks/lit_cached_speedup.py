"""Samples/s of LiT training with and without cached image features, on CPU.

ViT-B-16 image tower (random init: speed does not depend on the weights) and
open_clip's standard ViT-B-16 text tower, on the embedded example's shards
(images resized to 224 by the model's transform).  The cache build is timed
separately.  Run from the repository root:

    python benchmarks/lit_cached_speedup.py [--batch-size 16] [--model ViT-B-16]
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

import vlconvert
from vlconvert.lit.train import LitOptions, train


def samples_per_second(run: Path, batch_size: int) -> float:
    """The steady rate: steps 2…n, leaving out the first step's warm-up."""
    lines = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    elapsed = [(i + 1) * batch_size / line["samples_per_second"] for i, line in enumerate(lines)]  # the log is cumulative
    return (len(lines) - 1) * batch_size / (elapsed[-1] - elapsed[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ViT-B-16")
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vlconvert-lit-bench-"))
    shards = work / "shards"
    vlconvert.build("inat2021", "examples/inat2021_mini", str(shards), splits=["train"])
    base = LitOptions(data=str(shards), out="", image_weights="none", model=args.model, epochs=1,
                      batch_size=args.batch_size, warmup=2)
    said = []
    from dataclasses import replace

    started = time.perf_counter()
    train(replace(base, out=str(work / "uncached")), say=said.append)
    uncached_wall = time.perf_counter() - started
    started = time.perf_counter()
    train(replace(base, out=str(work / "cached"), cache_image_features=True), say=said.append)
    cached_wall = time.perf_counter() - started
    cache_line = next(line for line in said if line.startswith("cached image features"))
    uncached = samples_per_second(work / "uncached", args.batch_size)
    cached = samples_per_second(work / "cached", args.batch_size)
    print(f"model {args.model}, batch {args.batch_size}, 120 samples, CPU")
    print(f"uncached: {uncached:.2f} samples/s in steady state (whole run {uncached_wall:.1f} s)")
    print(f"cached:   {cached:.2f} samples/s in steady state (whole run {cached_wall:.1f} s, including the cache build)")
    print(cache_line)
    print(f"speed-up of training steps: {cached / uncached:.1f}x")


if __name__ == "__main__":
    main()
