"""Duplicates and leakage: planted copies of validation images in train are found and dropped, distinct images are not.

The images are smooth random fields (photo-like low frequencies, each its own seed): the embedded
example's flat shapes look alike to any perceptual hash, real photos do not.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from command import run as run_cli
from inat_layout import make_inat_root, read_json
from PIL import Image

import vlconvert
from vlconvert.readback.validate import validate


def field(seed: int, size=(200, 150)) -> Image.Image:
    """A distinct photo-like image: random colour structure at several scales, smoothly interpolated."""
    rng = np.random.default_rng(seed)
    image = np.zeros((size[1], size[0], 3))
    for cells, weight in ((3, 1.0), (6, 0.5), (12, 0.25)):
        coarse = Image.fromarray((rng.random((cells, cells, 3)) * 255).astype(np.uint8))
        image += weight * np.asarray(coarse.resize(size, Image.Resampling.BICUBIC), dtype=np.float64)
    return Image.fromarray(np.clip(image / 1.75, 0, 255).astype(np.uint8))


def resized(image: Image.Image) -> Image.Image:
    return image.resize((image.width * 3 // 4, image.height * 3 // 4), Image.Resampling.LANCZOS)


def reencoded(image: Image.Image) -> Image.Image:
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=60)
    return Image.open(io.BytesIO(out.getvalue())).convert("RGB")


def cropped(image: Image.Image) -> Image.Image:
    dx, dy = image.width * 3 // 100, image.height * 3 // 100
    return image.crop((dx, dy, image.width - dx, image.height - dy))


COPIES = {"resized": resized, "re-encoded": reencoded, "cropped": cropped, "exact": None}


def planted_root(path: Path) -> tuple[Path, dict[str, str]]:
    """An iNat layout of distinct images, where four train images are copies of val images.
    Returns the root and, for each planted train file, the val file it copies."""
    root = make_inat_root(path, per_class={"train": 4, "val": 1})
    files = sorted(root.rglob("*.jpg"))
    for n, file in enumerate(files):
        field(n).save(file, quality=92)
    val = sorted(f for f in files if f.name.startswith("val-"))
    train = sorted(f for f in files if f.name.startswith("train-"))
    planted = {}
    for (kind, make), source, target in zip(COPIES.items(), val, train[::7]):
        if make is None:
            target.write_bytes(source.read_bytes())
        else:
            make(Image.open(source).convert("RGB")).save(target, quality=90)
        planted[target.relative_to(root).as_posix()] = source.relative_to(root).as_posix()
    return root, planted


def dropped_sources(out: Path) -> dict[str, dict]:
    lines = (out / "duplicates.jsonl").read_text().splitlines()
    return {entry["source"]: entry for entry in map(json.loads, lines) if entry["dropped"]}


def test_planted_copies_of_validation_images_are_found_and_dropped_and_distinct_images_kept(tmp_path):
    root, planted = planted_root(tmp_path / "inat")
    out = tmp_path / "out"
    summary = vlconvert.build("inat2021", str(root), str(out), dedup=True, resize=128)
    dropped = dropped_sources(out)
    assert set(dropped) == set(planted)  # every copy, and nothing else
    for source, entry in dropped.items():
        assert entry["scope"] == "across" and entry["twin"]["source"] == planted[source]
    exact = [e for e in dropped.values() if e["kind"] == "exact"]
    assert len(exact) == 1 and exact[0]["distance"] == 0

    manifest = read_json(out / "manifest.json")
    train = manifest["splits"]["train"]
    assert train["deduplicated"] == len(planted) == manifest["dedup"]["splits"]["train"]["dropped"]
    for account in manifest["splits"].values():
        left_out = account["held_out"] + account["capped"] + account["deduplicated"]
        assert account["read"] == account["written"] + account["errored"] + left_out
    assert summary.splits["train"].written == train["read"] - len(planted)
    in_shards = set()
    for shard in train["shards"]:
        with tarfile.open(out / shard["name"]) as tar:
            in_shards |= {json.loads(tar.extractfile(m).read())["source"] for m in tar if m.name.endswith(".json")}
    assert not in_shards & set(planted) and len(in_shards) == train["written"]
    assert validate(str(out)).ok
    assert manifest["splits"]["val"]["written"] == manifest["splits"]["val"]["read"]  # evaluation splits keep every image


def test_dedup_command_finds_an_external_evaluation_set_and_writes_a_copy_without_it(tmp_path):
    root, planted = planted_root(tmp_path / "inat")
    vlconvert.build("inat2021", str(root), str(tmp_path / "eval"), splits=["val"])
    vlconvert.build("inat2021", str(root), str(tmp_path / "train"), splits=["train"])
    result = run_cli("dedup", str(tmp_path / "train"), "--against", str(tmp_path / "eval"), "--out", str(tmp_path / "clean"),
                     "--report", str(tmp_path / "dups.jsonl"))
    assert result.returncode == 0, result.stderr
    assert f"train: {len(planted)} duplicates ({len(planted)} external" in result.stdout
    report = [json.loads(line) for line in (tmp_path / "dups.jsonl").read_text().splitlines()]
    assert {e["source"] for e in report} == set(planted)
    assert {e["twin"]["build"] for e in report} == {str(tmp_path / "eval")}
    clean = read_json(tmp_path / "clean" / "manifest.json")
    account = clean["splits"]["train"]
    assert account["deduplicated"] == len(planted) and account["read"] == account["written"] + account["deduplicated"]
    assert clean["derived_from"]["build"] == str(tmp_path / "train")
    assert validate(str(tmp_path / "clean")).ok


@pytest.mark.slow
def test_the_same_build_twice_is_all_exact_duplicates_and_a_bad_threshold_is_one_line(tmp_path):
    root, _ = planted_root(tmp_path / "inat")
    vlconvert.build("inat2021", str(root), str(tmp_path / "a"), splits=["train"])
    found = vlconvert.read_tables(str(tmp_path / "a"))
    result = run_cli("dedup", str(tmp_path / "a"), "--against", str(tmp_path / "a"), "--threshold", "0")
    assert result.returncode == 0 and f"train: {found.num_rows} duplicates ({found.num_rows} external" in result.stdout
    bad = run_cli("dedup", str(tmp_path / "a"), "--threshold", "65")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    missing = run_cli("dedup", str(tmp_path / "a"), "--against", str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and "not a vlconvert build" in missing.stderr and "Traceback" not in missing.stderr


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_a_deduplicated_build_is_deterministic(tmp_path, workers):
    root, _ = planted_root(tmp_path / "inat")
    vlconvert.build("inat2021", str(root), str(tmp_path / "a"), dedup=True, workers=workers, shard_size=5)
    vlconvert.build("inat2021", str(root), str(tmp_path / "b"), dedup=True, shard_size=5)
    assert (tmp_path / "a" / "manifest.json").read_bytes() == (tmp_path / "b" / "manifest.json").read_bytes()
    assert (tmp_path / "a" / "duplicates.jsonl").read_bytes() == (tmp_path / "b" / "duplicates.jsonl").read_bytes()
