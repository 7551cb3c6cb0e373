"""CUB-200-2011, NABirds and FGVC-Aircraft read from their real release layouts."""

import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from PIL import Image
from release_layouts import FGVC, cub_classes, make_cub, make_fgvc, make_nabirds, write_lines
from vlconvert.adapters.cub200 import attribute_phrase, clean_class_name

import vlconvert
from vlconvert import VLConvertError, create_adapter

VLCONVERT = Path(sys.executable).parent / "vlconvert"


def members(out: Path, split: str) -> dict[str, dict[str, bytes]]:
    found: dict[str, dict[str, bytes]] = {}
    for shard in sorted((out / split).glob("*.tar")):
        with tarfile.open(shard) as tar:
            for m in tar.getmembers():
                key, _, ext = m.name.partition(".")
                found.setdefault(key, {})[ext] = tar.extractfile(m).read()
    return found


def test_cub_classes_splits_boxes_and_attributes(tmp_path):
    root = make_cub(tmp_path)
    adapter = create_adapter("cub200", str(root))
    classes = adapter.classes()
    assert [c.name for c in classes] == ["Black-footed Albatross", "Laysan Albatross", "Sooty Albatross", "Groove-billed Ani",
                                         "Crested Auklet"]
    assert classes[0].extra["raw_name"] == "001.Black_footed_Albatross"
    assert adapter.splits() == ["train", "test"]
    assert (len(adapter.records("train")), len(adapter.records("test"))) == (10, 5)
    record = adapter.records("train")[0]
    assert record.metadata["bbox"] == [4.0, 3.0, 30.0, 22.0]
    # present with certainty >= 3 only; the line with the release's extra field still counts
    assert record.metadata["attributes"] == ["cone-shaped bill", "black wing"]
    assert Path(record.image).is_file() and record.crop is None


def test_cub_root_may_be_the_cub_folder_and_crop_uses_the_box(tmp_path):
    root = make_cub(tmp_path / "cub", attributes=False)
    adapter = create_adapter("cub200", str(root / "CUB_200_2011"), {"crop": "true"})
    record = adapter.records("test")[0]
    assert record.crop == (4.0, 3.0, 34.0, 25.0) and record.metadata["attributes"] == []
    out = tmp_path / "out"
    vlconvert.build("cub200", str(root), str(out), splits=["test"], adapter_options={"crop": "yes"}, templates=["with_attributes"])
    sample = next(iter(members(out, "test").values()))
    with Image.open(io.BytesIO(sample["jpg"])) as img:
        assert img.size == (30, 22)


def test_cub_build_names_the_birds_and_their_attributes(tmp_path):
    out = tmp_path / "out"
    vlconvert.build("cub200", str(make_cub(tmp_path / "cub")), str(out), templates=["with_attributes"])
    texts = {m["txt"].decode() for m in members(out, "train").values()}
    assert "a photo of a Black-footed Albatross, with cone-shaped bill and black wing." in texts
    assert "a photo of a Groove-billed Ani, with cone-shaped bill and black wing." in texts


@pytest.mark.slow
def test_full_cub_metadata_gives_the_official_split_sizes(tmp_path):
    # Real class names; 5,994 train and 5,794 test images spread over the 200 classes as in the release totals.
    classes = cub_classes()
    # 5,994 = 200 × 29 + 194 and 5,794 = 200 × 28 + 194: the first 194 classes get one more of each.
    counts = {cid: (30, 29) if i < 194 else (29, 28) for i, (cid, _) in enumerate(classes)}
    assert sum(a for a, _ in counts.values()) == 5994 and sum(b for _, b in counts.values()) == 5794
    root = make_cub(tmp_path / "cub", classes=classes, counts=counts, attributes=False, size=(16, 12))
    result = subprocess.run([str(VLCONVERT), "build", "--adapter", "cub200", "--root", str(root), "--out", str(tmp_path / "out"),
                             "--template", "common", "--workers", "2"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["num_classes"] == 200
    assert (manifest["splits"]["train"]["written"], manifest["splits"]["test"]["written"]) == (5994, 5794)
    assert "wrote 11788 samples" in result.stdout
    names = (tmp_path / "out" / "classnames.txt").read_text().splitlines()
    assert names[0] == "Black-footed Albatross" and names[199] == "Common Yellowthroat" and names[21] == "Chuck-will's-widow"
    texts = {m["txt"].decode() for m in members(tmp_path / "out", "test").values()}
    assert {f"a photo of {n}." for n in names} == texts


@pytest.mark.parametrize(("raw", "clean"), [("001.Black_footed_Albatross", "Black-footed Albatross"),
                                            ("126.Nelson_Sharp_tailed_Sparrow", "Nelson Sharp-tailed Sparrow"),
                                            ("098.Scott_Oriole", "Scott Oriole"), ("105.Whip_poor_Will", "Whip-poor-will")])
def test_cub_class_names_are_cleaned(raw, clean):
    assert clean_class_name(raw) == clean


def test_cub_attribute_phrases():
    assert [attribute_phrase(a) for a in ("has_bill_shape::cone", "has_wing_color::black", "has_breast_pattern::solid",
                                          "has_bill_length::about_the_same_as_head", "has_size::small_(5_-_9_in)")] == \
        ["cone-shaped bill", "black wing", "solid breast pattern", "bill about the same as head", "small (5 - 9 in) size"]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("break_it", "message"),
    [
        (lambda base: (base / "images.txt").unlink(),
         "images.txt not found; cub200 expects the CUB_200_2011 folder of the release"),
        (lambda base: (base / "train_test_split.txt").unlink(),
         "CUB_200_2011/train_test_split.txt not found; cub200 expects <image_id> <is_training_image 0|1>"),
        (lambda base: write_lines(base / "train_test_split.txt", ["1 1", "2 yes"]),
         "CUB_200_2011/train_test_split.txt, line 2: expected '<image_id> <is_training_image 0|1>', found '2 yes'"),
        (lambda base: write_lines(base / "bounding_boxes.txt", ["1 4.0 3.0 30.0"]),
         "CUB_200_2011/bounding_boxes.txt, line 1: expected '<image_id> <x> <y> <width> <height>', found '1 4.0 3.0 30.0'"),
        (lambda base: write_lines(base / "classes.txt", ["1 001.Black_footed_Albatross", "1 002.Laysan_Albatross"]),
         "CUB_200_2011/classes.txt, line 2: id 1 appears a second time"),
    ],
)
def test_cub_wrong_layout_is_one_line_naming_the_file(tmp_path, break_it, message):
    root = make_cub(tmp_path / "cub")
    break_it(root / "CUB_200_2011")
    result = subprocess.run([str(VLCONVERT), "build", "-a", "cub200", "-r", str(root), "-o", str(tmp_path / "out")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 2  # "reading …" and the error
    assert "Traceback" not in result.stderr


def test_cub_rows_without_label_or_split_are_rejected(tmp_path):
    root = make_cub(tmp_path)
    base = root / "CUB_200_2011"
    labels = (base / "image_class_labels.txt").read_text().splitlines()
    write_lines(base / "image_class_labels.txt", labels[1:-1] + [labels[-1].split()[0] + " 999"])
    split = (base / "train_test_split.txt").read_text().splitlines()
    write_lines(base / "train_test_split.txt", split[:-2] + split[-1:])
    adapter = create_adapter("cub200", str(root))
    reasons = sorted(r.reason for s in adapter.splits() for r in adapter.rejected(s))
    assert reasons == ["the release assigns this image to no split", "the release gives this image no class", "unknown class '999'"]
    assert sum(len(adapter.records(s)) for s in adapter.splits()) == 15 - 3


def test_nabirds_hierarchy_becomes_the_taxonomy(tmp_path):
    adapter = create_adapter("nabirds", str(make_nabirds(tmp_path)))
    classes = adapter.classes()
    assert [c.name for c in classes] == ["Red-winged Blackbird (Male)", "Red-winged Blackbird (Female/juvenile)",
                                         "Bald Eagle (Adult, subadult)", "Sharp-shinned Hawk (Adult)", "Cooper's Hawk (Immature)"]
    assert classes[1].taxonomy == (("level_1", "Perching Birds"), ("level_2", "Blackbirds and Orioles"),
                                   ("level_3", "Red-winged Blackbird"), ("level_4", "Red-winged Blackbird (Female/juvenile)"))
    assert (len(adapter.records("train")), len(adapter.records("test"))) == (5, 5)
    assert adapter.records("train")[0].metadata["width"] == 40


def test_nabirds_names_with_slashes_and_qualifiers_reach_captions(tmp_path):
    out = tmp_path / "out"
    vlconvert.build("nabirds", str(make_nabirds(tmp_path / "nab")), str(out), templates=["scientific", "taxonomic"])
    texts = {m["txt"].decode() for s in ("train", "test") for m in members(out, s).values()}
    assert texts == {"a photo of Red-winged Blackbird (Male).", "a photo of Red-winged Blackbird (Female/juvenile).",
                     "a photo of Bald Eagle (Adult, subadult).", "a photo of Sharp-shinned Hawk (Adult).",
                     "a photo of Cooper's Hawk (Immature)."}
    tax = {m["taxonomic.txt"].decode() for m in members(out, "train").values()}
    assert "a photo of Birds of Prey Bald Eagle (Adult, subadult)." in tax


def test_nabirds_cycle_is_a_clear_error(tmp_path):
    root = make_nabirds(tmp_path)
    write_lines(root / "hierarchy.txt", ["4 3", "3 4"])
    with pytest.raises(VLConvertError, match="hierarchy.txt: class 4 has a cycle"):
        create_adapter("nabirds", str(root)).classes()


def test_fgvc_three_ranks_slashes_and_leading_zeros(tmp_path):
    adapter = create_adapter("fgvc_aircraft", str(make_fgvc(tmp_path)))
    assert adapter.splits() == ["train", "val", "test"]
    classes = adapter.classes()
    assert [c.name for c in classes] == [v for _, _, v in FGVC]
    assert classes[1].taxonomy == (("manufacturer", "McDonnell Douglas"), ("family", "F/A-18"), ("variant", "F/A-18"))
    keys = [r.key for r in adapter.records("train")]
    assert keys == ["0034309", "0034312", "0034315"]
    assert adapter.records("train")[0].metadata["bbox"] == [2.0, 3.0, 48.0, 22.0]  # 1-based corners → x, y, width, height
    assert adapter.records("val")[0].image.endswith("data/images/0034310.jpg")


def test_fgvc_family_level_and_banner_crop(tmp_path):
    root = make_fgvc(tmp_path / "fgvc")
    adapter = create_adapter("fgvc_aircraft", str(root / "data"), {"level": "family"})
    assert [c.name for c in adapter.classes()] == sorted({f for _, f, _ in FGVC})
    out = tmp_path / "out"
    vlconvert.build("fgvc_aircraft", str(root), str(out), adapter_options={"crop_banner": "true"}, splits=["test"])
    for sample in members(out, "test").values():
        with Image.open(io.BytesIO(sample["jpg"])) as img:
            assert img.size == (60, 30)
    with pytest.raises(VLConvertError, match="option level='model' must be one of manufacturer, family, variant"):
        create_adapter("fgvc_aircraft", str(root), {"level": "model"})


def test_release_text_quirks_bom_crlf_trailing_spaces(tmp_path):
    root = make_cub(tmp_path)
    base = root / "CUB_200_2011"
    for name in ("images.txt", "image_class_labels.txt"):
        text = (base / name).read_text()
        (base / name).write_bytes(("\ufeff" + text.replace("\n", "  \r\n")).encode("utf-8"))
    adapter = create_adapter("cub200", str(root))
    assert sum(len(adapter.records(s)) for s in adapter.splits()) == 15
    assert adapter.records("train")[0].key == "1" and Path(adapter.records("train")[0].image).is_file()


def test_cub_stray_ids_empty_lists_and_boxes(tmp_path):
    root = make_cub(tmp_path / "a")
    base = root / "CUB_200_2011"
    write_lines(base / "image_class_labels.txt", (base / "image_class_labels.txt").read_text().splitlines() + ["99 1"])
    boxes = (base / "bounding_boxes.txt").read_text().splitlines()
    write_lines(base / "bounding_boxes.txt", ["1 -30.0 0.0 10.0 10.0", *boxes[1:-1]])
    adapter = create_adapter("cub200", str(root), {"crop": "true"})
    reasons = {r.key: r.reason for s in adapter.splits() for r in adapter.rejected(s)}
    assert reasons == {"1": "bounding box [-30.0, 0.0, 10.0, 10.0] is empty or outside the image",
                       "15": "crop is on but the release gives this image no bounding box",
                       "99": "listed in image_class_labels.txt or train_test_split.txt but not in CUB_200_2011/images.txt"}
    write_lines(base / "images.txt", [])
    with pytest.raises(VLConvertError, match="CUB_200_2011/images.txt: lists no images"):
        create_adapter("cub200", str(root)).classes()


def test_cub_attribute_names_are_required_when_labels_are_there(tmp_path):
    root = make_cub(tmp_path)
    adapter = create_adapter("cub200", str(root / "CUB_200_2011"))  # attributes.txt found beside the folder
    assert adapter.records("train")[0].metadata["attributes"] == ["cone-shaped bill", "black wing"]
    (root / "attributes.txt").unlink()
    with pytest.raises(VLConvertError, match="image_attribute_labels.txt is there but attributes.txt, the attribute names, is not"):
        create_adapter("cub200", str(root)).classes()


def test_fgvc_family_level_counts_images_listed_only_for_families(tmp_path):
    root = make_fgvc(tmp_path)
    data = root / "data"
    write_lines(data / "images_family_train.txt", (data / "images_family_train.txt").read_text().splitlines() + ["0099999 Cessna 172"])
    family = create_adapter("fgvc_aircraft", str(root), {"level": "family"})
    assert "0099999" in [r.key for r in family.records("train")]
    variant = create_adapter("fgvc_aircraft", str(root))
    assert [r.reason for r in variant.rejected("train")] == ["the release gives this image no class"]
    write_lines(data / "variants.txt", ["707-320", "707-320"])
    with pytest.raises(VLConvertError, match="data/variants.txt: a variant is listed twice"):
        create_adapter("fgvc_aircraft", str(root)).classes()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("adapter", "make", "break_it", "message"),
    [
        ("nabirds", make_nabirds, lambda r: (r / "hierarchy.txt").unlink(), "hierarchy.txt not found; nabirds expects"),
        ("nabirds", make_nabirds, lambda r: write_lines(r / "sizes.txt", ["abc 10"]),
         "sizes.txt, line 1: expected '<image_id> <width> <height>', found 'abc 10'"),
        ("fgvc_aircraft", make_fgvc, lambda r: (r / "data" / "images_family_val.txt").unlink(),
         "data/images_family_val.txt not found; fgvc_aircraft expects <image_id> <family name>"),
        ("fgvc_aircraft", make_fgvc, lambda r: (r / "data" / "variants.txt").unlink(),
         "variants.txt not found; fgvc_aircraft expects fgvc-aircraft-2013b/data"),
    ],
)
def test_wrong_layouts_exit_2_with_one_line(tmp_path, adapter, make, break_it, message):
    root = make(tmp_path / "data")
    break_it(root)
    result = subprocess.run([str(VLCONVERT), "build", "-a", adapter, "-r", str(root), "-o", str(tmp_path / "out")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 2 and "Traceback" not in result.stderr
