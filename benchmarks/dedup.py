"""Deduplication: how well it finds planted near duplicates, and what the hashes cost a build.

Two measurements, one subcommand each, run from the repository root with the project's
virtual environment (the photos bundled with scikit-image and scikit-learn are read as files,
found in this environment, in /tmp/venv-bench (benchmarks/img2dataset_comparison.py's) or in
a ``--photo-dir``):

    .venv/bin/python benchmarks/dedup.py [--json FILE] [--work DIR] accuracy [--species 2000] \
        [--per-transform 30] [--thresholds 4 6 8 10 12 14 16] [--resize 256]
    .venv/bin/python benchmarks/dedup.py [--json FILE] [--work DIR] overhead \
        --baseline-pythonpath /tmp/vlc-base-site [--images 3000] [--rounds 5]

``accuracy``: precision and recall on planted copies.  A photo-like corpus is made once
(``--corpus``, from a fixed seed): distinct "species" images of 400-600 px, part random crops
(scale, position, often one of the 7 flips and turns, colour jitter; two crops of one photo
overlap by at most ``MAX_IOU``) of the 19 real photos bundled with scikit-image, scikit-learn
and matplotlib and of matplotlib's hill-shaded elevation model, part procedural natural-like
scenes (1/f noise fields, a horizon, blurred shapes).  (The embedded example's flat synthetic shapes are no use here: pHash cannot tell
them apart.)  A fifth of them go to ``val``, the rest to ``train``; then, for
``--per-transform`` val images per transformation (each val image at most once), a changed
copy is planted in ``train``: resized (0.5x, 0.75x, 1.5x), re-encoded (JPEG q60, q75, q90),
cropped (2 %, 5 %, 10 % of each side), combinations, and a byte-identical copy.  The
corpus is converted once with ``vlconvert build --adapter imagefolder --resize 256 --workers 2``
(no ``--dedup``: the tables hold the hashes), then ``vlconvert dedup OUT --threshold T
--report R`` runs for each threshold and its report is scored against the truth: recall
(planted copies dropped; "twin ok": matched to the val image they were made from),
precision (dropped training images that are planted copies), recall per transformation,
the pHash distance of each transformation (from the tables), and the false-match rate among
the distinct images (pairs within T over all pairs, and images with a match within T).
Last, ``vlconvert build --dedup`` runs once and must drop exactly what ``vlconvert dedup`` at
the default threshold reports.

``overhead``: build throughput of this tree against the commit before the tables and hashes
(0a42521), on the same images.  Install the old commit beside this one, for this
interpreter, without touching the checkout:

    mkdir /tmp/vlc-base && git archive 0a42521 | tar -x -C /tmp/vlc-base
    .venv/bin/pip install --no-deps --no-build-isolation --target /tmp/vlc-base-site /tmp/vlc-base

and pass ``--baseline-pythonpath /tmp/vlc-base-site`` (each run checks which vlconvert it
imported).  ``--images`` JPEGs of benchmarks/img2dataset_comparison.py's corpus (``--corpus``,
default /tmp/vlconvert-bench-corpus-8000, ``ROOT/<class>/*.jpg``; that script makes it), spread
evenly over it, are hard-linked into a corpus of their own.  Each round runs, in a rotating
order, the old commit, this tree, and this tree with ``--dedup``: ``python -m vlconvert build
--adapter imagefolder --resize 256 --workers 2`` into a fresh folder, a fresh process timed
wall clock from start to exit, with its CPU seconds (user + system, children included), and
the same on ``--startup-images`` (20) of them: the fixed cost, so that "after start-up" is the
rate a large build sees.  Then ``vlconvert dedup OUT`` alone, as a command and as the
in-process search (``find_build_duplicates``), and per image the pieces the tables add
(thumbnail, batched pHash, the two sha256) against ``imagehash.phash``.  Medians and
per-round ratios are printed; the machine is shared, so read ratios, not times.

Measured on the 2-core development machine, 2026-12-02: docs/dedup.md has the tables and the
commands.
"""

from __future__ import annotations

import argparse
import glob
import io
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SEED = 20261202
CORPUS_VERSION = 1  # bump when the generator changes so an old corpus is not reused
CLASSES = 40
MAX_IOU = 0.2  # two crops of one photo overlap by at most this (intersection over union)
VAL_FRACTION = 0.2

# The photos bundled with the libraries (no download); grey ones are tinted.  motorcycle_right is left out: it is the
# other half of a stereo pair, a near duplicate of motorcycle_left.
PHOTOS = ["astronaut.png", "brick.png", "camera.png", "cell.png", "chelsea.png", "clock_motion.png", "coffee.png",
          "coins.png", "grass.png", "gravel.png", "hubble_deep_field.jpg", "ihc.png", "moon.png", "motorcycle_left.png",
          "retina.jpg", "rocket.jpg", "grace_hopper.jpg", "china.jpg", "flower.jpg"]
PHOTO_DIRS = ["{site}/skimage/data", "{site}/sklearn/datasets/images", "{site}/matplotlib/mpl-data/sample_data"]


# ---------------------------------------------------------------- the corpus

def find_photos(extra_dirs: list[str]) -> list[Path]:
    sites = [p for p in sys.path if p.endswith("site-packages")] + glob.glob("/tmp/venv-bench/lib/python3*/site-packages")
    dirs = [Path(d) for d in extra_dirs] + [Path(t.format(site=s)) for s in sites for t in PHOTO_DIRS]
    found: dict[str, Path] = {}
    for d in dirs:
        for name in PHOTOS:
            if name not in found and (d / name).is_file():
                found[name] = d / name
    return [found[n] for n in PHOTOS if n in found]


def load_photo(path: Path, rng) -> Image.Image:
    img = Image.open(path)
    img = img.convert("RGB") if img.mode != "L" else img
    if img.mode == "L":  # a grey photo gets a random tint so that not every crop of it is grey
        grey = np.asarray(img, np.float32)[..., None] / 255
        low, high = rng.uniform(0, 0.35, 3), rng.uniform(0.65, 1, 3)
        img = Image.fromarray(np.uint8(255 * (low + grey * (high - low))))
    return img


def dem_photo() -> Image.Image | None:
    """matplotlib's Jacksboro fault elevation model, hill-shaded and coloured: a terrain photo."""
    try:
        from matplotlib import cbook, colormaps
        from matplotlib.colors import LightSource
    except ImportError:
        return None
    z = cbook.get_sample_data("jacksboro_fault_dem.npz")["elevation"]  # an npz comes back loaded
    rgb = LightSource(azdeg=315, altdeg=45).shade(z, cmap=colormaps["gist_earth"], blend_mode="overlay", vert_exag=0.05)
    return Image.fromarray(np.uint8(255 * rgb[..., :3])).resize((806, 688), Image.Resampling.LANCZOS)


def _iou(a, b) -> float:
    w = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def output_size(rng) -> tuple[int, int]:
    long = int(rng.integers(400, 601))
    short = int(long * rng.uniform(0.66, 1.0))
    return (long, short) if rng.random() < 0.7 else (short, long)


def photo_crops(photos: list[Image.Image], wanted: int, rng) -> list[Image.Image]:
    """Up to ``wanted`` crops, spread over the photos, no two of one photo overlapping by more than MAX_IOU."""
    boxes: list[list[tuple]] = [[] for _ in photos]
    out = []
    for _attempt in range(wanted * 60):
        if len(out) == wanted:
            break
        p = int(rng.integers(len(photos)))
        photo = photos[p]
        size = output_size(rng)
        side = rng.uniform(0.3, 0.75) * min(photo.size)
        w, h = (side, side * size[1] / size[0]) if size[0] >= size[1] else (side * size[0] / size[1], side)
        if w > photo.width or h > photo.height:
            continue
        left, top = rng.uniform(0, photo.width - w), rng.uniform(0, photo.height - h)
        box = (left, top, left + w, top + h)
        if any(_iou(box, b) > MAX_IOU for b in boxes[p]):
            continue
        boxes[p].append(box)
        img = photo.resize(size, Image.Resampling.LANCZOS, box=box)
        if rng.random() < 0.75:  # one of the 7 flips and turns (or none)
            img = img.transpose(Image.Transpose(int(rng.integers(7))))
        gain = rng.uniform(0.8, 1.2, 3) * rng.uniform(0.85, 1.15)
        out.append(Image.fromarray(np.uint8(np.clip(np.asarray(img, np.float32) * gain, 0, 255))))
    return out


def _noise(h: int, w: int, beta: float, rng) -> np.ndarray:
    fy, fx = np.fft.fftfreq(h)[:, None], np.fft.rfftfreq(w)[None, :]
    f = np.sqrt(fx * fx + fy * fy)
    f[0, 0] = 1
    spectrum = (rng.normal(size=f.shape) + 1j * rng.normal(size=f.shape)) / f ** (beta / 2)
    field = np.fft.irfft2(spectrum, s=(h, w))
    return (field - field.mean()) / (field.std() + 1e-9)


def scene(rng) -> Image.Image:
    """A natural-like scene: coloured 1/f noise, often a horizon, and blurred shapes with textures of their own."""
    w, h = output_size(rng)
    base = rng.uniform(40, 200, 3)
    # Power falling as 1/f^2.2 to 1/f^3.4, as in photos of nature; mostly light and shade, a little hue.
    mix = np.vstack([rng.uniform(25, 45) * rng.uniform(0.8, 1.2, 3), rng.normal(0, 12, (2, 3))])
    fields = np.stack([_noise(h, w, rng.uniform(2.2, 3.4), rng) for _ in range(3)], -1)
    pixels = base + fields @ mix
    if rng.random() < 0.6:  # sky above a horizon
        y = int(h * rng.uniform(0.2, 0.7))
        sky = rng.uniform(90, 240, 3) + np.linspace(0, 1, y)[:, None, None] * rng.normal(0, 40, 3)
        pixels[:y] = sky + 12 * fields[:y, :, :1]
    img = Image.fromarray(np.uint8(np.clip(pixels, 0, 255)))
    for _ in range(int(rng.integers(2, 10))):
        layer = Image.new("L", (w, h), 0)
        draw = ImageDraw.Draw(layer)
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.04, 0.3) * min(w, h)
        if rng.random() < 0.5:
            draw.ellipse((cx - r, cy - r * rng.uniform(0.4, 1.2), cx + r, cy + r * rng.uniform(0.4, 1.2)), fill=255)
        else:
            angles = np.sort(rng.uniform(0, 2 * np.pi, int(rng.integers(3, 8))))
            radii = r * rng.uniform(0.5, 1.2, len(angles))
            draw.polygon([(cx + q * np.cos(a), cy + q * np.sin(a)) for a, q in zip(angles, radii)], fill=255)
        mask = layer.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 6)))
        texture = rng.uniform(20, 235, 3) + 25 * _noise(h, w, rng.uniform(2.0, 3.0), rng)[..., None] * rng.uniform(0.3, 1, 3)
        img = Image.composite(Image.fromarray(np.uint8(np.clip(texture, 0, 255))), img, mask)
    return img


def _save(img: Image.Image, quality: int) -> bytes:
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=quality)
    return out.getvalue()


def _crop(img: Image.Image, fraction: float) -> Image.Image:
    dx, dy = round(img.width * fraction), round(img.height * fraction)
    return img.crop((dx, dy, img.width - dx, img.height - dy))


def _resize(img: Image.Image, scale: float) -> Image.Image:
    return img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.LANCZOS)


# Each planted copy is made from the val image's file as written (JPEG q90): decoded, changed, encoded.
TRANSFORMS = {
    "copy (same bytes)": None,
    "resize 0.5x": lambda im: _save(_resize(im, 0.5), 90),
    "resize 0.75x": lambda im: _save(_resize(im, 0.75), 90),
    "resize 1.5x": lambda im: _save(_resize(im, 1.5), 90),
    "JPEG q60": lambda im: _save(im, 60),
    "JPEG q75": lambda im: _save(im, 75),
    "JPEG q90": lambda im: _save(im, 90),
    "crop 2%": lambda im: _save(_crop(im, 0.02), 90),
    "crop 5%": lambda im: _save(_crop(im, 0.05), 90),
    "crop 10%": lambda im: _save(_crop(im, 0.10), 90),
    "resize 0.5x + q60": lambda im: _save(_resize(im, 0.5), 60),
    "crop 2% + resize 0.75x + q70": lambda im: _save(_resize(_crop(im, 0.02), 0.75), 70),
    "crop 5% + resize 1.5x + q80": lambda im: _save(_resize(_crop(im, 0.05), 1.5), 80),
}


def make_corpus(root: Path, species: int, per_transform: int, photo_dirs: list[str]) -> dict:
    """The corpus (made only when ``root`` does not hold this one yet) and its truth: relative path -> facts."""
    stamp = root / ".truth.json"
    wanted = {"species": species, "per_transform": per_transform, "seed": SEED, "version": CORPUS_VERSION}
    if stamp.exists():
        truth = json.loads(stamp.read_text())
        if truth["corpus"] == wanted:
            return truth
    rng = np.random.default_rng(SEED)
    paths = find_photos(photo_dirs)
    photos = [load_photo(p, rng) for p in paths] + [p for p in [dem_photo()] if p is not None]
    print(f"photos: {len(photos)} ({', '.join(p.name for p in paths)}{', jacksboro DEM' if len(photos) > len(paths) else ''})")
    images = [("photo crop", im) for im in photo_crops(photos, species * 2 // 5, rng)]
    images += [("scene", scene(rng)) for _ in range(species - len(images))]
    order = rng.permutation(len(images))
    n_val = round(species * VAL_FRACTION)
    if per_transform * len(TRANSFORMS) > n_val:
        raise SystemExit(f"--per-transform {per_transform} x {len(TRANSFORMS)} transformations needs that many val images; "
                         f"{n_val} are: raise --species")
    shutil.rmtree(root, ignore_errors=True)
    files: dict[str, dict] = {}
    for rank, i in enumerate(order):
        kind, img = images[i]
        split = "val" if rank < n_val else "train"
        rel = f"{split}/species_{int(rng.integers(CLASSES)):02d}/img_{rank:05d}.jpg"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(_save(img, 90))
        files[rel] = {"role": "distinct", "kind": kind}
    val = [rel for rel in files if rel.startswith("val/")]
    chosen = rng.permutation(len(val))[: per_transform * len(TRANSFORMS)]
    for n, j in enumerate(chosen):
        name, transform = list(TRANSFORMS.items())[n % len(TRANSFORMS)]
        original = val[j]
        data = (root / original).read_bytes()
        if transform is not None:
            with Image.open(io.BytesIO(data)) as im:
                data = transform(im.convert("RGB"))
        rel = f"train/{original.split('/')[1]}/copy_{n:05d}.jpg"
        (root / rel).write_bytes(data)
        files[rel] = {"role": "planted", "kind": files[original]["kind"], "transform": name, "of": original}
    truth = {"corpus": wanted, "files": files}
    stamp.write_text(json.dumps(truth))
    return truth


# ---------------------------------------------------------------- runs

def vlconvert(python: str, args: list[str], cwd: Path, pythonpath: str | None = None) -> tuple[float, float]:
    """Runs ``python -m vlconvert ARGS`` in ``cwd`` (not the repository: ``-m`` imports from the working directory
    first); returns (wall seconds, CPU seconds of it and its children)."""
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run([python, "-m", "vlconvert", *args], cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"vlconvert {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def read_column_table(out: Path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    return pa.concat_tables([pq.read_table(p, columns=["split", "source", "phash"]) for p in sorted(out.glob("*/*.parquet"))])


def accuracy(args) -> dict:
    from vlconvert.pipeline.dedup import DEFAULT_THRESHOLD
    from vlconvert.pipeline.near_duplicates import pairs_within, popcount64

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    root = Path(args.corpus or work / f"corpus-{args.species}-{args.per_transform}")
    started = time.perf_counter()
    truth = make_corpus(root, args.species, args.per_transform, args.photo_dir)
    files = truth["files"]
    planted = {rel: f for rel, f in files.items() if f["role"] == "planted"}
    kinds = {k: sum(f["kind"] == k and f["role"] == "distinct" for f in files.values()) for k in ("photo crop", "scene")}
    print(f"corpus {root}: {len(files)} images ({kinds}; {sum(r.startswith('val/') for r in files)} val, "
          f"{len(planted)} planted in train) in {time.perf_counter() - started:.0f} s")
    out = work / "accuracy-build"
    build = ["build", "--adapter", "imagefolder", "--root", str(root.resolve()), "--out", str(out.resolve()),
             "--workers", "2", "--overwrite", *(["--resize", str(args.resize)] if args.resize else [])]
    wall, _ = vlconvert(args.python, build, work)
    print(f"build: {wall:.1f} s ({' '.join(build)})")
    table = read_column_table(out)
    hashes = dict(zip(table.column("source").to_pylist(), table.column("phash").to_pylist()))
    distance = {rel: int(popcount64(np.uint64(int(hashes[rel], 16) ^ int(hashes[f["of"]], 16)))) for rel, f in planted.items()}
    by_transform: dict[str, list[str]] = {}
    for rel, f in planted.items():
        by_transform.setdefault(f["transform"], []).append(rel)
    distinct = [rel for rel, f in files.items() if f["role"] == "distinct"]
    distinct_hashes = np.array([int(hashes[r], 16) for r in distinct], np.uint64)
    n_pairs = len(distinct) * (len(distinct) - 1) // 2
    results = {"corpus": {"root": str(root), "images": len(files), "distinct": kinds, "planted": len(planted),
                          "val": sum(r.startswith("val/") for r in files)}, "build": build, "thresholds": {}}
    for t in args.thresholds:
        report = work / f"duplicates-t{t}.jsonl"
        vlconvert(args.python, ["dedup", str(out.resolve()), "--threshold", str(t), "--report", str(report)], work)
        findings = [json.loads(line) for line in report.read_text().splitlines()]
        dropped = {f["source"]: f for f in findings if f["dropped"]}
        hits = [r for r in dropped if r in planted]
        twin_ok = [r for r in hits if dropped[r]["twin"]["source"] == planted[r]["of"]]
        false = [f for r, f in dropped.items() if r not in planted]
        i, j, pair_d = pairs_within(distinct_hashes, t)
        matched = len(set(i.tolist()) | set(j.tolist()))
        pair_kinds, pairs = {}, []
        for a, b, d in zip(i.tolist(), j.tolist(), pair_d.tolist()):
            key = " / ".join(sorted({files[distinct[a]]["kind"], files[distinct[b]]["kind"]}))
            pair_kinds[key] = pair_kinds.get(key, 0) + 1
            pairs.append([distinct[a], distinct[b], d])
        per_kind = {}
        for kind in kinds:
            copies = [r for r, f in planted.items() if f["kind"] == kind]
            mine = {k for k, r in enumerate(distinct) if files[r]["kind"] == kind}
            per_kind[kind] = {"recall": sum(r in dropped for r in copies) / max(1, len(copies)), "planted": len(copies),
                              "distinct_images_matched": len(mine & (set(i.tolist()) | set(j.tolist()))) / max(1, len(mine))}
        results["thresholds"][t] = {
            "dropped": len(dropped), "planted_dropped": len(hits), "twin_ok": len(twin_ok),
            "recall": len(hits) / len(planted), "precision": len(hits) / len(dropped) if dropped else 1.0,
            "false_drops": {s: sum(f["scope"] == s for f in false) for s in ("across", "within", "external")},
            "val_reported": sum(f["split"] == "val" for f in findings),
            "per_transform": {name: sum(r in dropped for r in rels) / len(rels) for name, rels in by_transform.items()},
            "distinct_pairs": len(i), "distinct_pair_rate": len(i) / n_pairs, "distinct_pairs_by_kind": pair_kinds,
            "distinct_images_matched": matched / len(distinct), "per_kind": per_kind, "distinct_pair_list": pairs,
        }
    results["distances"] = {name: sorted(distance[r] for r in rels) for name, rels in by_transform.items()}
    # The build step must drop what the command reports at the default threshold.
    dd_out = work / "accuracy-build-dedup"
    dd_build = [*build[:6], str(dd_out.resolve()), *build[7:], "--dedup"]
    vlconvert(args.python, dd_build, work)
    step = {json.loads(line)["source"] for line in (dd_out / "duplicates.jsonl").read_text().splitlines()
            if json.loads(line)["dropped"]}
    command = {f["source"] for f in map(json.loads, (work / f"duplicates-t{DEFAULT_THRESHOLD}.jsonl").read_text().splitlines())
               if f["dropped"]} if DEFAULT_THRESHOLD in args.thresholds else None
    manifest = json.loads((dd_out / "manifest.json").read_text())
    results["build_dedup"] = {"dropped": len(step), "same_as_command": step == command if command is not None else None,
                              "manifest_dedup": manifest.get("dedup"),
                              "deduplicated": {s: v.get("deduplicated") for s, v in manifest["splits"].items()}}
    print_accuracy(results, args.thresholds)
    return results


def print_accuracy(results: dict, thresholds: list[int]) -> None:
    c = results["corpus"]
    print(f"\n{c['images']} images: {c['distinct']} distinct ({c['val']} in val), {c['planted']} planted copies in train")
    print(f"{'threshold':>9} {'recall':>7} {'twin ok':>8} {'precision':>9} {'dropped':>8} {'false drops':>12} "
          f"{'val within':>10} {'distinct pairs':>15} {'pair rate':>10} {'imgs w/ match':>13}")
    for t in thresholds:
        r = results["thresholds"][t]
        false = r["false_drops"]
        print(f"{t:>9} {r['recall']:>7.1%} {r['twin_ok']:>8} {r['precision']:>9.1%} {r['dropped']:>8} "
              f"{false['across']:>5}a+{false['within']:>4}w {r['val_reported']:>10} {r['distinct_pairs']:>15} "
              f"{r['distinct_pair_rate']:>10.2e} {r['distinct_images_matched']:>13.2%}")
    print("\nrecall per transformation, and its pHash distance to the original (median / 90th pct / max):")
    names = list(results["distances"])
    print(f"{'transformation':<30}" + "".join(f"{'t=' + str(t):>7}" for t in thresholds) + "   distance")
    for name in names:
        d = results["distances"][name]
        row = "".join(f"{results['thresholds'][t]['per_transform'][name]:>7.0%}" for t in thresholds)
        print(f"{name:<30}{row}   {statistics.median(d):.0f} / {d[int(0.9 * (len(d) - 1))]} / {d[-1]}  (n={len(d)})")
    print("\nby kind of image: recall of its planted copies / distinct images with a false match within T")
    for kind in results["corpus"]["distinct"]:
        cells = [results["thresholds"][t]["per_kind"][kind] for t in thresholds]
        print(f"{kind:<12} ({cells[0]['planted']} planted) " + "  ".join(
            f"t={t}: {c['recall']:.1%} / {c['distinct_images_matched']:.2%}" for t, c in zip(thresholds, cells)))
    print("false pairs among distinct images by kind:",
          {t: results["thresholds"][t]["distinct_pairs_by_kind"] for t in thresholds})
    b = results["build_dedup"]
    print(f"\nbuild --dedup: dropped {b['dropped']}, the same images as `vlconvert dedup` at the default: {b['same_as_command']}; "
          f"deduplicated per split {b['deduplicated']}")


# ---------------------------------------------------------------- overhead

def overhead_corpus(source: Path, images: int, root: Path) -> Path:
    paths = sorted(source.glob("*/*.jpg"))
    if len(paths) < images:
        raise SystemExit(f"{source} holds {len(paths)} JPEGs, fewer than --images {images}; make it with "
                         "benchmarks/img2dataset_comparison.py --images 8000")
    picked = [paths[round(k * len(paths) / images)] for k in range(images)]
    stamp = root / ".subset.json"
    wanted = {"source": str(source), "images": images}
    if stamp.exists() and json.loads(stamp.read_text()) == wanted:
        return root
    shutil.rmtree(root, ignore_errors=True)
    for p in picked:
        (root / p.parent.name).mkdir(parents=True, exist_ok=True)
        try:
            os.link(p, root / p.parent.name / p.name)
        except OSError:
            shutil.copyfile(p, root / p.parent.name / p.name)
    stamp.write_text(json.dumps(wanted))
    return root


def which_vlconvert(python: str, pythonpath: str | None, cwd: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | ({"PYTHONPATH": pythonpath} if pythonpath else {})
    code = ("import vlconvert, vlconvert.adapters, importlib.util as u; "
            "print(vlconvert.__file__, u.find_spec('vlconvert.pipeline.image_hashes') is not None)")
    return subprocess.run([python, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, check=True).stdout.strip()


def hash_cost(paths: list[Path], repeat: int = 5) -> dict:
    """Per image, in ms: what this tree adds to a sample, on real images resized as the build resizes them (shorter
    side 256): the thumbnail (from the numpy pixels, as the OpenCV path passes them), the batched pHash, the sha256 of
    the source file and of the written JPEG; and ``imagehash.phash`` of the same image for comparison."""
    import hashlib

    import imagehash

    from vlconvert.pipeline.image_hashes import phashes, thumbnail

    sources = [p.read_bytes() for p in paths]
    pixels, written = [], []
    for data in sources:
        with Image.open(io.BytesIO(data)) as im:
            im = im.convert("RGB")
            scale = 256 / min(im.size)
            im = im.resize((round(im.width * scale), round(im.height * scale)), Image.Resampling.BICUBIC)
        pixels.append(np.asarray(im))
        written.append(_save(im, 95))
    rows: dict[str, list[float]] = {"imagehash.phash": [], "thumbnail": [], "batched pHash": [], "sha256 source": [],
                                    "sha256 written": []}
    for _ in range(repeat):
        t0 = time.perf_counter()
        for p in pixels:
            imagehash.phash(Image.fromarray(p))
        t1 = time.perf_counter()
        thumbs = np.stack([thumbnail(p) for p in pixels])
        t2 = time.perf_counter()
        phashes(thumbs)
        t3 = time.perf_counter()
        for data in sources:
            hashlib.sha256(data).hexdigest()
        t4 = time.perf_counter()
        for data in written:
            hashlib.sha256(data).hexdigest()
        t5 = time.perf_counter()
        for name, sec in zip(rows, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)):
            rows[name].append(1000 * sec / len(pixels))
    return {name: statistics.median(v) for name, v in rows.items()}


def overhead(args) -> dict:
    from vlconvert.readback.dedup_build import find_build_duplicates

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    corpus = overhead_corpus(Path(args.corpus), args.images, work / f"overhead-corpus-{args.images}").resolve()
    small = overhead_corpus(Path(args.corpus), args.startup_images, work / f"overhead-corpus-{args.startup_images}").resolve()
    base = which_vlconvert(args.python, args.baseline_pythonpath, work)
    this = which_vlconvert(args.python, None, work)
    print(f"baseline: {base}\nthis tree: {this}")
    if base.split()[0] == this.split()[0] or base.endswith("True") or this.endswith("False"):
        raise SystemExit("the baseline and this tree import the same vlconvert, or the wrong one")
    common = ["--adapter", "imagefolder", "--root", str(corpus), "--resize", str(args.resize), "--workers", str(args.workers)]
    common_small = [*common[:3], str(small), *common[4:]]
    variants = {"0a42521 (no tables)": (args.baseline_pythonpath, []), "this tree": (None, []),
                "this tree --dedup": (None, ["--dedup"])}
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    startup: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    names = list(variants)
    for r in range(args.rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            pythonpath, extra = variants[name]
            out = work / f"overhead-out-{names.index(name)}"
            for corpus_args, into in ((common_small, startup), (common, runs)):  # the start-up run, then the whole
                shutil.rmtree(out, ignore_errors=True)
                into[name].append(vlconvert(args.python, ["build", *corpus_args, "--out", str(out), *extra], work, pythonpath))
            print(f"round {r + 1} {name}: {runs[name][-1][0]:.2f} s wall, {runs[name][-1][1]:.2f} s CPU; "
                  f"{args.startup_images} images: {startup[name][-1][0]:.2f} s, {startup[name][-1][1]:.2f} s CPU", flush=True)
    built = work / "overhead-out-1"
    manifest = json.loads((work / "overhead-out-2" / "manifest.json").read_text())
    dedup_runs = [vlconvert(args.python, ["dedup", str(built)], work)[0] for _ in range(args.rounds)]
    search = []
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        found = find_build_duplicates(str(built))
        search.append(time.perf_counter() - t0)
    result = {"images": args.images, "corpus": str(corpus), "command": ["build", *common], "runs": runs,
              "startup_images": args.startup_images, "startup_runs": startup,
              "dedup_command_s": dedup_runs, "dedup_search_s": search, "dedup_found": found.counts(),
              "build_dedup_deduplicated": manifest["splits"]["train"].get("deduplicated"),
              "hash_ms_per_image": hash_cost(sorted(corpus.glob("*/*.jpg"))[:200])}
    print_overhead(result, names)
    return result


def print_overhead(result: dict, names: list[str]) -> None:
    n = result["images"]
    runs = result["runs"]
    print(f"\n{n} JPEGs, {' '.join(result['command'])}, {len(runs[names[0]])} interleaved rounds")
    k, first = result["startup_images"], result["startup_runs"]
    print(f"{'build':<22} {'median s':>9} {'img/s (median)':>15} {'best img/s':>11} {'CPU s (median)':>15} "
          f"{f'{k} images s / CPU s':>20} {'img/s after':>12} {'CPU ms/img after':>17}")
    for name in names:
        walls, cpus = [w for w, _ in runs[name]], [c for _, c in runs[name]]
        w0, c0 = statistics.median([w for w, _ in first[name]]), statistics.median([c for _, c in first[name]])
        after = (n - k) / statistics.median([a - b for (a, _), (b, _) in zip(runs[name], first[name])])
        cpu_after = 1000 * statistics.median([a - b for (_, a), (_, b) in zip(runs[name], first[name])]) / (n - k)
        print(f"{name:<22} {statistics.median(walls):>9.2f} {n / statistics.median(walls):>15.0f} {n / min(walls):>11.0f} "
              f"{statistics.median(cpus):>15.2f} {f'{w0:.2f} / {c0:.2f}':>20} {after:>12.0f} {cpu_after:>17.3f}")
    base = runs[names[0]]
    for name in names[1:]:
        per_round = [w / b for (w, _), (b, _) in zip(runs[name], base)]
        cpu_round = [c / b for (_, c), (_, b) in zip(runs[name], base)]
        print(f"{name} / {names[0]}: time {statistics.median([w for w, _ in runs[name]]) / statistics.median([w for w, _ in base]):.3f}x "
              f"(medians), per round {', '.join(f'{x:.3f}' for x in per_round)} (median {statistics.median(per_round):.3f}x); "
              f"CPU per round median {statistics.median(cpu_round):.3f}x")
    dd = [a - b for (a, _), (b, _) in zip(runs[names[2]], runs[names[1]])]
    print(f"--dedup step: {statistics.median(dd):+.2f} s per build (median of per-round differences "
          f"{', '.join(f'{x:+.2f}' for x in dd)}); dropped {result['build_dedup_deduplicated']}")
    print(f"vlconvert dedup OUT (command, start-up included): median {statistics.median(result['dedup_command_s']):.2f} s; "
          f"search in process (find_build_duplicates): median {statistics.median(result['dedup_search_s']):.3f} s; "
          f"found {result['dedup_found']}")
    print("per image, ms (median of 5 passes over 200 of the images, shorter side 256):",
          {k: round(v, 3) for k, v in result["hash_ms_per_image"].items()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", default="/tmp/vlconvert-dedup-bench", help="scratch folder: corpora and builds")
    parser.add_argument("--python", default=sys.executable, help="the Python whose vlconvert runs (default: this one)")
    parser.add_argument("--json", help="also write the figures here")
    sub = parser.add_subparsers(dest="what", required=True)
    acc = sub.add_parser("accuracy", help="precision and recall on planted near duplicates")
    acc.add_argument("--species", type=int, default=2000, help="distinct images (a fifth in val)")
    acc.add_argument("--per-transform", type=int, default=30, help="planted copies per transformation")
    acc.add_argument("--thresholds", type=int, nargs="+", default=[4, 6, 8, 10, 12, 14, 16])
    acc.add_argument("--resize", type=int, default=256, help="the build's --resize (0: images pass through)")
    acc.add_argument("--corpus", help="where the corpus is made (default: WORK/corpus-SPECIES-PER_TRANSFORM)")
    acc.add_argument("--photo-dir", action="append", default=[], help="another folder to look for the photos in")
    ove = sub.add_parser("overhead", help="build throughput against the commit before the tables and hashes")
    ove.add_argument("--baseline-pythonpath", required=True, help="where the old commit is installed (pip --target)")
    ove.add_argument("--corpus", default="/tmp/vlconvert-bench-corpus-8000")
    ove.add_argument("--images", type=int, default=3000)
    ove.add_argument("--rounds", type=int, default=5)
    ove.add_argument("--resize", type=int, default=256)
    ove.add_argument("--workers", type=int, default=2)
    ove.add_argument("--startup-images", type=int, default=20, help="also timed each round: the fixed cost (start-up)")
    args = parser.parse_args()
    result = accuracy(args) if args.what == "accuracy" else overhead(args)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1, default=str))


if __name__ == "__main__":
    main()
