"""``--min-per-class`` and ``--max-per-class``: training splits balanced, the label space and evaluation splits kept."""

import hashlib
import json
import tarfile
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from command import run
from inat_layout import make_inat_root, read_json, write_json

import vlconvert
from vlconvert import VLConvertError
from vlconvert.readback.inspect import inspect
from vlconvert.validate import validate

SMALL = {2: 2, 7: 3}  # label → training images; every other class has FULL
FULL = 8


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """12 classes: 8 training images each, but 2 of label 2 and 3 of label 7; 2 validation images each."""
    root = make_inat_root(tmp_path_factory.mktemp("balance") / "inat", per_class={"train": FULL, "val": 2})
    document = read_json(root / "train.json")
    label_of = {c["id"]: label for label, c in enumerate(sorted(document["categories"], key=lambda c: c["id"]))}
    category_of = {a["image_id"]: a["category_id"] for a in document["annotations"]}
    seen, dropped = Counter(), set()
    for image in document["images"]:
        label = label_of[category_of[image["id"]]]
        seen[label] += 1
        if seen[label] > SMALL.get(label, FULL):
            dropped.add(image["id"])
            (root / image["file_name"]).unlink()
    document["images"] = [i for i in document["images"] if i["id"] not in dropped]
    document["annotations"] = [a for a in document["annotations"] if a["image_id"] not in dropped]
    write_json(root / "train.json", document)
    return root


def labels_in_shards(out: Path, split: str) -> dict[int, set[str]]:
    """label → keys, read back from the split's tar shards."""
    keys = defaultdict(set)
    for shard in sorted((out / split).glob("*.tar")):
        with tarfile.open(shard) as tar:
            for member in tar.getmembers():
                key, _, ext = member.name.partition(".")
                if ext == "cls":
                    keys[int(tar.extractfile(member).read())].add(key)
    return keys


def assert_accounted(manifest: dict) -> None:
    for split, info in manifest["splits"].items():
        assert info["read"] == info["written"] + info["errored"] + info["held_out"] + info["capped"], split


def test_min_per_class_drops_small_classes_from_training_splits_only(root, tmp_path):
    out = tmp_path / "out"
    summary = vlconvert.build("inat2021", str(root), str(out), min_per_class=4, shard_size=10)
    manifest = read_json(out / "manifest.json")
    names = (out / "classnames.txt").read_text(encoding="utf-8").splitlines()
    assert manifest["num_classes"] == len(names) == 12  # the label space is unchanged
    assert manifest["balance"] == {
        "min_per_class": 4, "max_per_class": None, "kept_out_of": ["train"],
        "splits": {"train": {"dropped_classes": [{"label": 2, "name": names[2], "records": 2},
                                                 {"label": 7, "name": names[7], "records": 3}],
                             "dropped_records": 5, "capped_classes": 0, "capped_records": 0}},
    }
    train, val = manifest["splits"]["train"], manifest["splits"]["val"]
    assert train["class_counts"] == [0 if label in SMALL else FULL for label in range(12)]
    assert (train["read"], train["written"], train["capped"]) == (10 * FULL + 5, 10 * FULL, 5)
    assert val["class_counts"] == [2] * 12 and val["capped"] == 0  # evaluation splits keep every class
    assert_accounted(manifest)
    assert summary.balance == manifest["balance"] and summary.splits["train"].capped == 5
    assert set(labels_in_shards(out, "train")) == set(range(12)) - set(SMALL)
    assert manifest["config"]["min_per_class"] == 4 and manifest["config"]["max_per_class"] is None

    # Frequency groups (inspect, and zeroshot's head/medium/tail) come from the training split's written counts:
    # a dropped class has none there, so it belongs to no group, like a held-out class.
    inspection = inspect(str(out), samples=0)
    assert inspection.frequency_split == "train" and inspection.class_counts == train["class_counts"]
    assert sum(inspection.groups.values()) == 12 - len(SMALL)
    assert not any("is not written" in p.what for p in validate(str(out)).problems)


@pytest.mark.slow
def test_max_per_class_keeps_a_seeded_reproducible_subset(root, tmp_path):
    def built(name: str, **options) -> dict:
        vlconvert.build("inat2021", str(root), str(tmp_path / name), max_per_class=5, shard_size=10, **options)
        return read_json(tmp_path / name / "manifest.json")

    first, other = built("a", seed=3), built("c", seed=4)
    built("b", seed=3, workers=2)
    train = first["splits"]["train"]
    assert train["class_counts"] == [SMALL.get(label, 5) for label in range(12)]
    assert train["capped"] == 10 * (FULL - 5) and first["balance"]["splits"]["train"]["capped_classes"] == 10
    assert first["splits"]["val"]["class_counts"] == [2] * 12
    assert_accounted(first)
    # The same seed gives the same bytes whatever the workers; another seed keeps other records.
    assert (tmp_path / "a" / "manifest.json").read_bytes() == (tmp_path / "b" / "manifest.json").read_bytes()
    for shard in train["shards"]:
        assert hashlib.sha256((tmp_path / "b" / shard["name"]).read_bytes()).hexdigest() == shard["sha256"]
    kept, kept_other = labels_in_shards(tmp_path / "a", "train"), labels_in_shards(tmp_path / "c", "train")
    assert all(len(keys) <= 5 for keys in kept.values()) and kept != kept_other
    assert other["splits"]["train"]["class_counts"] == train["class_counts"]

    # A record's rank depends only on the seed, the split and its key: holding another class out keeps the same records.
    holdout = tmp_path / "holdout.txt"
    holdout.write_text((tmp_path / "a" / "classnames.txt").read_text(encoding="utf-8").splitlines()[0] + "\n", encoding="utf-8")
    held = built("d", seed=3, holdout_classes=str(holdout))
    assert held["splits"]["train"]["held_out"] == FULL and held["splits"]["train"]["capped"] == 9 * (FULL - 5)
    assert labels_in_shards(tmp_path / "d", "train") == {label: keys for label, keys in kept.items() if label != 0}
    assert_accounted(held)


def test_classes_are_counted_after_held_out_classes_leave(root, tmp_path):
    holdout = tmp_path / "holdout.txt"
    names = vlconvert.build("inat2021", str(root), str(tmp_path / "names"), splits=["val"], shard_size=100)
    assert names.written == 24
    holdout.write_text((tmp_path / "names" / "classnames.txt").read_text(encoding="utf-8").splitlines()[2] + "\n", encoding="utf-8")
    out = tmp_path / "out"
    vlconvert.build("inat2021", str(root), str(out), min_per_class=4, max_per_class=6, holdout_classes=str(holdout))
    manifest = read_json(out / "manifest.json")
    balance = manifest["balance"]["splits"]["train"]
    assert [c["label"] for c in balance["dropped_classes"]] == [7]  # label 2 is held out, not dropped
    train = manifest["splits"]["train"]
    assert (train["held_out"], train["capped"]) == (2, 3 + 10 * (FULL - 6))
    assert_accounted(manifest)


@pytest.mark.slow
def test_the_command_prints_the_balance_and_the_dry_run_counts_it(root, tmp_path):
    options = ["--adapter", "inat2021", "--root", str(root), "--min-per-class", "4", "--max-per-class", "5", "--shard-size", "25"]
    result = run("build", *options, "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    line = "balanced train: capped 30 records of 10 classes at 5; dropped 2 classes under 4 images (5 records)"
    assert line in result.stdout.splitlines()

    dry = run("build", *options, "--out", str(tmp_path / "dry"), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    rows = {row.split()[0]: row.split()[1:] for row in dry.stdout.splitlines() if row.startswith(("train ", "val "))}
    assert rows == {"train": ["50", "0", "0", "35", "2", "0"], "val": ["24", "0", "0", "0", "1", "0"]}
    assert line in dry.stdout.splitlines() and not (tmp_path / "dry").exists()
    plan = vlconvert.build("inat2021", str(root), str(tmp_path / "dry"), dry_run=True, min_per_class=4, max_per_class=5)
    assert (plan.splits["train"].records, plan.splits["train"].capped, plan.splits["val"].capped) == (50, 35, 0)
    assert plan.balance == json.loads((tmp_path / "out" / "manifest.json").read_text())["balance"]


def test_the_cap_decides_the_bytes_so_only_the_same_cap_resumes(root, tmp_path):
    out, calls = tmp_path / "out", []

    def stop_after_two(progress) -> None:
        calls.append(progress)
        if len(calls) > 2:
            raise KeyboardInterrupt  # as Ctrl-C would, with two shard tasks done

    with pytest.raises(KeyboardInterrupt):
        vlconvert.build("inat2021", str(root), str(out), shard_size=5, max_per_class=5, progress=stop_after_two)
    with pytest.raises(VLConvertError, match="unfinished build with other inputs or options"):
        vlconvert.build("inat2021", str(root), str(out), shard_size=5, max_per_class=6)
    summary = vlconvert.build("inat2021", str(root), str(out), shard_size=5, max_per_class=5)
    assert summary.resumed_tasks == 2 and summary.splits["train"].capped == 10 * (FULL - 5)
    assert read_json(out / "manifest.json")["config"]["max_per_class"] == 5


@pytest.mark.slow
@pytest.mark.parametrize(("args", "message"), [
    (["--min-per-class", "0"], "'--min-per-class': 0 is not in the range x>=1"),
    (["--max-per-class", "-3"], "'--max-per-class': -3 is not in the range x>=1"),
    (["--max-per-class", "2.5"], "'--max-per-class': '2.5' is not a valid integer"),
    (["--min-per-class", "5", "--max-per-class", "3"], "--min-per-class 5 is more than --max-per-class 3"),
    (["--min-per-class", "9"], "--min-per-class 9 drops every class of split 'train'"),
])
def test_bad_values_exit_2_in_one_line(root, tmp_path, args, message):
    result = run("build", "--adapter", "inat2021", "--root", str(root), "--out", str(tmp_path / "out"), *args)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.lower().startswith("error:")]
    assert len(errors) == 1 and message in errors[0], result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("options", "message"), [
    ({"min_per_class": 0}, "min_per_class: must be at least 1, got 0"),
    ({"max_per_class": -1}, "max_per_class: must be at least 1, got -1"),
    ({"max_per_class": 2.5}, "max_per_class: expected an integer, got a number 2.5"),
    ({"min_per_class": "4"}, "min_per_class: expected an integer"),
    ({"min_per_class": 5, "max_per_class": 3}, "--min-per-class 5 is more than --max-per-class 3"),
])
def test_bad_values_from_python_are_one_line_errors(root, tmp_path, options, message):
    with pytest.raises(VLConvertError, match=message) as raised:
        vlconvert.build("inat2021", str(root), str(tmp_path / "out"), **options)
    assert "\n" not in str(raised.value)


def test_a_manifest_without_capped_still_validates_and_a_wrong_one_does_not(root, tmp_path):
    out = tmp_path / "out"
    vlconvert.build("inat2021", str(root), str(out), splits=["val"])
    manifest = read_json(out / "manifest.json")
    assert manifest["balance"] is None and manifest["splits"]["val"]["capped"] == 0
    del manifest["splits"]["val"]["capped"]  # as a build before --max-per-class wrote it
    (out / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    assert not any("is not written" in p.what for p in validate(str(out)).problems)
    manifest["splits"]["val"]["capped"] = 1
    (out / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    assert "read 24 is not written 24 + errored 0 + held out 0 + capped 1 + deduplicated 0" in [p.what for p in validate(str(out)).problems]
