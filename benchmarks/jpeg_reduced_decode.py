"""JPEG downscaling: DCT-domain reduced decoding in Pillow and OpenCV against a full decode.

Each method decodes a JPEG and resizes it so its shorter side is 256 (what
``--resize 256`` does), on one thread.  Times are decode plus resize in ms per
image, the best of ``--passes`` passes (the passes interleave the methods, so
load from other processes falls on all of them); encoding costs the same for
all.  Quality is PSNR against the reference, a full Pillow decode resized with
Lanczos: "resized" pools the squared error of the resized pixels over the
corpus (a mean of per-image dB would be infinite once one image comes out
identical), "q95" is the mean per-image PSNR after the JPEG quality-95 encode
the build applies, what a model sees and what benchmarks/img2dataset_comparison.py
reports.

Uses that script's corpus and virtual environment (which has OpenCV).  Run from
the repository root:

    /tmp/venv-bench/bin/python benchmarks/jpeg_reduced_decode.py [--images 2000] [--passes 3] [--webp]

Measured on the 2-core development machine (2,000 JPEGs, half ~500x375 and half
~800x600; Pillow 13.0 with libjpeg-turbo 3.2, OpenCV 4.14; another process was
using some CPU, so read the times relative to each other), best of 3:

    method                         ms/image  PSNR resized  PSNR q95
    pillow full + lanczos (ref)        5.91           inf     39.60
    pillow draft + lanczos             3.80         46.40     39.35
    pillow draft + lanczos, no box     3.75         37.57     37.63
    pillow draft 2x + lanczos          5.64           inf     39.60
    pillow reduce + lanczos            4.25         47.34     39.23
    pillow draft + bicubic             3.14         42.25     38.51
    cv2 full + area                    2.89         40.99     37.76
    cv2 reduced + area                 2.18         35.52     35.86
    cv2 reduced + lanczos4             3.05         35.84     36.26

Only the ~800x600 half can be decoded reduced (at 1/2); the rest is decoded in
full by every method.  Decision: Pillow draft + Lanczos, resizing from the
original's extent within the reduced image (the box ``draft`` returns), as
vlconvert/pipeline/images.py does.  It takes 36 % less time than the reference for
0.25 dB; OpenCV's reduced decode is faster still but 3.1-3.5 dB worse: it ends
in a partial pixel when a side is odd, and cv2.resize, which takes no box,
stretches over it ("no box" shows the same loss for Pillow: 1.7 dB), and
INTER_AREA at a factor under 2 aliases.  Drafting only to twice the target
(as Pillow's thumbnail does) never drafts on these sizes; Pillow's box
``reduce`` before Lanczos is slower and worse than the draft.  cv2 full +
area is img2dataset's path.  Pillow also adds no dependency.

WebP quality 95 by ``method`` (``--webp``, 400 of the resized images):

    method  ms/image  KiB/image  PSNR dB
         0      4.66       31.4    39.63
         1      5.46       30.3    39.63
         2      5.95       29.8    39.56
         3     11.36       29.8    39.79
         4     10.31       29.9    39.79
         5     12.06       29.3    39.69
         6     27.19       28.9    39.75

vlconvert uses 4, libwebp's default (see vlconvert/pipeline/images.py).
"""

from __future__ import annotations

import argparse
import io
import math
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from img2dataset_comparison import make_corpus, psnr  # noqa: E402

SIZE = 256
LANCZOS = Image.Resampling.LANCZOS


def target(width: int, height: int) -> tuple[int, int]:
    scale = SIZE / min(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def pillow(data: bytes, draft: float | None = None, gap: float | None = None, resample=LANCZOS, exact=True) -> np.ndarray:
    """``draft``: ask the decoder for DCT scaling to ``draft`` times the target; ``exact``: resize from
    the original's extent within the reduced image (as vlconvert and Pillow's thumbnail do)."""
    with Image.open(io.BytesIO(data)) as img:
        size = target(*img.size)
        box = None
        if draft is not None:
            drafted = img.draft(None, (math.ceil(size[0] * draft), math.ceil(size[1] * draft)))
            box = drafted[1] if drafted and exact else None
        return np.asarray(img.resize(size, resample, box=box, reducing_gap=gap))


def opencv(data: bytes, reduced: bool, interpolation: int) -> np.ndarray:
    """BGR, as OpenCV decodes (turned into RGB outside the timing, since an OpenCV pipeline would encode BGR).

    A reduced decode of a side not divisible by the factor ends in a partial pixel, which
    cv2.resize stretches over (up to half a reduced pixel at the far edge); it takes no box."""
    with Image.open(io.BytesIO(data)) as img:  # reads the header only: the size, to choose the reduction
        width, height = img.size
    size = target(width, height)
    factor = min(width // size[0], height // size[1])
    flag = cv2.IMREAD_COLOR
    if reduced:
        flag = next((f for n, f in REDUCED if factor >= n), cv2.IMREAD_COLOR)
    return cv2.resize(cv2.imdecode(np.frombuffer(data, np.uint8), flag), size, interpolation=interpolation)


REDUCED = ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4), (2, cv2.IMREAD_REDUCED_COLOR_2))
REFERENCE = "pillow full + lanczos (ref)"
METHODS = {
    REFERENCE: lambda d: pillow(d),
    "pillow draft + lanczos": lambda d: pillow(d, draft=1.0),
    "pillow draft + lanczos, no box": lambda d: pillow(d, draft=1.0, exact=False),
    "pillow draft 2x + lanczos": lambda d: pillow(d, draft=2.0),
    "pillow reduce + lanczos": lambda d: pillow(d, gap=1.0),
    "pillow draft + bicubic": lambda d: pillow(d, draft=1.0, resample=Image.Resampling.BICUBIC),
    "cv2 full + area": lambda d: opencv(d, False, cv2.INTER_AREA),
    "cv2 reduced + area": lambda d: opencv(d, True, cv2.INTER_AREA),
    "cv2 reduced + lanczos4": lambda d: opencv(d, True, cv2.INTER_LANCZOS4),
}


def pooled_psnr(images: list[np.ndarray], references: list[np.ndarray]) -> float:
    """PSNR of the mean squared error over every pixel of every image (a mean of per-image
    dB would be infinite as soon as one image comes out identical)."""
    squared = sum(float(np.sum((a.astype(np.float32) - b.astype(np.float32)) ** 2)) for a, b in zip(images, references))
    mse = squared / sum(a.size for a in images)
    return float("inf") if mse == 0 else 10 * math.log10(255.0**2 / mse)


def q95(pixels: np.ndarray) -> np.ndarray:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", quality=95)
    return np.asarray(Image.open(out).convert("RGB"))


def webp_methods(datas: list[bytes], quality: int) -> None:
    """Encode time, size and PSNR of WebP ``method`` 0…6 on the resized images."""
    images = [Image.fromarray(pillow(d, draft=1.0)) for d in datas]
    print(f"\nWebP quality {quality}, {len(images)} images at shorter side {SIZE}:")
    print(f"{'method':>6} {'ms/image':>9} {'KiB/image':>10} {'PSNR dB':>8}")
    for method in range(7):
        start = time.perf_counter()
        encoded = []
        for img in images:
            out = io.BytesIO()
            img.save(out, format="WEBP", quality=quality, method=method)
            encoded.append(out.getvalue())
        ms = (time.perf_counter() - start) / len(images) * 1000
        quality_db = statistics.fmean(psnr(np.asarray(Image.open(io.BytesIO(e)).convert("RGB")), np.asarray(img))
                                      for e, img in zip(encoded, images))
        print(f"{method:>6} {ms:>9.2f} {statistics.fmean(map(len, encoded)) / 1024:>10.1f} {quality_db:>8.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000, help="corpus size (default 2000)")
    parser.add_argument("--corpus", type=Path, help="corpus folder (default /tmp/vlconvert-bench-corpus-N)")
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--webp", action="store_true", help="also time WebP encoding by method")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    paths = make_corpus(args.corpus or Path(f"/tmp/vlconvert-bench-corpus-{args.images}"), args.images)
    datas = [p.read_bytes() for p in paths]
    times: dict[str, list[float]] = {name: [] for name in METHODS}
    outputs: dict[str, list[np.ndarray]] = {}
    for _ in range(args.passes):
        for name, method in METHODS.items():
            start = time.perf_counter()
            outputs[name] = [method(d) for d in datas]
            times[name].append((time.perf_counter() - start) / len(datas) * 1000)
    for name in METHODS:
        if name.startswith("cv2"):
            outputs[name] = [np.ascontiguousarray(o[..., ::-1]) for o in outputs[name]]
    reference = outputs[REFERENCE]
    print(f"{len(datas)} JPEGs, shorter side -> {SIZE}, one thread, best of {args.passes} passes")
    print(f"{'method':30} {'ms/image':>8} {'PSNR resized':>13} {'PSNR q95':>9}")
    for name in METHODS:
        resized = pooled_psnr(outputs[name], reference)
        encoded = statistics.fmean(psnr(q95(o), r) for o, r in zip(outputs[name], reference))
        print(f"{name:30} {min(times[name]):>8.2f} {resized:>13.2f} {encoded:>9.2f}", flush=True)
    if args.webp:
        webp_methods(datas[:400], 95)


if __name__ == "__main__":
    main()
