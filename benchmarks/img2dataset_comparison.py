"""Images/s and resize quality of vlconvert against img2dataset on the same local JPEGs.

Set up its virtual environment (img2dataset pins albumentations 1.x; the others
are for the corpus and for benchmarks/jpeg_reduced_decode.py):

    python3 -m venv /tmp/venv-bench
    NO_ALBUMENTATIONS_UPDATE=1 /tmp/venv-bench/bin/pip install img2dataset scikit-image scikit-learn \
        opencv-python-headless -e /work/main

Run from the repository root:

    /tmp/venv-bench/bin/python benchmarks/img2dataset_comparison.py [--images 2000] [--repeat 2] [--json FILE] \
        [--vlconvert-python PY] [--baseline-python OLD_PY] [--codecs opencv pillow] [--ray]

The corpus (``--corpus``, default /tmp/vlconvert-bench-corpus-N) is made once
and reused: half about 500x375, half about 800x600 (a quarter of them
portrait), random crops with flips and scale jitter of the colour photos
scikit-image and scikit-learn ship (crops smaller than the output are
enlarged with Lanczos), JPEG quality 90, from a fixed seed.  It is laid out as
``ROOT/<class>/<name>.jpg`` (20 classes), which vlconvert's imagefolder
adapter reads as one train split; img2dataset reads the same files from a list
of ``file://`` URLs.

Both tools write webdataset shards of 1,000 samples with 2 processes, resize so
the shorter side is 256 (never enlarging) and encode JPEG quality 95.
img2dataset runs with its defaults otherwise (``keep_ratio`` = shorter side to
``image_size``, INTER_AREA downscaling, sha256 and EXIF extraction per image).
Each run is a fresh subprocess, timed wall clock from start to exit, imports
included.  Each tool is also run on the first 20 images: that time is its
fixed cost (imports, starting processes), and "img/s after" is the rate on the
rest of the corpus, what a large build sees.  PSNR compares every written
image with the original decoded in full by Pillow and resized with Lanczos to
the same size.  It also reports the mean bytes of a written image and each tool's codec
path (its decoding, resizing and encoding libraries, with versions).

vlconvert runs once per ``--codecs`` value (default ``opencv pillow``: its two
``--image-codec`` paths; the first is the one compared with img2dataset and the
one run with one worker too), and with ``--ray`` once more on a local Ray
instance with the same workers.  Each row's codec path is read from the
build's own manifest.  ``--vlconvert-python`` names the Python whose vlconvert
runs (it needs ``vlconvert[fast]`` for OpenCV's path, ``[ray]`` for Ray).

Measured on the 2-core development machine, 2026-12-02 (the last of four such
runs that day; the three before it, on earlier code, gave 2.09x, 1.99x and
1.98x after start-up: docs/scale.md):

    $ /tmp/venv-bench/bin/python benchmarks/img2dataset_comparison.py --images 8000 --repeat 3 --ray \
          --vlconvert-python .venv/bin/python
    8000 JPEGs, shorter side -> 256, JPEG q95, 2 processes, 2 CPUs, best/median of 3
    tool                                 images best img/s median img/s start-up s img/s after  PSNR dB bytes/img
    img2dataset (thread_count=256)         8000      398.0        382.3       2.91       464.2    37.78    36,151
    img2dataset (thread_count=4)           8000      400.3        398.9       2.89       466.8    37.78    36,151
    vlconvert opencv (--workers 2)         8000      916.0        893.8       0.71       994.6    38.43    38,565
    vlconvert opencv (--workers 1)         8000      497.7        496.7       0.45       510.7    38.43    38,565
    vlconvert pillow (--workers 2)         8000      445.8        438.9       0.77       464.7    39.36    37,749
    vlconvert opencv (Ray, 2 workers)      8000      622.6        588.5       4.95      1009.8    38.43    38,565
      img2dataset (…): OpenCV 4.14.0: cv2.imdecode, INTER_AREA, cv2.imencode
      vlconvert opencv (…): opencv: libjpeg-turbo (simplejpeg) decode at M/8 scale, OpenCV bicubic at the exact
          scale, simplejpeg (libjpeg-turbo) encode; a JPEG still over 4/3 the target after 1/8 (or 2/8, 3/8) takes
          Pillow's path (pillow 13.0.0, simplejpeg 1.9.0, opencv 5.1.0.95)
      vlconvert pillow (…): pillow: libjpeg-turbo (simplejpeg) decode at 1/1, 1/2, 1/4 or 1/8 scale, Pillow
          Lanczos, Pillow (libjpeg-turbo) encode (pillow 13.0.0, simplejpeg 1.9.0)
    vlconvert pillow (--workers 2) / vlconvert opencv (--workers 2), after start-up: 0.47x
    vlconvert opencv (Ray, 2 workers) / vlconvert opencv (--workers 2), after start-up: 1.02x
    vlconvert opencv (--workers 2) / best img2dataset: 2.29x (best), 2.24x (median), 2.13x after start-up; PSNR +0.65 dB
    vlconvert 2 workers / 1 worker: 1.84x

Both tools spend most of their time in libjpeg-turbo: the decode of the whole
entropy-coded file is the floor.  img2dataset decodes at full size and
resizes with INTER_AREA; vlconvert's OpenCV path decodes at the smallest M/8
scale no smaller than the target and leaves OpenCV's bicubic little to do;
Pillow's path (Lanczos) is 0.9 dB sharper still and half as fast.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = 20
SEED = 20240601
CORPUS_VERSION = 1  # bump when the generator changes so an old corpus is not reused


# ---------------------------------------------------------------- corpus

def _sources() -> list[np.ndarray]:
    """Colour photos bundled with scikit-image and scikit-learn (no download)."""
    from skimage import data
    from sklearn.datasets import load_sample_images

    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket(), data.hubble_deep_field(),
              data.immunohistochemistry(), data.retina()]
    left, right, _ = data.stereo_motorcycle()
    photos += [left, right, *load_sample_images().images]
    return [np.ascontiguousarray(p[..., :3]) for p in photos]


_SOURCES: list[Image.Image] = []


def _init_sources() -> None:
    _SOURCES[:] = [Image.fromarray(p) for p in _sources()]


def _make_image(job: tuple[int, int, str]) -> None:
    index, seed, path = job
    rng = np.random.default_rng([seed, index])
    width, height = (500, 375) if index % 2 == 0 else (800, 600)
    width, height = round(width * rng.uniform(0.95, 1.05)), round(height * rng.uniform(0.95, 1.05))
    if rng.random() < 0.25:
        width, height = height, width
    source = _SOURCES[int(rng.integers(len(_SOURCES)))]
    # The crop covers `scale` source pixels per output pixel: below 1 it is enlarged
    # (the source is smaller than the output), above 1 reduced; jitter ±30 %.
    fits = min(source.width / width, source.height / height)
    scale = rng.uniform(0.7, 1.0) * min(fits, 1.5)
    crop_w, crop_h = min(source.width, round(width * scale)), min(source.height, round(height * scale))
    left = int(rng.integers(source.width - crop_w + 1))
    top = int(rng.integers(source.height - crop_h + 1))
    img = source.crop((left, top, left + crop_w, top + crop_h)).resize((width, height), Image.Resampling.LANCZOS)
    if rng.random() < 0.5:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    img.save(path, format="JPEG", quality=90)


def make_corpus(root: Path, count: int, seed: int = SEED, workers: int = 2) -> list[Path]:
    """The corpus's files, sorted; made (deterministically) only if ``root`` does not hold it yet."""
    stamp = root / ".corpus.json"
    wanted = {"count": count, "seed": seed, "version": CORPUS_VERSION}
    paths = [root / f"class_{i % CLASSES:02d}" / f"img_{i:06d}.jpg" for i in range(count)]
    if stamp.exists() and json.loads(stamp.read_text()) == wanted:
        return sorted(paths)
    shutil.rmtree(root, ignore_errors=True)
    for c in range(CLASSES):
        (root / f"class_{c:02d}").mkdir(parents=True)
    with ProcessPoolExecutor(workers, initializer=_init_sources) as pool:
        list(pool.map(_make_image, [(i, seed, str(p)) for i, p in enumerate(paths)], chunksize=32))
    stamp.write_text(json.dumps(wanted))
    return sorted(paths)


# ---------------------------------------------------------------- runs

STARTUP_IMAGES = 20


def startup_corpus(paths: list[Path], root: Path) -> tuple[Path, list[Path]]:
    """The first STARTUP_IMAGES files of the corpus, linked into a corpus of their own."""
    shutil.rmtree(root, ignore_errors=True)
    small = []
    for path in paths[:STARTUP_IMAGES]:
        link = root / path.parent.name / path.name
        link.parent.mkdir(parents=True, exist_ok=True)
        os.link(path, link)
        small.append(link)
    return root, small

def run_img2dataset(paths: list[Path], out: Path, threads: int, shard_size: int, processes: int) -> float:
    url_list = out.parent / f"{out.name}-urls.txt"
    url_list.write_text("".join(f"file://{p}\n" for p in paths))
    shutil.rmtree(out, ignore_errors=True)
    call = (
        "from img2dataset import download\n"
        f"download(url_list={str(url_list)!r}, input_format='txt', output_folder={str(out)!r}, output_format='webdataset',"
        f" image_size=256, resize_mode='keep_ratio', resize_only_if_bigger=True, encode_quality=95, encode_format='jpg',"
        f" processes_count={processes}, thread_count={threads}, number_sample_per_shard={shard_size},"
        " distributor='multiprocessing', disable_all_reencoding=False, enable_wandb=False)\n"
    )
    env = dict(os.environ, NO_ALBUMENTATIONS_UPDATE="1", WANDB_MODE="disabled")
    start = time.perf_counter()
    # cwd: `python -c` imports from it first, and a stray folder (say /tmp/ray) would shadow a package
    subprocess.run([sys.executable, "-c", call], env=env, cwd=out.parent, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def run_vlconvert(corpus: Path, out: Path, workers: int, shard_size: int, python: str = sys.executable,
                  codec: str | None = None, executor: str = "local") -> float:
    command = [python, "-m", "vlconvert", "build", "--adapter", "imagefolder", "--root", str(corpus), "--out", str(out),
               "--resize", "256", "--resize-mode", "shorter", "--quality", "95", "--workers", str(workers),
               "--shard-size", str(shard_size), "--overwrite", "--executor", executor]
    command += ["--image-codec", codec] if codec else []
    start = time.perf_counter()
    # cwd: `python -m vlconvert` imports from it first, so run in the repository it would be this checkout's
    # vlconvert whatever --vlconvert-python / --baseline-python says.
    result = subprocess.run(command, capture_output=True, text=True, cwd=out.parent)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"vlconvert failed ({result.returncode}): {result.stderr.strip()[-2000:]}")
    return elapsed


# ---------------------------------------------------------------- outputs and quality

def img2dataset_images(out: Path) -> dict[str, bytes]:
    """Original file path → written JPEG."""
    images = {}
    for shard in sorted(out.glob("*.tar")):
        with tarfile.open(shard) as tar:
            members = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}
        for name, data in members.items():
            if name.endswith(".jpg"):
                meta = json.loads(members[name[:-4] + ".json"])
                images[meta["url"].removeprefix("file://")] = data
    return images


def vlconvert_images(out: Path, corpus: Path) -> dict[str, bytes]:
    images = {}
    for shard in sorted((out / "train").glob("*.tar")):
        with tarfile.open(shard) as tar:
            members = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}
        for name, data in members.items():
            if name.endswith(".jpg"):
                source = json.loads(members[name[:-4] + ".json"])["source"]
                images[str(corpus / source) if not os.path.isabs(source) else source] = data
    return images


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def _psnr_one(item: tuple[str, bytes]) -> float:
    path, data = item
    with Image.open(io.BytesIO(data)) as written:
        out = np.asarray(written.convert("RGB"))
    with Image.open(path) as original:
        reference = original.convert("RGB").resize((out.shape[1], out.shape[0]), Image.Resampling.LANCZOS)
    return psnr(out, np.asarray(reference))


def mean_psnr(images: dict[str, bytes], workers: int) -> float:
    with ProcessPoolExecutor(workers) as pool:
        return statistics.fmean(pool.map(_psnr_one, sorted(images.items()), chunksize=64))


# ---------------------------------------------------------------- main

def codec_path(kind: str, out: Path) -> str:
    """The libraries that decode, resize and encode, with versions: the figures hold for these."""
    if kind == "img2dataset":
        result = subprocess.run([sys.executable, "-c", "import cv2; print(cv2.__version__)"], capture_output=True, text=True, cwd="/")
        return f"OpenCV {result.stdout.strip()}: cv2.imdecode, INTER_AREA, cv2.imencode"
    manifest = json.loads((out / "manifest.json").read_text())["image"]
    if "codec_path" not in manifest:  # a vlconvert from before --image-codec
        return "Pillow's path (a vlconvert before --image-codec)"
    versions = ", ".join(f"{name} {version}" for name, version in manifest["codec_libraries"].items())
    return f"{manifest['codec']}: {manifest['codec_path']} ({versions})"


def _rates(count: int, seconds: list[float]) -> dict:
    return {"seconds": [round(s, 3) for s in seconds], "best_images_per_s": round(count / min(seconds), 1),
            "median_images_per_s": round(count / statistics.median(seconds), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000, help="corpus size (default 2000)")
    parser.add_argument("--corpus", type=Path, help="corpus folder (default /tmp/vlconvert-bench-corpus-N)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/vlconvert-bench-out"), help="where outputs go")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each tool (default 2)")
    parser.add_argument("--threads", type=int, nargs="+", default=[256, 4],
                        help="img2dataset thread_count values to try (default: its default 256, and 4)")
    parser.add_argument("--processes", type=int, default=2, help="img2dataset processes / vlconvert workers (default 2)")
    parser.add_argument("--shard-size", type=int, default=1000)
    parser.add_argument("--no-scaling", action="store_true", help="skip the vlconvert --workers 1 run")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--vlconvert-python", default=sys.executable,
                        help="the Python whose vlconvert is measured (default: this one)")
    parser.add_argument("--baseline-python", help="also measure the vlconvert installed for this Python (an earlier "
                        "version, say), in the same rounds, and report the ratio of the two")
    parser.add_argument("--codecs", nargs="+", default=["opencv", "pillow"],
                        help="vlconvert's --image-codec values to run (default: opencv pillow); the first is the one compared")
    parser.add_argument("--ray", action="store_true", help="also run the build on a local Ray instance with the same workers "
                        "(needs vlconvert[ray] for --vlconvert-python)")
    args = parser.parse_args()
    corpus = args.corpus or Path(f"/tmp/vlconvert-bench-corpus-{args.images}")
    args.work.mkdir(parents=True, exist_ok=True)

    start = time.perf_counter()
    paths = make_corpus(corpus, args.images)
    print(f"corpus: {len(paths)} JPEGs in {corpus} ({time.perf_counter() - start:.1f} s)", flush=True)

    # Each round runs every configuration once, so load from other processes on the
    # machine falls on all of them alike; the best of the rounds is the least disturbed.
    # A run on STARTUP_IMAGES images measures each tool's fixed cost (imports, process
    # start-up), so the rate after start-up, what a large build sees, can be told apart.
    small_root, small_paths = startup_corpus(paths, args.work / "startup-corpus")
    worker_counts = [args.processes] if args.no_scaling or args.processes == 1 else [args.processes, 1]
    first = args.codecs[0]
    configs = [(f"img2dataset (thread_count={t})", "img2dataset", {"threads": t}) for t in args.threads]
    configs += [(f"vlconvert {codec} (--workers {w})", "vlconvert", {"workers": w, "codec": codec})
                for codec in args.codecs for w in (worker_counts if codec == first else [args.processes])]
    if args.ray:
        configs.append((f"vlconvert {first} (Ray, {args.processes} workers)", "vlconvert",
                        {"workers": args.processes, "codec": first, "executor": "ray"}))
    if args.baseline_python:
        configs.append((f"vlconvert baseline (--workers {args.processes})", "baseline", {"workers": args.processes}))

    def output(name: str, small: bool = False) -> Path:
        return args.work / (re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") + ("-startup" if small else ""))

    def run(name: str, kind: str, param: dict, small: bool) -> float:
        out = output(name, small)
        if kind == "img2dataset":
            return run_img2dataset(small_paths if small else paths, out, param["threads"], args.shard_size, args.processes)
        python = args.baseline_python if kind == "baseline" else args.vlconvert_python
        return run_vlconvert(small_root if small else corpus, out, param["workers"], args.shard_size, python,
                             param.get("codec"), param.get("executor", "local"))

    seconds: dict[str, list[float]] = {name: [] for name, _, _ in configs}
    startup: dict[str, list[float]] = {name: [] for name, _, _ in configs}
    for round_ in range(args.repeat):
        for name, kind, param in configs:
            load = os.getloadavg()[0]
            seconds[name].append(run(name, kind, param, small=False))
            startup[name].append(run(name, kind, param, small=True))
            print(f"round {round_ + 1}: {name}: {seconds[name][-1]:.2f} s, {len(small_paths)} images "
                  f"{startup[name][-1]:.2f} s (load average before: {load:.2f})", flush=True)
    results: dict[str, dict] = {}
    for name, kind, param in configs:
        out = output(name)
        images = img2dataset_images(out) if kind == "img2dataset" else vlconvert_images(out, corpus)
        fixed = min(startup[name])
        results[name] = {**_rates(len(images), seconds[name]), "images": len(images),
                         "startup_seconds": round(fixed, 2),
                         "images_per_s_after_startup": round((len(paths) - len(small_paths)) / (min(seconds[name]) - fixed), 1),
                         "psnr_db": round(mean_psnr(images, args.processes), 2),
                         "bytes_per_image": round(statistics.fmean(len(data) for data in images.values())),
                         "codec": codec_path(kind, out)}

    i2d_key = max((k for k in results if k.startswith("img2dataset")), key=lambda k: results[k]["best_images_per_s"])
    vl_key = f"vlconvert {first} (--workers {args.processes})"
    i2d, vl = results[i2d_key], results[vl_key]
    summary = {
        "speedup_best": round(vl["best_images_per_s"] / i2d["best_images_per_s"], 2),
        "speedup_median": round(vl["median_images_per_s"] / i2d["median_images_per_s"], 2),
        "speedup_after_startup": round(vl["images_per_s_after_startup"] / i2d["images_per_s_after_startup"], 2),
        "psnr_difference_db": round(vl["psnr_db"] - i2d["psnr_db"], 2),
        "against": i2d_key,
    }
    if args.baseline_python:
        base = results[f"vlconvert baseline (--workers {args.processes})"]
        summary["vs_baseline_best"] = round(vl["best_images_per_s"] / base["best_images_per_s"], 3)
        summary["vs_baseline_median"] = round(vl["median_images_per_s"] / base["median_images_per_s"], 3)
        summary["baseline_speedup_best"] = round(base["best_images_per_s"] / i2d["best_images_per_s"], 2)
        summary["baseline_speedup_median"] = round(base["median_images_per_s"] / i2d["median_images_per_s"], 2)
    if len(worker_counts) == 2:
        summary["vlconvert_scaling_2_vs_1_workers"] = round(
            vl["best_images_per_s"] / results[f"vlconvert {first} (--workers 1)"]["best_images_per_s"], 2)
        summary["vlconvert_images_per_s_per_core_after_startup"] = results[f"vlconvert {first} (--workers 1)"]["images_per_s_after_startup"]
    for name in results:
        if name != vl_key and name.startswith("vlconvert"):
            summary[f"{name} / {vl_key}, after start-up"] = round(
                results[name]["images_per_s_after_startup"] / vl["images_per_s_after_startup"], 2)

    print(f"\n{len(paths)} JPEGs, shorter side -> 256, JPEG q95, {args.processes} processes, {os.cpu_count()} CPUs, "
          f"best/median of {args.repeat}")
    print(f"{'tool':36} {'images':>6} {'best img/s':>10} {'median img/s':>12} {'start-up s':>10} {'img/s after':>11} {'PSNR dB':>8} "
          f"{'bytes/img':>9}")
    for name, r in results.items():
        print(f"{name:36} {r['images']:>6} {r['best_images_per_s']:>10.1f} {r['median_images_per_s']:>12.1f} "
              f"{r['startup_seconds']:>10.2f} {r['images_per_s_after_startup']:>11.1f} {r['psnr_db']:>8.2f} {r['bytes_per_image']:>9,}")
    for name, r in results.items():
        print(f"  {name}: {r['codec']}")
    for key, value in summary.items():
        if " / " in key:
            print(f"{key}: {value}x")
    print(f"{vl_key} / best img2dataset: {summary['speedup_best']}x (best), {summary['speedup_median']}x (median), "
          f"{summary['speedup_after_startup']}x after start-up; PSNR {summary['psnr_difference_db']:+.2f} dB")
    if "vlconvert_scaling_2_vs_1_workers" in summary:
        print(f"vlconvert {args.processes} workers / 1 worker: {summary['vlconvert_scaling_2_vs_1_workers']}x")
    if args.baseline_python:
        print(f"baseline / best img2dataset: {summary['baseline_speedup_best']}x (best), {summary['baseline_speedup_median']}x (median); "
              f"vlconvert / baseline: {summary['vs_baseline_best']}x (best), {summary['vs_baseline_median']}x (median)")
    if args.json:
        args.json.write_text(json.dumps({"corpus": {"images": len(paths), "path": str(corpus), "seed": SEED},
                                         "cpus": os.cpu_count(), "results": results, "summary": summary}, indent=2) + "\n")


if __name__ == "__main__":
    main()
