import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest
from inat_layout import make_inat_root, read_json, write_image
from PIL import Image

import vlconvert
from vlconvert import VLConvertError


@pytest.fixture
def root(tmp_path):
    return make_inat_root(tmp_path / "inat", per_class={"train": 4, "val": 2})


def samples(tar_path: Path) -> dict[str, dict[str, bytes]]:
    """Every sample of a shard as {key: {extension: bytes}}, read with the stdlib tar reader."""
    out: dict[str, dict[str, bytes]] = {}
    with tarfile.open(tar_path) as tar:
        for member in tar.getmembers():
            key, _, ext = member.name.partition(".")
            out.setdefault(key, {})[ext] = tar.extractfile(member).read()
    return out


def all_samples(out: Path, split: str) -> dict[str, dict[str, bytes]]:
    merged = {}
    for shard in sorted((out / split).glob("*.tar")):
        merged.update(samples(shard))
    return merged


def tree_digest(out: Path) -> dict[str, str]:
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.rglob("*")) if p.is_file()}


def test_build_writes_shards_sizes_and_side_files(root, tmp_path):
    out = tmp_path / "out"
    summary = vlconvert.build("inat2021", str(root), str(out), shard_size=10)
    assert summary.written == 72 and summary.errored == 0
    assert set(summary.splits) == {"train", "val"}
    for split, expected in (("train", 48), ("val", 24)):
        sizes = read_json(out / split / "sizes.json")
        assert sum(sizes.values()) == expected
        assert sorted(sizes) == sorted(p.name for p in (out / split).glob("*.tar"))
        assert all(n <= 10 for n in sizes.values())
    classnames = (out / "classnames.txt").read_text(encoding="utf-8").splitlines()
    assert len(classnames) == 12 and classnames[2] == "Trichonephila clavata"
    assert all("{c}" in line for line in (out / "zeroshot_classification_templates.txt").read_text().splitlines())
    assert (out / "errors.jsonl").read_text() == ""


def test_sample_members_and_contents(root, tmp_path):
    out = tmp_path / "out"
    vlconvert.build("inat2021", str(root), str(out), splits=["val"], templates=["taxonomic_common", "common"])
    val = all_samples(out, "val")
    assert len(val) == 24
    for key, members in val.items():
        assert set(members) == {"jpg", "txt", "common.txt", "json", "cls"}
        meta = json.loads(members["json"])
        assert meta["key"] == key and str(meta["label"]) == members["cls"].decode()
        assert (meta["width"], meta["height"]) == (64, 48)
        assert meta["metadata"]["rights_holder"] == "Kōji Tanaka" and "date" in meta["metadata"]
        assert meta["class_fields"]["supercategory"] and meta["taxonomy"]["kingdom"]
        assert meta["class_name"] in members["txt"].decode()
        source = root / meta["source"]
        assert members["jpg"] == source.read_bytes()  # passed through untouched
    joro = [m for m in val.values() if json.loads(m["json"])["class_name"] == "Trichonephila clavata"]
    assert [m["common.txt"].decode() for m in joro] == ["a photo of Jorō Spider."] * 2
    assert joro[0]["txt"].decode().endswith("Trichonephila clavata with common name Jorō Spider.")


def test_manifest_accounts_for_every_record(root, tmp_path):
    images = read_json(root / "val.json")["images"]
    (root / images[3]["file_name"]).unlink()
    (root / images[5]["file_name"]).write_bytes(b"not an image")
    whole = (root / images[7]["file_name"]).read_bytes()
    (root / images[7]["file_name"]).write_bytes(whole[: len(whole) // 2])  # a valid header, half the scan data
    out = tmp_path / "out"
    summary = vlconvert.build("inat2021", str(root), str(out))
    manifest = read_json(out / "manifest.json")
    val = manifest["splits"]["val"]
    assert (val["read"], val["written"], val["errored"]) == (24, 21, 3)
    assert sum(s["samples"] for s in val["shards"]) == 21 == sum(val["class_counts"])
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert {e["reason"].split(":")[0] for e in errors} == {"image file not found", "not a recognised image format", "cannot decode image"}
    assert all(e["split"] == "val" and e["stage"] == "image" and e["source"] for e in errors)
    assert manifest["errors"] == {"file": "errors.jsonl", "count": 3, "by_stage": {"image": 3}, "rate": round(3 / 72, 6),
                                  "strict": False, "max_error_rate": None}
    assert summary.errored == 3 and summary.errors_by_stage == {"image": 3}
    assert manifest["status"] == "complete"
    for shard in val["shards"]:
        assert hashlib.sha256((out / shard["name"]).read_bytes()).hexdigest() == shard["sha256"]
    assert manifest["default_template_used"] and manifest["templates"][0]["name"] == "taxonomic_common"
    assert manifest["adapter"] == {"name": "inat2021", "root": str(root), "options": {}}


def test_same_seed_gives_byte_identical_output_in_any_worker_count(root, tmp_path):
    a = vlconvert.build("inat2021", str(root), str(tmp_path / "a"), shard_size=7, seed=3)
    b = vlconvert.build("inat2021", str(root), str(tmp_path / "b"), shard_size=7, seed=3, workers=2)
    assert a.shards == b.shards == 11
    assert tree_digest(tmp_path / "a") == tree_digest(tmp_path / "b")
    vlconvert.build("inat2021", str(root), str(tmp_path / "c"), shard_size=7, seed=4)
    assert tree_digest(tmp_path / "a") != tree_digest(tmp_path / "c")


def test_shuffle_mixes_classes_across_shards(root, tmp_path):
    vlconvert.build("inat2021", str(root), str(tmp_path / "out"), splits=["train"], shard_size=12)
    first = samples(tmp_path / "out" / "train" / "train-000000.tar")
    assert len({m["cls"] for m in first.values()}) >= 6  # unshuffled, 12 samples would be 3 classes


def test_byte_bound_rolls_over_to_more_shards(root, tmp_path):
    out_dir = tmp_path / "out"
    summary = vlconvert.build("inat2021", str(root), str(out_dir), splits=["val"], shard_max_bytes=30_720)
    shards = summary.splits["val"].shards
    assert len(shards) > 1 and sum(s["samples"] for s in shards) == 24
    assert [s["name"] for s in shards] == [f"val/val-{i:06d}.tar" for i in range(len(shards))]
    assert all(s["bytes"] == (out_dir / s["name"]).stat().st_size for s in shards)
    assert all(s["bytes"] <= 30_720 for s in shards)


def test_resize_reencodes_to_jpeg_shorter_side(tmp_path):
    root = make_inat_root(tmp_path / "inat", per_class={"val": 1})
    doc = read_json(root / "val.json")
    png = root / doc["images"][0]["file_name"]
    write_image(png, (10, 200, 30), size=(300, 200), fmt="PNG")  # a PNG behind a .jpg name
    vlconvert.build("inat2021", str(root), str(tmp_path / "small"), resize=32)
    vlconvert.build("inat2021", str(root), str(tmp_path / "orig"))
    small = all_samples(tmp_path / "small", "val")[str(doc["images"][0]["id"])]
    with Image.open(io.BytesIO(small["jpg"])) as img:
        assert img.format == "JPEG" and img.size == (48, 32)
    assert json.loads(small["json"])["width"] == 48
    orig = all_samples(tmp_path / "orig", "val")[str(doc["images"][0]["id"])]
    assert set(orig) >= {"png"} and orig["png"] == png.read_bytes()  # passthrough keeps the real format
    vlconvert.build("inat2021", str(root), str(tmp_path / "large"), resize=100)
    never_upscaled = all_samples(tmp_path / "large", "val")[str(doc["images"][1]["id"])]
    with Image.open(io.BytesIO(never_upscaled["jpg"])) as img:
        assert img.size == (64, 48)
    assert read_json(tmp_path / "small" / "manifest.json")["image"]["size"] == 32


def test_caption_failures_for_one_record_are_rejected_not_fatal(root, tmp_path):
    doc = read_json(root / "val.json")
    doc["images"][4]["latitude"] = None
    (root / "val.json").write_text(json.dumps(doc))
    template = tmp_path / "where.j2"
    template.write_text('a photo of {{ name }} at latitude {{ "%.1f" | format(meta.latitude) }}.')
    summary = vlconvert.build("inat2021", str(root), str(tmp_path / "out"), splits=["val"], templates=[str(template)])
    assert (summary.written, summary.errored) == (23, 1)
    error = json.loads((tmp_path / "out" / "errors.jsonl").read_text())
    assert error["stage"] == "caption" and error["key"] == str(doc["images"][4]["id"])
    assert error["reason"].startswith("template where (")
    texts = [m["txt"].decode() for m in all_samples(tmp_path / "out", "val").values()]
    assert all(t.startswith("a photo of ") and " at latitude 3" in t for t in texts)


def test_a_null_field_is_not_printed_as_none(root, tmp_path):
    template = tmp_path / "uncertain.j2"
    template.write_text("a photo of {{ name }} within {{ meta.location_uncertainty }} m.")
    summary = vlconvert.build("inat2021", str(root), str(tmp_path / "out"), splits=["val"], templates=[str(template)])
    assert (summary.written, summary.errored) == (0, 24)  # the fixture has no location_uncertainty anywhere
    error = json.loads((tmp_path / "out" / "errors.jsonl").read_text().splitlines()[0])
    assert error["stage"] == "caption" and "is null for this record" in error["reason"]


def test_template_runtime_errors_fail_before_the_build(root, tmp_path):
    template = tmp_path / "divide.j2"
    template.write_text("a photo of {{ name ~ (1 / 0) }}")
    with pytest.raises(VLConvertError, match=r"template divide \(.*\): division by zero \(class 0"):
        vlconvert.build("inat2021", str(root), str(tmp_path / "out"), templates=[str(template)])
    assert not (tmp_path / "out").exists()


def test_transparent_images_are_flattened_onto_white(tmp_path):
    root = make_inat_root(tmp_path / "inat", per_class={"val": 1})
    doc = read_json(root / "val.json")
    clear = Image.new("RGBA", (40, 40), (255, 0, 0, 0))  # red, but fully transparent
    clear.save(root / doc["images"][0]["file_name"], format="PNG")
    vlconvert.build("inat2021", str(root), str(tmp_path / "out"), splits="val", resize=20)
    sample = all_samples(tmp_path / "out", "val")[str(doc["images"][0]["id"])]
    with Image.open(io.BytesIO(sample["jpg"])) as img:
        r, g, b = img.convert("RGB").getpixel((10, 10))
    assert min(r, g, b) > 245


def test_output_folder_safety(root, tmp_path):
    out = tmp_path / "out"
    vlconvert.build("inat2021", str(root), str(out), splits=["val"])
    with pytest.raises(VLConvertError, match="not empty; pass --overwrite"):
        vlconvert.build("inat2021", str(root), str(out), splits=["val"])
    vlconvert.build("inat2021", str(root), str(out), splits=["train"], overwrite=True)
    assert not (out / "val").exists() and (out / "train" / "sizes.json").exists()
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("keep me")
    with pytest.raises(VLConvertError, match="not a vlconvert build; refusing"):
        vlconvert.build("inat2021", str(root), str(precious), overwrite=True)
    assert (precious / "thesis.tex").exists()


def test_an_interrupted_build_can_be_overwritten(root, tmp_path):
    out = tmp_path / "out"
    # What a build killed mid-way leaves: its claim on the folder and unfinished parts.
    (out / "val").mkdir(parents=True)
    (out / "manifest.json").write_text(json.dumps({"format_version": 1, "vlconvert_version": vlconvert.__version__,
                                                   "status": "in_progress", "resume_key": "0" * 64}))
    (out / "val" / "_tmp-000000-000.part").write_bytes(b"partial")
    vlconvert.build("inat2021", str(root), str(out), splits=["val"], overwrite=True)
    assert read_json(out / "manifest.json")["status"] == "complete"
    names = sorted(p.name for p in (out / "val").iterdir())
    assert "val-000000.tar" in names and "val-000000.parquet" in names and not [n for n in names if n.startswith("_")]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"splits": ["test"]}, "split 'test' not found; inat2021 has: train, val"),
        ({"shard_size": 0}, "shard_size: must be at least 1, got 0"),
        ({"templates": ["nope"]}, "unknown template 'nope'"),
    ],
)
def test_option_errors(root, tmp_path, kwargs, message):
    with pytest.raises(VLConvertError, match=message):
        vlconvert.build("inat2021", str(root), str(tmp_path / "out"), **kwargs)


def test_unknown_adapter_lists_available(tmp_path):
    available = "cub200, fgvc_aircraft, imagefolder, inat2017, inat2018, inat2019, inat2021, nabirds, table"
    with pytest.raises(VLConvertError, match=f"unknown adapter 'inat2022'; available: {available}"):
        vlconvert.build("inat2022", str(tmp_path), str(tmp_path / "out"))


def test_template_mix_fills_txt_per_sample_and_records_the_choice(root, tmp_path):
    mix = {"scientific": 0.5, "common": 0.5}
    a = tmp_path / "a"
    vlconvert.build("inat2021", str(root), str(a), template_mix=mix, templates=["taxonomic"], seed=9)
    vlconvert.build("inat2021", str(root), str(tmp_path / "b"), template_mix=mix, templates=["taxonomic"], seed=9)
    assert tree_digest(a) == tree_digest(tmp_path / "b")
    train = all_samples(a, "train")
    chosen = {json.loads(m["json"])["caption_template"] for m in train.values()}
    assert chosen == {"scientific", "common"}
    for members in train.values():
        meta = json.loads(members["json"])
        expected = {"scientific": meta["class_name"], "common": meta["common_name"] or meta["class_name"]}[meta["caption_template"]]
        assert members["txt"].decode() == f"a photo of {expected}."
        assert members["taxonomic.txt"].decode().startswith("a photo of " + meta["taxonomy"]["kingdom"])
    manifest = read_json(a / "manifest.json")
    assert manifest["template_mix"] is True
    assert [(t["name"], t["member"], t.get("weight")) for t in manifest["templates"]] == [
        ("scientific", "txt", 0.5), ("common", "txt", 0.5), ("taxonomic", "taxonomic.txt", None)]


def test_all_templates_writes_every_variant(root, tmp_path):
    from vlconvert.captions.render import builtin_template_names

    vlconvert.build("inat2021", str(root), str(tmp_path / "out"), splits=["val"], all_templates=True)
    sample = next(iter(all_samples(tmp_path / "out", "val").values()))
    assert {f"{n}.txt" for n in builtin_template_names()} | {"txt"} <= set(sample)
    assert sample["txt"] == sample["taxonomic_common.txt"]


@pytest.mark.parametrize(
    ("prompts", "first_class", "templates"),
    [
        ("simple", "Lumbricus terrestris", ["a photo of {c}."]),
        ("same_as_training", "a photo of Lumbricus terrestris with common name Common Earthworm.", ["{c}"]),
    ],
)
def test_zeroshot_prompt_sets_write_matching_classnames(root, tmp_path, prompts, first_class, templates):
    out = tmp_path / "out"
    vlconvert.build("inat2021", str(root), str(out), splits=["val"], templates=["scientific_common"], zeroshot_prompts=prompts)
    assert (out / "classnames.txt").read_text(encoding="utf-8").splitlines()[0] == first_class
    assert (out / "zeroshot_classification_templates.txt").read_text().splitlines() == templates
    assert read_json(out / "manifest.json")["zeroshot"]["prompts"] == prompts


def test_openai_imagenet_prompts_and_a_prompt_file(root, tmp_path):
    vlconvert.build("inat2021", str(root), str(tmp_path / "a"), splits=["val"], zeroshot_prompts="openai_imagenet")
    lines = (tmp_path / "a" / "zeroshot_classification_templates.txt").read_text().splitlines()
    assert len(lines) == 80 and "a bad photo of a {c}." in lines and all("{c}" in line for line in lines)
    mine = tmp_path / "prompts.txt"
    mine.write_text("a field photo of {c}.\n\nan herbarium sheet\n")
    with pytest.raises(VLConvertError, match=r"prompts.txt, line 3: a zero-shot template needs the placeholder \{c\}"):
        vlconvert.build("inat2021", str(root), str(tmp_path / "b"), zeroshot_prompts=str(mine))
    with pytest.raises(VLConvertError, match="same_as_training needs one training template, not a --template-mix"):
        vlconvert.build("inat2021", str(root), str(tmp_path / "c"), template_mix={"scientific": 1, "common": 1},
                        zeroshot_prompts="same_as_training")


def test_duplicate_zeroshot_classnames_are_counted(tmp_path):
    from inat_layout import category

    pica = category("Pica hudsonia")
    twin = {**pica, "id": 99999, "name": "Pica pica", "specific_epithet": "pica", "common_name": "black-billed magpie"}
    root = make_inat_root(tmp_path / "inat", categories=[pica, twin], per_class={"val": 1})
    summary = vlconvert.build("inat2021", str(root), str(tmp_path / "out"), templates=["common"], zeroshot_prompts="same_as_training")
    assert summary.duplicate_classnames == 1
    assert read_json(tmp_path / "out" / "manifest.json")["zeroshot"]["duplicate_classnames"] == 1


def test_holdout_classes_stay_out_of_training_only(root, tmp_path):
    out = tmp_path / "out"
    summary = vlconvert.build("inat2021", str(root), str(out), holdout_classes=0.25, seed=1)
    manifest = read_json(out / "manifest.json")
    held = manifest["holdout"]["classes"]
    assert len(held) == 3 and manifest["holdout"]["kept_out_of"] == ["train"]
    train, val = manifest["splits"]["train"], manifest["splits"]["val"]
    assert (train["read"], train["written"], train["held_out"], train["errored"]) == (48, 36, 12, 0)
    assert all(train["class_counts"][c] == 0 for c in held) and all(val["class_counts"][c] == 2 for c in held)
    assert {int(m["cls"]) for m in all_samples(out, "train").values()}.isdisjoint(held)
    assert summary.splits["val"].written == 24
    names = tmp_path / "held.txt"
    names.write_text("Pica hudsonia\n\nQuercus robur\n")
    vlconvert.build("inat2021", str(root), str(tmp_path / "named"), holdout_classes=str(names))
    assert read_json(tmp_path / "named" / "manifest.json")["holdout"]["names"] == ["Pica hudsonia", "Quercus robur"]
    names.write_text("Pica hudsonia\nPica nowhere\n")
    with pytest.raises(VLConvertError, match=r"held.txt, line 2: no class is named 'Pica nowhere'"):
        vlconvert.build("inat2021", str(root), str(tmp_path / "bad"), holdout_classes=str(names))
