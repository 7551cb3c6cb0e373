"""The Parquet table beside every shard, errors.parquet, the captions in the sample JSON, and re-sharding a selection."""

from __future__ import annotations

import hashlib
import json
import tarfile

import imagehash
import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from inat_layout import make_inat_root, read_json
from PIL import Image
from test_dedup import field

import vlconvert
from vlconvert.pipeline.image_hashes import phashes, thumbnail, to_hex
from vlconvert.readback.validate import validate


def tar_samples(path) -> list[dict[str, bytes]]:
    samples: dict[str, dict[str, bytes]] = {}
    with tarfile.open(path) as tar:
        for member in tar:
            key, _, extension = member.name.partition(".")
            samples.setdefault(key, {})[extension] = tar.extractfile(member).read()
    return [{"key": key.encode(), **members} for key, members in samples.items()]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tables")
    root = make_inat_root(tmp / "inat", per_class={"train": 3, "val": 1})
    for n, image in enumerate(sorted(root.rglob("*.jpg"))):
        field(n).save(image, quality=90)
    broken = sorted(root.rglob("val-*.jpg"))[0]
    broken.write_bytes(broken.read_bytes()[:300])  # one rejection, for errors.parquet
    out = tmp / "out"
    vlconvert.build("inat2021", str(root), str(out), templates=["taxonomic_common", "scientific"], resize=96, shard_size=10)
    return out


def test_every_shard_has_a_table_whose_rows_are_its_samples(built):
    manifest = read_json(built / "manifest.json")
    for split, account in manifest["splits"].items():
        for shard in account["shards"]:
            table = pq.read_table(built / shard["table"]["name"])
            assert hashlib.sha256((built / shard["table"]["name"]).read_bytes()).hexdigest() == shard["table"]["sha256"]
            samples = tar_samples(built / shard["name"])
            assert table.column("key").to_pylist() == [s["key"].decode() for s in samples]
            for row, sample in zip(table.to_pylist(), samples):
                meta = json.loads(sample["json"])
                assert row["caption"] == sample["txt"].decode() == meta["caption_taxonomic_common"]
                assert row["caption_scientific"] == sample["scientific.txt"].decode() == meta["caption_scientific"]
                assert row["image_sha256"] == hashlib.sha256(sample["jpg"]).hexdigest()
                assert row["label"] == int(sample["cls"]) and row["split"] == split
                assert (row["width"], row["height"]) == (meta["width"], meta["height"]) == Image.open(
                    __import__("io").BytesIO(sample["jpg"])).size
                assert (row["source_width"], row["source_height"]) == (200, 150) and row["image_format"] == "jpg"
                assert len(row["phash"]) == 16 and int(row["phash"], 16) >= 0


def test_errors_parquet_holds_the_rows_of_errors_jsonl(built):
    lines = [json.loads(line) for line in (built / "errors.jsonl").read_text().splitlines()]
    assert len(lines) == 1 and pq.read_table(built / "errors.parquet").to_pylist() == lines


def test_the_hash_is_imagehash_phash_of_the_thumbnail(tmp_path):
    thumbs = np.stack([thumbnail(field(n, (90 + n, 70))) for n in range(40)] + [thumbnail(Image.new("RGB", (50, 50), "white"))])
    ours = [to_hex(h) for h in phashes(thumbs)]
    assert ours == [str(imagehash.phash(Image.fromarray(t))) for t in thumbs]


def test_a_selection_made_with_pyarrow_is_resharded_by_one_call(built, tmp_path):
    rows = vlconvert.read_tables(str(built))
    chosen = rows.filter(pc.and_(pc.equal(rows["split"], "train"), pc.is_in(rows["label"], value_set=pc.cast([0, 2, 5], "int32"))))
    assert 0 < chosen.num_rows < rows.num_rows
    manifest = vlconvert.reshard(str(built), chosen, str(tmp_path / "subset"), shard_size=4)
    account = manifest["splits"]["train"]
    assert account["written"] == chosen.num_rows and account["read"] == read_json(built / "manifest.json")["splits"]["train"]["read"]
    assert account["filtered"] == read_json(built / "manifest.json")["splits"]["train"]["written"] - chosen.num_rows
    assert all(s["samples"] <= 4 for s in account["shards"])
    copied = vlconvert.read_tables(str(tmp_path / "subset"))
    assert copied.column("key").to_pylist() == chosen.column("key").to_pylist()  # the source's order
    by_key = {}
    for shard in read_json(built / "manifest.json")["splits"]["train"]["shards"]:
        by_key |= {s["key"]: s for s in tar_samples(built / shard["name"])}
    for shard in account["shards"]:
        for sample in tar_samples(tmp_path / "subset" / shard["name"]):
            assert sample == by_key[sample["key"]]  # member for member, byte for byte
    assert validate(str(tmp_path / "subset")).ok


def test_a_selection_naming_a_sample_the_build_lacks_is_one_line(built, tmp_path):
    with pytest.raises(vlconvert.VLConvertError, match="no written sample with key 'nope'"):
        vlconvert.reshard(str(built), {"train": ["nope"]}, str(tmp_path / "x"))
    assert not (tmp_path / "x").exists()
    with pytest.raises(vlconvert.VLConvertError, match="dataset folder|never writes into"):
        vlconvert.reshard(str(built), {"train": []}, str(built / "inside"))


@pytest.mark.parametrize("shape", [(256, 341, 3), (341, 256, 3), (130, 97, 3), (200, 150), (64, 90, 3), (1023, 767, 3)])
def test_the_thumbnail_samples_the_same_pixels_with_and_without_opencv(shape, monkeypatch):
    from vlconvert.pipeline import image_hashes, opencv_resize

    pixels = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    step = max(1, min(shape[:2]) // 64)
    monkeypatch.setattr(opencv_resize, "cv2", None)
    plain = image_hashes.sample(pixels, step)
    if opencv_resize.available():
        monkeypatch.setattr(opencv_resize, "cv2", __import__("cv2"))
        assert np.array_equal(image_hashes.sample(pixels, step), plain)
    assert plain.shape[:2] == (shape[0] // step, shape[1] // step) and np.array_equal(plain[1, 1], pixels[step, step])
