import gc

import pytest
from inat_layout import all_categories, category, example_categories, make_inat_root, read_json, write_json
from vlconvert.adapters.inat2021 import INat2021Adapter

from vlconvert import VLConvertError, create_adapter


def test_splits_are_the_annotation_files_present(tmp_path):
    make_inat_root(tmp_path, per_class={"train": 1, "train_mini": 1, "val": 1})
    assert INat2021Adapter(str(tmp_path)).splits() == ["train", "train_mini", "val"]
    (tmp_path / "train_mini.json").unlink()
    assert create_adapter("inat2021", str(tmp_path)).splits() == ["train", "val"]


def test_root_without_annotation_files_is_a_clear_error(tmp_path):
    with pytest.raises(VLConvertError, match=r"found none of train.json, train_mini.json, val.json"):
        INat2021Adapter(str(tmp_path))
    with pytest.raises(VLConvertError, match="no such folder"):
        INat2021Adapter(str(tmp_path / "missing"))


def test_label_is_position_among_categories_sorted_by_id(tmp_path):
    make_inat_root(tmp_path)  # writes the categories in shuffled order
    classes = INat2021Adapter(str(tmp_path)).classes()
    ids = [c.extra["id"] for c in classes]
    assert ids == sorted(c["id"] for c in example_categories())
    assert [c.label for c in classes] == list(range(12))


def test_category_quirks_survive(tmp_path):
    make_inat_root(tmp_path)
    by_name = {c.name: c for c in INat2021Adapter(str(tmp_path)).classes()}
    joro = by_name["Trichonephila clavata"]
    assert joro.common_name == "Jorō Spider"
    assert by_name["Pseudolabrus guentheri"].common_name == "Günther's Wrasse"
    assert by_name["Calypte anna"].common_name == "Anna's Hummingbird"
    assert by_name["Serpula columbiana"].common_name == "Serpula columbiana"
    worm = by_name["Lumbricus terrestris"]
    assert worm.extra["supercategory"] == "Animalia" and worm.ranks["kingdom"] == "Animalia"
    assert worm.taxonomy == (
        ("kingdom", "Animalia"), ("phylum", "Annelida"), ("class", "Clitellata"), ("order", "Haplotaxida"),
        ("family", "Lumbricidae"), ("genus", "Lumbricus"), ("species", "terrestris"),
    )
    assert worm.extra["specific_epithet"] == "terrestris"


def test_records_carry_image_fields_and_resolve_paths(tmp_path):
    make_inat_root(tmp_path, per_class={"train": 2, "val": 1})
    adapter = INat2021Adapter(str(tmp_path))
    records = adapter.records("train")
    assert len(records) == 24 and adapter.rejected("train") == []
    rec = records[0]
    joro = category("Trichonephila clavata")
    first = read_json(tmp_path / "train.json")["images"][0]
    assert rec.key == str(first["id"]) and rec.source == first["file_name"]
    assert rec.image == str(tmp_path / first["file_name"])
    for field in ("date", "latitude", "longitude", "rights_holder", "license", "location_uncertainty"):
        assert rec.metadata[field] == first[field]
    joro_records = [r for r in records if adapter.classes()[r.label].name == joro["name"]]
    assert len(joro_records) == 2 and all(joro["image_dir_name"] in r.source for r in joro_records)


def test_bad_rows_are_rejected_with_reasons(tmp_path):
    make_inat_root(tmp_path, per_class={"train": 2})
    doc = read_json(tmp_path / "train.json")
    images, anns = doc["images"], doc["annotations"]
    anns[0]["category_id"] = 999999  # unknown category
    images.append(dict(images[1]))  # duplicate image id
    anns.append({"id": 5000, "image_id": images[2]["id"], "category_id": doc["categories"][0]["id"]})
    anns.append({"id": 5001, "image_id": images[2]["id"], "category_id": doc["categories"][1]["id"]})  # conflicting labels
    images.append({**images[3], "id": 4242})  # no annotation
    write_json(tmp_path / "train.json", doc)

    adapter = INat2021Adapter(str(tmp_path))
    reasons = {r.key: r.reason for r in adapter.rejected("train")}
    assert reasons == {
        str(images[0]["id"]): "unknown category id 999999",
        str(images[1]["id"]): f"duplicate image id {images[1]['id']} (first at images[1])",
        str(images[2]["id"]): f"image id {images[2]['id']} has annotations with different category ids",
        "4242": "image id 4242 has no annotation",
    }
    # 26 rows: the 24 written plus a duplicate and an unannotated image; the duplicate's first copy stays.
    assert len(adapter.records("train")) == 26 - 4
    assert all(r.source.startswith(str(tmp_path / "train.json")) for r in adapter.rejected("train"))


def test_duplicate_category_id_names_the_file(tmp_path):
    make_inat_root(tmp_path, per_class={"val": 1})
    doc = read_json(tmp_path / "val.json")
    doc["categories"].append(dict(doc["categories"][0]))
    write_json(tmp_path / "val.json", doc)
    with pytest.raises(VLConvertError, match=rf"val.json: category id {doc['categories'][0]['id']} appears more than once"):
        INat2021Adapter(str(tmp_path)).classes()


def test_broken_json_names_the_file(tmp_path):
    make_inat_root(tmp_path, per_class={"train": 1, "val": 1})
    (tmp_path / "train.json").write_text('{"images": [{"id": 1, "file_name": "a.jpg"},', encoding="utf-8")
    adapter = INat2021Adapter(str(tmp_path))
    with pytest.raises(VLConvertError, match=r"train.json: not valid JSON"):
        adapter.records("train")


def test_unknown_split_is_a_clear_error(tmp_path):
    make_inat_root(tmp_path, per_class={"val": 1})
    with pytest.raises(VLConvertError, match="split 'train' not found; this root has val"):
        INat2021Adapter(str(tmp_path)).records("train")


def test_all_10000_real_categories_label_equals_id(tmp_path):
    categories = all_categories()
    write_json(tmp_path / "val.json", {"images": [], "annotations": [], "categories": categories[::-1]})
    classes = INat2021Adapter(str(tmp_path)).classes()
    assert len(classes) == 10_000
    assert all(c.label == c.extra["id"] for c in classes)
    assert classes[44].common_name == "Jorō Spider"


def test_records_taken_across_spilled_chunks_keep_their_order(tmp_path):
    make_inat_root(tmp_path / "inat", per_class={"train": 3})
    doc = read_json(tmp_path / "inat" / "train.json")
    doc["images"][10]["file_name"] = None  # one rejected row shifts every later position
    write_json(tmp_path / "inat" / "train.json", doc)
    spill = tmp_path / "spill"
    spill.mkdir()
    adapter = INat2021Adapter(str(tmp_path / "inat"), spill_dir=str(spill))
    adapter.chunk_rows = 7  # 36 images → 6 spilled chunks
    records = adapter.records("train")
    assert len(list(spill.glob("*/train/images-*.arrow"))) == 6
    expected = [str(img["id"]) for i, img in enumerate(doc["images"]) if i != 10]
    order = [34, 0, 13, 9, 10, 22, 7, 6]
    assert [r.key for r in records.take(order)] == [expected[i] for i in order]
    assert [r.key for r in records[3:5]] == expected[3:5]
    del adapter, records
    gc.collect()
    assert list(spill.iterdir()) == []  # the spill folder goes with the adapter


def _edit(root, split, change):
    doc = read_json(root / f"{split}.json")
    change(doc)
    write_json(root / f"{split}.json", doc)
    return doc


def test_ids_that_cannot_be_keys_and_paths_leaving_the_root_are_rejected(tmp_path):
    make_inat_root(tmp_path, per_class={"train": 1})

    def change(doc):
        for image, annotation in zip(doc["images"], doc["annotations"]):
            image["id"] = annotation["image_id"] = f"img-{image['id']}"
        doc["images"][0]["id"] = doc["annotations"][0]["image_id"] = "img.0"
        doc["images"][1]["file_name"] = "../../etc/hostname"
        doc["images"][2]["file_name"] = "/etc/hostname"

    doc = _edit(tmp_path, "train", change)
    adapter = INat2021Adapter(str(tmp_path))
    assert [r.reason for r in adapter.rejected("train")] == [
        "image id 'img.0' cannot be a sample key (letters, digits, '_' and '-' only)",
        "file_name '../../etc/hostname' points outside the dataset root",
        "file_name '/etc/hostname' points outside the dataset root",
    ]
    assert len(adapter.records("train")) == 9 and adapter.records("train")[0].key == doc["images"][3]["id"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.pop("images"), r"val.json: has no 'images' list"),
        (lambda d: d["images"][5].update(latitude="n/a"),
         r"val.json: images\[5\].latitude is 'n/a', but earlier entries hold number values"),
        (lambda d: [i.update(id=i["id"] + 0.5) for i in d["images"]], r"val.json: image ids must be integers or strings, found double"),
        (lambda d: d["categories"][3].pop("name"), r"val.json: category id \d+ has no name"),
        (lambda d: d["categories"][3].update(name=None), r"val.json: category id \d+ has no name"),
    ],
)
def test_malformed_files_name_file_entry_and_field(tmp_path, change, message):
    make_inat_root(tmp_path, per_class={"val": 1})
    _edit(tmp_path, "val", change)
    with pytest.raises(VLConvertError, match=message):
        adapter = INat2021Adapter(str(tmp_path))
        adapter.classes()
        adapter.records("val")


def test_type_conflict_between_chunks_names_where_it_starts(tmp_path):
    make_inat_root(tmp_path, per_class={"val": 2})
    _edit(tmp_path, "val", lambda d: [i.update(rights_holder=7) for i in d["images"][10:]])
    adapter = INat2021Adapter(str(tmp_path))
    adapter.chunk_rows = 10
    expected = r"images.rights_holder holds string values from images\[0\] but int64 values from images\[10\] on"
    with pytest.raises(VLConvertError, match=expected):
        adapter.records("val")
