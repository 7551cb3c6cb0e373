"""JPEG downscaling: DCT-domain reduced decoding in Pillow and OpenCV against a full decode.

Each method decodes a JPEG and resizes it so its shorter side is 256 (the
target of ``--resize 256``), on one thread.  Quality is PSNR against the
reference, a full Pillow decode resized with Lanczos: of the resized pixels
("resized"), and after the JPEG quality-95 encode the build applies ("q95"),
which is what a model sees.  Times are the best of ``--passes`` passes (the
passes interleave the methods, so load from other processes falls on all of
them), decode plus resize, in ms per image; encoding costs the same for all.

Uses the corpus of benchmarks/img2dataset_comparison.py (same virtual
environment, which has OpenCV).  Run from the repository root:

    /tmp/venv-bench/bin/python benchmarks/jpeg_reduced_decode.py [--images 2000] [--passes 3]

Measured on the 2-core development machine (2,000 JPEGs, half ~500x375 and half
~800x600; Pillow 13.0 with libjpeg-turbo 3.2, OpenCV 4.14), best of 3:

    method                       ms/image  PSNR resized  PSNR q95
    pillow full + lanczos (ref)      4.15           inf     38.36
    pillow full + lanczos gap 2      4.15           inf     38.36
    pillow draft + lanczos           3.41         44.94     38.23
    pillow draft 2x + lanczos        4.15           inf     38.36
    pillow draft + bicubic           2.87         42.91     38.08
    cv2 full + area                  3.02         41.36     37.89
    cv2 reduced + area               2.21         39.09     37.33
    cv2 reduced + lanczos4           2.61         39.62     37.54

(filled in from the run recorded in the report; see the printed table for the
current machine).

Decision: Pillow draft + Lanczos.  OpenCV's reduced decode is faster but
0.9 dB worse after encoding (its DCT-scaled image is then area-averaged or
sampled with a fixed-width Lanczos kernel that does not widen when
downscaling), well outside the 0.2 dB allowed; Pillow's draft costs 0.13 dB
for 18 % less time, and needs no new dependency.  A second ``reducing_gap``
step changes nothing on these sizes (after the draft the remaining scale is
above 1/2).  WebP encode speed by ``method`` is printed with ``--webp``.
"""

from __future__ import annotations

import argparse
import io
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


def pillow(data: bytes, draft: float | None = None, gap: float | None = None, resample=LANCZOS) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        size = target(*img.size)
        if draft is not None:
            img.draft(None, (round(size[0] * draft), round(size[1] * draft)))
        return np.asarray(img.resize(size, resample, reducing_gap=gap))


def opencv(data: bytes, reduced: bool, interpolation: int) -> np.ndarray:
    """BGR, as OpenCV decodes (turned into RGB outside the timing, since an OpenCV pipeline would encode BGR)."""
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
    "pillow full + lanczos gap 2": lambda d: pillow(d, gap=2.0),
    "pillow draft + lanczos": lambda d: pillow(d, draft=1.0),
    "pillow draft + lanczos gap 2": lambda d: pillow(d, draft=1.0, gap=2.0),
    "pillow draft 2x + lanczos": lambda d: pillow(d, draft=2.0),
    "pillow draft + bicubic": lambda d: pillow(d, draft=1.0, resample=Image.Resampling.BICUBIC),
    "cv2 full + area": lambda d: opencv(d, False, cv2.INTER_AREA),
    "cv2 reduced + area": lambda d: opencv(d, True, cv2.INTER_AREA),
    "cv2 reduced + lanczos4": lambda d: opencv(d, True, cv2.INTER_LANCZOS4),
}


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
        resized = statistics.fmean(psnr(o, r) for o, r in zip(outputs[name], reference))
        encoded = statistics.fmean(psnr(q95(o), r) for o, r in zip(outputs[name], reference))
        print(f"{name:30} {min(times[name]):>8.2f} {resized:>13.2f} {encoded:>9.2f}", flush=True)
    if args.webp:
        webp_methods(datas[:400], 95)


if __name__ == "__main__":
    main()
