"""Samples/s of vlconvert's tar writer against webdataset's TarWriter and plain tarfile, on the same samples.

Each sample is what a passed-through build writes: a JPEG-sized image (20 kB of random
bytes), a caption, a JSON record and a label.  Every writer writes the same samples to a
file in a temporary folder, best of ``--repeat`` runs; the ratio is to webdataset's.

    python benchmarks/tar_writing.py [--samples 20000] [--repeat 5]

Measured on the 2-core development machine (2026-12-02, webdataset 0.2.86, Python 3.11), see
docs/scale.md.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import tarfile
import tempfile
import time

from vlconvert.pipeline.tar_writer import TarPart


def samples(n: int) -> list[tuple[str, list[tuple[str, bytes]]]]:
    rng = random.Random(0)
    image = rng.randbytes(20_000)
    return [(f"{i:08d}", [("jpg", image), ("txt", b"a photo of Pica hudsonia, the Black-billed Magpie." * 2),
                          ("json", b'{"key": "%08d", "label": 17, "date": "2019-06-01"}' % i), ("cls", b"17")])
            for i in range(n)]


def vlconvert_writer(path: str, data) -> None:
    with TarPart(open(path, "wb"), path) as part:
        for key, members in data:
            part.write(key, members)


def plain_tarfile(path: str, data) -> None:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for key, members in data:
            for member, blob in members:
                info = tarfile.TarInfo(f"{key}.{member}")
                info.size, info.mtime, info.mode = len(blob), 0, 0o444
                tar.addfile(info, io.BytesIO(blob))


def webdataset_writer(path: str, data) -> None:
    import webdataset

    with webdataset.TarWriter(path) as sink:
        for key, members in data:
            sink.write({"__key__": key, **dict(members)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    data = samples(args.samples)
    writers = {"webdataset.TarWriter": webdataset_writer, "tarfile.addfile": plain_tarfile, "vlconvert TarPart": vlconvert_writer}
    best = {name: float("inf") for name in writers}
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(args.repeat):  # interleaved, so a busy moment hurts every writer alike
            for name, write in writers.items():
                path = os.path.join(folder, "out.tar")
                started = time.perf_counter()
                write(path, data)
                best[name] = min(best[name], time.perf_counter() - started)
    reference = args.samples / best["webdataset.TarWriter"]
    print(f"{args.samples} samples of 4 members (~20 kB), best of {args.repeat}")
    print(f"{'writer':24} {'samples/s':>10} {'vs webdataset':>14}")
    for name, seconds in best.items():
        rate = args.samples / seconds
        print(f"{name:24} {rate:>10,.0f} {rate / reference:>13.2f}x")


if __name__ == "__main__":
    main()
