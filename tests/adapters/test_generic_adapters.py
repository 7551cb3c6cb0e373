"""imagefolder and table: a user's own dataset, with an optional taxonomy table."""

import json
import tarfile

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from inat_layout import write_image
from release_layouts import write_lines
from vlconvert.adapters.imagefolder import path_key

import vlconvert
from vlconvert import VLConvertError, create_adapter


def make_folder(root, layout):
    for relative in layout:
        path = root / relative
        if relative.endswith((".jpg", ".png")):
            write_image(path, (120, 30, 60), fmt="PNG" if relative.endswith(".png") else "JPEG")
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("notes")
    return root


SPLIT_LAYOUT = ["train/Pica hudsonia/a.jpg", "train/Pica hudsonia/b.jpg", "train/Quercus robur/c.png",
                "train/Quercus robur/deeper/d.jpg", "train/Quercus robur/readme.txt", "train/.DS_Store/x.jpg",
                "val/Pica hudsonia/e.jpg", "val/Quercus robur/f.jpg"]


def test_imagefolder_split_layout(tmp_path):
    adapter = create_adapter("imagefolder", str(make_folder(tmp_path, SPLIT_LAYOUT)))
    assert adapter.splits() == ["train", "val"]
    assert [c.name for c in adapter.classes()] == ["Pica hudsonia", "Quercus robur"]
    train = adapter.records("train")
    assert sorted(r.source for r in train) == ["train/Pica hudsonia/a.jpg", "train/Pica hudsonia/b.jpg",
                                               "train/Quercus robur/c.png", "train/Quercus robur/deeper/d.jpg"]
    assert [r.reason for r in adapter.rejected("train")] == ["not an image file (extension .txt)"]
    assert len({r.key for r in train}) == 4 and all("." not in r.key for r in train)


def test_imagefolder_class_layout_with_seeded_val_fraction(tmp_path):
    layout = [f"{cls}/{i:03d}.jpg" for cls in ("Pica hudsonia", "Quercus robur") for i in range(60)]
    root = make_folder(tmp_path, layout)
    adapter = create_adapter("imagefolder", str(root), {"val_fraction": "0.25", "seed": "3"})
    train, val = adapter.records("train"), adapter.records("val")
    assert len(train) + len(val) == 120 and 15 <= len(val) <= 45
    again = create_adapter("imagefolder", str(root), {"val_fraction": "0.25", "seed": "3"})
    assert [r.key for r in again.records("val")] == [r.key for r in val]
    other = create_adapter("imagefolder", str(root), {"val_fraction": "0.25", "seed": "4"})
    assert [r.key for r in other.records("val")] != [r.key for r in val]
    assert create_adapter("imagefolder", str(root)).splits() == ["train"]


def test_imagefolder_taxonomy_table_gives_taxonomic_captions(tmp_path):
    root = make_folder(tmp_path / "data", SPLIT_LAYOUT)
    taxonomy = tmp_path / "taxonomy.csv"
    taxonomy.write_text("folder,common_name,kingdom,phylum,class,order,family,genus,species,habitat\n"
                        "Pica hudsonia,Black-billed Magpie,Animalia,Chordata,Aves,Passeriformes,Corvidae,Pica,hudsonia,prairie\n")
    out = tmp_path / "out"
    vlconvert.build("imagefolder", str(root), str(out), splits=["val"], adapter_options={"taxonomy": str(taxonomy)})
    with tarfile.open(out / "val" / "val-000000.tar") as tar:
        texts = {tar.extractfile(m).read().decode() for m in tar if m.name.endswith(".txt")}
        meta = [json.loads(tar.extractfile(m).read()) for m in tar if m.name.endswith(".json")]
    assert texts == {"a photo of Animalia Chordata Aves Passeriformes Corvidae Pica hudsonia with common name Black-billed Magpie.",
                     "a photo of Quercus robur."}
    assert {m["class_fields"].get("habitat") for m in meta} == {"prairie", None}


@pytest.mark.parametrize(
    ("layout", "options", "message"),
    [
        (["train/a/x.jpg", "photos/a/y.jpg"], {}, "photos: not a split folder"),
        (["train/a/x.jpg"], {"val_fraction": "0.2"}, "val_fraction applies only to ROOT/<class>/"),
        (["a/x.jpg"], {"val_fraction": "1.5"}, "option val_fraction='1.5' must be between 0 and 1"),
        (["a/x.jpg"], {"taxonomy": "missing.csv"}, "missing.csv: not found"),
        ([], {}, "holds no folders"),
    ],
)
def test_imagefolder_layout_errors(tmp_path, layout, options, message):
    root = make_folder(tmp_path / "data", layout)
    root.mkdir(exist_ok=True)
    with pytest.raises(VLConvertError, match=message):
        create_adapter("imagefolder", str(root), options).classes()


def test_path_keys_are_stable_unique_and_dot_free():
    assert path_key("train/a/IMG 0001.final.jpg") == path_key("train/a/IMG 0001.final.jpg")
    assert path_key("train/a/x.jpg") != path_key("train/b/x.jpg")
    assert path_key("train/a/IMG 0001.final.jpg").startswith("IMG_0001_final_")


def test_table_hugging_face_metadata_csv(tmp_path):
    for name in ("a.jpg", "b.jpg", "sub/c.jpg"):
        write_image(tmp_path / name, (10, 200, 10))
    (tmp_path / "metadata.csv").write_text("file_name,label,site,split\na.jpg,Pica hudsonia,north,train\n"
                                           "b.jpg,Quercus robur,south,train\nsub/c.jpg,Pica hudsonia,east,test\n")
    adapter = create_adapter("table", str(tmp_path))
    assert adapter.splits() == ["test", "train"]
    assert [c.name for c in adapter.classes()] == ["Pica hudsonia", "Quercus robur"]
    (record,) = adapter.records("test")
    assert record.image == str(tmp_path / "sub/c.jpg") and record.metadata == {"site": "east"} and record.key == "row2"


def test_table_parquet_and_jsonl_with_named_columns_and_urls(tmp_path):
    write_image(tmp_path / "imgs" / "x.jpg", (1, 2, 3))
    pq.write_table(pa.table({"img": [str(tmp_path / "imgs" / "x.jpg"), f"file://{tmp_path}/imgs/x.jpg"], "taxon": [7, 3],
                             "uid": ["obs-1", "obs-2"]}), tmp_path / "list.parquet")
    adapter = create_adapter("table", str(tmp_path / "list.parquet"), {"image_column": "img", "label_column": "taxon", "key_column": "uid"})
    assert [c.name for c in adapter.classes()] == ["3", "7"]
    records = adapter.records("train")
    assert [r.key for r in records] == ["obs-1", "obs-2"] and records[1].image == f"file://{tmp_path}/imgs/x.jpg"
    out = tmp_path.with_name(tmp_path.name + "-out")
    summary = vlconvert.build("table", str(tmp_path / "list.parquet"), str(out),
                              adapter_options={"image_column": "img", "label_column": "taxon", "key_column": "uid"})
    assert summary.written == 2
    (tmp_path / "rows.jsonl").write_text('{"path": "imgs/x.jpg", "species": "A"}\n{"path": null, "species": "B"}\n')
    adapter = create_adapter("table", str(tmp_path / "rows.jsonl"))
    assert len(adapter.records("train")) == 1 and adapter.rejected("train")[0].reason == "the release gives this image no file"


@pytest.mark.parametrize(
    ("content", "options", "message"),
    [
        ("file_name,kind\na.jpg,x\n", {}, "no label column; name one with --option label_column=NAME"),
        ("file_name,label\na.jpg,x\n", {"label_column": "taxon"}, "has no column 'taxon'"),
        ("photo,label\na.jpg,x\n", {}, "no image column"),
    ],
)
def test_table_column_errors(tmp_path, content, options, message):
    write_lines(tmp_path / "metadata.csv", content.splitlines())
    with pytest.raises(VLConvertError, match=message):
        create_adapter("table", str(tmp_path), options).classes()


def test_table_folder_without_metadata_is_a_clear_error(tmp_path):
    with pytest.raises(VLConvertError, match="a folder without metadata.csv, metadata.jsonl, metadata.parquet"):
        create_adapter("table", str(tmp_path))


def test_imagefolder_files_outside_class_folders_are_rejected_not_lost(tmp_path):
    root = make_folder(tmp_path / "data", ["train/a/x.jpg", "train/loose.jpg", "val/b/y.jpg"])
    (tmp_path / "elsewhere").mkdir()
    write_image(tmp_path / "elsewhere" / "z.jpg", (1, 1, 1))
    (root / "train" / "linked").symlink_to(tmp_path / "elsewhere")
    adapter = create_adapter("imagefolder", str(root))
    # A linked class folder outside the root is not followed, and says so (docs/security.md).
    assert [c.name for c in adapter.classes()] == ["a", "b"]
    reasons = sorted(r.reason for r in adapter.rejected("train"))
    assert reasons[0] == "a file outside any class folder"
    assert reasons[1].startswith(f"a link to the folder {tmp_path / 'elsewhere'}, outside the dataset root; not followed")
    assert len(adapter.records("train")) == 1
    allowed = create_adapter("imagefolder", str(root), {"allow_outside_root": "true"})
    assert [c.name for c in allowed.classes()] == ["a", "b", "linked"] and len(allowed.records("train")) == 2


def test_imagefolder_split_names_ignore_case(tmp_path):
    adapter = create_adapter("imagefolder", str(make_folder(tmp_path, ["Train/a/x.jpg", "Test/a/y.jpg"])))
    assert adapter.splits() == ["Test", "Train"] and [c.name for c in adapter.classes()] == ["a"]


def test_table_keeps_leading_zeros_and_rejects_duplicates_and_bad_labels(tmp_path):
    for name in ("a.jpg", "b.jpg"):
        write_image(tmp_path / name, (5, 5, 5))
    (tmp_path / "metadata.csv").write_text("file_name,label,key\na.jpg,001,0001\nb.jpg,010,0001\nb.jpg,,x2\n")
    adapter = create_adapter("table", str(tmp_path))
    assert [c.name for c in adapter.classes()] == ["001", "010"]
    assert [r.key for r in adapter.records("train")] == ["0001"]
    assert sorted(r.reason for r in adapter.rejected("train")) == ["duplicate image id 0001 (first: a.jpg)",
                                                                   "the release gives this image no class"]
    (tmp_path / "lists.jsonl").write_text('{"path": "a.jpg", "label": ["x", "y"]}\n')
    adapter = create_adapter("table", str(tmp_path / "lists.jsonl"))
    assert adapter.rejected("train")[0].reason == "the label cell holds list ['x', 'y'], not one label"
    (tmp_path / "floats.jsonl").write_text('{"path": "b.jpg", "label": 2.0}\n')
    assert [c.name for c in create_adapter("table", str(tmp_path / "floats.jsonl")).classes()] == ["2"]
    (tmp_path / "mixed.jsonl").write_text('{"path": "a.jpg", "label": ["x"]}\n{"path": "b.jpg", "label": 2}\n')
    with pytest.raises(VLConvertError, match="mixed.jsonl: cannot be read as json"):
        create_adapter("table", str(tmp_path / "mixed.jsonl")).classes()


def test_table_without_rows_and_unreadable_urls(tmp_path):
    (tmp_path / "metadata.csv").write_text("file_name,label\n")
    with pytest.raises(VLConvertError, match="metadata.csv: lists no rows"):
        create_adapter("table", str(tmp_path)).classes()
    (tmp_path / "metadata.csv").write_text("file_name,label\nhttp://127.0.0.1:9/a.jpg,x\n")
    out = tmp_path.with_name(tmp_path.name + "-out")
    summary = vlconvert.build("table", str(tmp_path), str(out))
    assert (summary.written, summary.errored) == (0, 1)
    error = json.loads((out / "errors.jsonl").read_text())
    assert error["stage"] == "image" and error["reason"].startswith("cannot read image http://127.0.0.1:9/a.jpg")


def test_taxonomy_folder_names_keep_leading_zeros(tmp_path):
    root = make_folder(tmp_path / "data", ["0817/x.jpg"])
    (tmp_path / "tax.csv").write_text("folder,name,genus\n0817,Agelaius phoeniceus,Agelaius\n")
    (cls,) = create_adapter("imagefolder", str(root), {"taxonomy": str(tmp_path / "tax.csv")}).classes()
    assert (cls.name, cls.ranks) == ("Agelaius phoeniceus", {"genus": "Agelaius"})
