"""iNaturalist 2017, 2018 and 2019: the same COCO-style reader, each year's category quirks."""

import pytest
from inat_layout import category, make_inat_root, read_json, write_json

import vlconvert
from vlconvert import VLConvertError, create_adapter

PICA, OAK = category("Pica hudsonia"), category("Quercus robur")
RANKS = ("kingdom", "phylum", "class", "order", "family", "genus")


FOLDERS = {  # each year's image folders: by species name (2017), by category id (2018), by English group (2019)
    2017: lambda c: f"train_val_images/{c['supercategory']}/{c['name']}",
    2018: lambda c: f"train_val2018/{c['kingdom']}/{c['id']}",
    2019: lambda c: f"train_val2019/{c['supercategory']}/{c['id']}",
}


def relayout(tmp_path, year: int, categories: list[dict]):
    """An iNat-2021-layout fixture moved into that year's files and folders, with that year's category fields."""
    root = make_inat_root(tmp_path, categories=[PICA, OAK], per_class={"train": 2, "val": 1})
    by_id = {c["id"]: c for c in (PICA, OAK)}
    for split in ("train", "val"):
        doc = read_json(root / f"{split}.json")
        label_of = {a["image_id"]: a["category_id"] for a in doc["annotations"]}
        for image in doc["images"]:
            name = f"{FOLDERS[year](by_id[label_of[image['id']]])}/{image['id']:032x}.jpg"
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / image["file_name"]).rename(root / name)
            image["file_name"] = name
        doc["categories"] = categories
        write_json(root / f"{split}{year}.json", doc)
        (root / f"{split}.json").unlink()
    return root


def test_inat2017_names_and_supercategories_only(tmp_path):
    cats = [{"id": c["id"], "name": c["name"], "supercategory": c["supercategory"]} for c in (PICA, OAK)]
    adapter = create_adapter("inat2017", str(relayout(tmp_path, 2017, cats)))
    assert adapter.splits() == ["train", "val"]
    pica = adapter.classes()[0]
    assert (pica.name, pica.taxonomy, pica.extra["supercategory"]) == ("Pica hudsonia", (), "Birds")
    out = tmp_path.with_name(tmp_path.name + "-out")  # beside the dataset, never inside it
    vlconvert.build("inat2017", str(tmp_path), str(out), splits=["val"], templates=["taxonomic", "metadata_concat"])
    manifest = read_json(out / "manifest.json")
    assert manifest["splits"]["val"]["written"] == 2


def test_inat2018_takes_real_names_from_categories_json(tmp_path):
    obfuscated = [{"id": c["id"], "name": f"{i:04d}", **{r: "x" for r in RANKS}} for i, c in enumerate((PICA, OAK))]
    root = relayout(tmp_path, 2018, obfuscated)
    with pytest.raises(VLConvertError, match="categories.json not found; inat2018's train2018.json has obfuscated category names"):
        create_adapter("inat2018", str(root)).classes()
    write_json(root / "categories.json", [{"id": c["id"], "name": c["name"], "supercategory": c["supercategory"],
                                           **{r: c[r] for r in RANKS}} for c in (OAK, PICA)])
    classes = create_adapter("inat2018", str(root)).classes()
    assert [c.name for c in classes] == ["Pica hudsonia", "Quercus robur"]
    assert classes[0].taxonomy[-2:] == (("genus", "Pica"), ("species", "hudsonia"))


def test_inat2019_ranks_up_to_genus_plus_the_epithet(tmp_path):
    cats = [{"id": c["id"], "name": c["name"], **{r: c[r] for r in RANKS}} for c in (PICA, OAK)]
    root = relayout(tmp_path, 2019, cats)
    out = tmp_path.with_name(tmp_path.name + "-out")
    vlconvert.build("inat2019", str(root), str(out), splits=["val"], templates=["taxonomic"])
    import tarfile

    with tarfile.open(out / "val" / "val-000000.tar") as tar:
        texts = sorted(tar.extractfile(m).read().decode() for m in tar if m.name.endswith(".txt"))
    assert texts == ["a photo of Animalia Chordata Aves Passeriformes Corvidae Pica hudsonia.",
                     "a photo of Plantae Tracheophyta Magnoliopsida Fagales Fagaceae Quercus robur."]


def test_a_root_of_another_year_says_what_it_expected(tmp_path):
    make_inat_root(tmp_path, per_class={"val": 1})
    with pytest.raises(VLConvertError, match="found none of train2019.json, val2019.json; point --root at the folder where the "
                                             "inat2019 annotation files were extracted"):
        create_adapter("inat2019", str(tmp_path))
