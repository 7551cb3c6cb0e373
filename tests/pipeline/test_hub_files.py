"""The files that let other tools open a build as it is: the wids shard index of each split and the
Hugging Face dataset card (README.md), each checked with the real library that reads it."""

import hashlib
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from fsspec.implementations.local import LocalFileSystem
from inat_layout import EXAMPLE
from optional import require

import vlconvert
from vlconvert.pipeline import dataset_card, output_folder
from vlconvert.validate import validate

SPLITS = {"train": 120, "val": 36}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """The embedded example in shards of 50 (train: three), with a second caption member."""
    out = tmp_path_factory.mktemp("hub") / "out"
    vlconvert.build("inat2021", str(EXAMPLE), str(out), shard_size=50, templates=["taxonomic_common", "scientific"])
    return out


def tar_samples(out: Path, split: str) -> list[tuple[str, dict[str, bytes]]]:
    """Every sample of a split in shard order, read with the stdlib tar reader: (key, {member: bytes})."""
    samples: list[tuple[str, dict[str, bytes]]] = []
    for shard in sorted((out / split).glob("*.tar")):
        with tarfile.open(shard) as tar:
            for member in tar.getmembers():
                key, _, ext = member.name.partition(".")
                if not samples or samples[-1][0] != key:
                    samples.append((key, {}))
                samples[-1][1][ext] = tar.extractfile(member).read()
    return samples


def manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text(encoding="utf-8"))


def test_wids_opens_each_split_and_reads_the_tar_samples_by_index(built, tmp_path):
    wids = require("wids")
    for split, written in SPLITS.items():
        expected = tar_samples(built, split)
        assert len(expected) == written
        dataset = wids.ShardListDataset(str(built / split / f"{split}.wids.json"), cache_dir=str(tmp_path / "cache"),
                                        transformations=[])  # raw members, to compare bytes
        assert len(dataset) == written
        for index in sorted({0, 49, 50, written // 2, written - 1} & set(range(written))):
            sample = dataset[index]
            key, members = expected[index]
            assert sample["__key__"] == key
            # wids keeps the dot: ".jpg", ".scientific.txt"
            assert {name.lstrip("."): sample[name].read() for name in sample if name.startswith(".")} == members
    decoded = wids.ShardListDataset(str(built / "train" / "train.wids.json"), cache_dir=str(tmp_path / "decoded"))
    last = decoded[SPLITS["train"] - 1]
    key, members = tar_samples(built, "train")[-1]
    assert last["__key__"] == key and last[".txt"] == members["txt"].decode() and last[".cls"] == int(members["cls"])
    assert last[".jpg"].size == (last[".json"]["width"], last[".json"]["height"])


def test_the_wids_index_holds_relative_urls_so_the_folder_can_move(built, tmp_path):
    wids = require("wids")
    index = json.loads((built / "train" / "train.wids.json").read_text())
    assert index["__kind__"] == "wids-shard-index-v1" and index["wids_version"] == 1
    shards = manifest(built)["splits"]["train"]["shards"]
    assert index["shardlist"] == [{"url": Path(s["name"]).name, "nsamples": s["samples"], "filesize": s["bytes"]} for s in shards]
    moved = tmp_path / "moved"
    (moved / "train").mkdir(parents=True)
    for path in (built / "train").iterdir():
        (moved / "train" / path.name).symlink_to(path)
    dataset = wids.ShardListDataset(str(moved / "train" / "train.wids.json"), cache_dir=str(tmp_path / "cache"), transformations=[])
    assert dataset[SPLITS["train"] - 1]["__key__"] == tar_samples(built, "train")[-1][0]


def test_the_manifest_records_the_card_and_the_indexes_and_overwrite_owns_them(built):
    files = manifest(built)["files"]
    for name in ["README.md", *(f"{s}/{s}.wids.json" for s in SPLITS)]:
        data = (built / name).read_bytes()
        assert files[name] == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    assert [p.name for p in sorted((built / "train").glob("*.tar"))] == [f"train-00000{n}.tar" for n in range(3)]  # a glob's shards only
    assert output_folder.foreign_files(LocalFileSystem(), str(built)) == []


def test_validate_checks_the_wids_index(built, tmp_path):
    assert validate(str(built)).ok
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-r", str(built), str(copy)], check=True)
    index_path = copy / "val" / "val.wids.json"
    index = json.loads(index_path.read_text())
    index["shardlist"][0]["nsamples"] += 1
    index_path.write_text(json.dumps(index, indent=2) + "\n")
    problems = [str(p) for p in validate(str(copy)).problems]
    assert any(p.startswith("val/val.wids.json: ") and "changed since the build wrote it" in p for p in problems), problems
    # The manifest made to vouch for the edited index: the contents are still checked against the shards.
    data = json.loads((copy / "manifest.json").read_text())
    raw = index_path.read_bytes()
    data["files"]["val/val.wids.json"] = {"bytes": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}
    (copy / "manifest.json").write_text(json.dumps(data, indent=2) + "\n")
    problems = [str(p) for p in validate(str(copy)).problems]
    assert problems == ["val/val.wids.json: its shardlist is not the manifest's shards of the split (url, nsamples, filesize)"]


def test_the_card_front_matter_is_what_the_hub_reads(built):
    huggingface_hub = require("huggingface_hub")
    card = huggingface_hub.DatasetCard.load(built / "README.md")
    data = card.data.to_dict()
    assert data["license"] == "other" and data["license_name"] == "inat2021-terms-of-use"
    assert data["license_link"].startswith("https://github.com/visipedia/inat_comp")
    assert data["size_categories"] == ["n<1K"]
    assert data["task_categories"] == ["zero-shot-image-classification", "image-classification"]
    assert {"webdataset", "vlconvert"} <= set(data["tags"])
    assert data["configs"] == [{"config_name": "default", "data_files": [
        {"split": "train", "path": "train/*.tar"}, {"split": "val", "path": "val/*.tar"}]}]
    body = card.text
    assert "| `train` | 120 | 3 |" in body and "| `val` | 36 | 1 |" in body
    for member in ("`txt`", "`scientific.txt`", "`json`", "`cls`", "`jpg`"):
        assert member in body
    assert "van2021benchmarking" in body and "non-commercial" in body
    assert "train/train-{000000..000002}.tar" in body and 'wids.ShardListDataset("train/train.wids.json")' in body


@pytest.mark.slow
def test_datasets_loads_the_build_offline_by_patterns_and_by_its_card(built, tmp_path):
    require("datasets")
    script = r"""
import json, sys
import datasets, PIL.Image
out = sys.argv[1]
result = {}
for how, args in (("patterns", ("webdataset",)), ("card", (out,))):
    kwargs = {"data_files": {"train": f"{out}/train/*.tar", "val": f"{out}/val/*.tar"}} if how == "patterns" else {}
    loaded = datasets.load_dataset(*args, **kwargs)
    result[how] = {}
    for split, ds in loaded.items():
        row = ds[len(ds) - 1]
        result[how][split] = {
            "rows": ds.num_rows, "features": {k: type(v).__name__ for k, v in ds.features.items()},
            "key": row["__key__"], "txt": row["txt"], "scientific": row["scientific.txt"], "cls": row["cls"],
            "label": row["json"]["label"], "pil": isinstance(row["jpg"], PIL.Image.Image), "size": list(row["jpg"].size),
            "json_size": [row["json"]["width"], row["json"]["height"]],
        }
print(json.dumps(result))
"""
    hf = tmp_path / "hf"
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "HF_HOME": str(hf),
           "HF_DATASETS_CACHE": str(hf / "datasets"), "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"}
    done = subprocess.run([sys.executable, "-c", script, str(built)], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    counts = {s: info["written"] for s, info in manifest(built)["splits"].items()}
    for how in ("patterns", "card"):
        assert {s: r["rows"] for s, r in result[how].items()} == counts == SPLITS
        for split, row in result[how].items():
            assert row["features"]["jpg"] == "Image" and row["features"]["txt"] == "Value" and row["features"]["cls"] == "Value"
            assert {"json", "scientific.txt", "__key__"} <= set(row["features"])
            assert row["pil"] and row["size"] == row["json_size"]
            members = dict(tar_samples(built, split))[row["key"]]
            assert row["txt"] == members["txt"].decode() and row["scientific"] == members["scientific.txt"].decode()
            assert row["cls"] == row["label"] == int(members["cls"])


def test_size_buckets_split_names_and_mixed_image_members():
    assert [dataset_card.size_category(n) for n in (0, 999, 1000, 9999, 10_000, 2_686_843, 10**13)] == [
        "n<1K", "n<1K", "1K<n<10K", "1K<n<10K", "10K<n<100K", "1M<n<10M", "n>1T"]
    assert dataset_card.hub_split_name("train-mini") == "train_mini" and dataset_card.hub_split_name("val") == "val"
    assert dataset_card.image_members_note({"jpg": 120}) is None and dataset_card.image_members_note({"jpg": 5, "png": 0}) is None
    note = dataset_card.image_members_note({"png": 3, "jpg": 1_000})
    assert note.startswith("its images are 1,000 `jpg`, 3 `png`") and "datasets" in note


def test_a_card_without_source_terms_says_the_license_is_unknown(built):
    counts = {"train": {"jpg": 100, "png": 20}, "val": {"jpg": 36}}
    text = dataset_card.card_text(manifest(built), source=None, image_members=counts)
    front = text.split("---\n")[1]
    assert 'license: "unknown"' in front and "license_name" not in front
    assert "vlconvert does not know the license" in text and "## Citation" not in text
    assert "- `train`: its images are 100 `jpg`, 20 `png`" in text and "- `val`:" not in text
    assert text == dataset_card.card_text(manifest(built), source=None, image_members=counts)
