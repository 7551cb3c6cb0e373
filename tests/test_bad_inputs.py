"""The bad-input corpus: every kind of broken record in one real build, and the fatal mistakes apart.

Per-record problems must end in errors.jsonl with a reason while every good record is
written; whole-input problems must stop the build with one line and exit 2.
"""

import ctypes
import io
import json
import os
import struct
import subprocess
import tarfile
import zlib
from pathlib import Path

import pytest
from command import VLCONVERT, run
from inat_layout import category, make_inat_root, read_json, write_json
from PIL import Image

import vlconvert
from vlconvert import ClassInfo, Record

GOOD_ODDITIES = ("cmyk", "png16", "palette_alpha", "la", "exif_rotated", "one_pixel")


def png_claiming(width: int, height: int) -> bytes:
    """A PNG header for a huge image with no pixel data: a decompression bomb that costs nothing to make."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) + chunk(b"IEND", b"")


def odd_image(kind: str) -> bytes:
    out = io.BytesIO()
    if kind == "cmyk":
        Image.new("CMYK", (40, 30), (0, 200, 100, 0)).save(out, "JPEG")
    elif kind == "png16":
        Image.new("I;16", (40, 30), 40000).save(out, "PNG")
    elif kind == "palette_alpha":
        img = Image.new("P", (40, 30), 1)
        img.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
        img.info["transparency"] = 0
        img.save(out, "PNG", transparency=0)
    elif kind == "la":
        Image.new("LA", (40, 30), (120, 200)).save(out, "PNG")
    elif kind == "exif_rotated":
        exif = Image.Exif()
        exif[0x0112] = 6  # stored landscape, shown portrait
        Image.new("RGB", (40, 20), (9, 99, 199)).save(out, "JPEG", exif=exif)
    elif kind == "one_pixel":
        Image.new("RGB", (1, 1), (1, 2, 3)).save(out, "JPEG")
    return out.getvalue()


def drop_file_permission_override() -> None:
    """Run as root, the child would read a mode-000 file anyway; without these capabilities it cannot."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        libc.prctl(24, capability, 0, 0, 0)  # PR_CAPBSET_DROP: gone from the bounding set, so from the exec'd program


@pytest.fixture
def corpus(tmp_path):
    """An iNat-2021 layout whose val split holds every per-record problem, next to 24 good images."""
    root = make_inat_root(tmp_path / "inat", per_class={"val": 2})
    doc = read_json(root / "val.json")
    template = category("Danaus plexippus")
    odd_names = {"Danaus plexippus\nsecond line": 900001, "Tab\tand/slash": 900002}
    for name, cat_id in odd_names.items():
        doc["categories"].append({**template, "id": cat_id, "name": name, "image_dir_name": f"odd_{cat_id}"})
    cat_id = doc["categories"][0]["id"]
    folder = root / "val" / "bad"
    folder.mkdir(parents=True)
    expected_bad: dict[str, str] = {}
    next_id = [50_000]

    def add(file_name: str, content: bytes | None, category_id: int = cat_id, image_id: int | None = None) -> str:
        image_id = image_id if image_id is not None else next_id[0]
        next_id[0] += 1
        if content is not None:
            (root / file_name).parent.mkdir(parents=True, exist_ok=True)
            (root / file_name).write_bytes(content)
        doc["images"].append({"id": image_id, "file_name": file_name, "width": 1, "height": 1})
        doc["annotations"].append({"id": image_id, "image_id": image_id, "category_id": category_id})
        return str(image_id)

    good_jpeg = odd_image("one_pixel")
    whole = io.BytesIO()
    Image.effect_noise((64, 48), 60).convert("RGB").save(whole, "JPEG")
    expected_bad[add("val/bad/truncated.jpg", whole.getvalue()[:300])] = "cannot decode image"
    expected_bad[add("val/bad/empty.jpg", b"")] = "not a recognised image format"
    expected_bad[add("val/bad/text.jpg", b"just some text, not a JPEG\n")] = "not a recognised image format"
    expected_bad[add("val/bad/bomb.png", png_claiming(30_000, 30_000))] = "cannot decode image"
    expected_bad[add("val/bad/missing.jpg", None)] = "image file not found"
    expected_bad[add("val/bad/locked.jpg", good_jpeg)] = "Permission denied"
    expected_bad[add("../../etc/passwd", None)] = "points outside the dataset root"
    expected_bad[add("/etc/hostname", None)] = "points outside the dataset root"
    expected_bad[add("val/bad/unknown.jpg", good_jpeg, category_id=424242)] = "unknown category id 424242"
    duplicate = add("val/bad/first.jpg", good_jpeg)
    expected_bad[add("val/bad/again.jpg", good_jpeg, image_id=int(duplicate)) + "#dup"] = "duplicate image id"
    good = {kind: add(f"val/bad/{kind}.{'png' if 'png' in kind or kind in ('la', 'palette_alpha') else 'jpg'}", odd_image(kind))
            for kind in GOOD_ODDITIES}
    for name, odd_id in odd_names.items():
        good[name] = add(f"val/odd_{odd_id}/x.jpg", good_jpeg, category_id=odd_id)
    (folder / "locked.jpg").chmod(0)
    write_json(root / "val.json", doc)
    return root, expected_bad, good, duplicate


def test_the_whole_corpus_in_one_build(corpus, tmp_path):
    root, expected_bad, good, duplicate = corpus
    out = tmp_path / "out"
    result = subprocess.run([VLCONVERT, "build", "--adapter", "inat2021", "--root", str(root), "--out", str(out), "--shard-size", "10"],
                            capture_output=True, text=True, timeout=300, preexec_fn=drop_file_permission_override)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert f"warning: {len(expected_bad)} of" in result.stderr and "errors.jsonl" in result.stderr

    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    by_key: dict[str, list[dict]] = {}
    for error in errors:
        by_key.setdefault(error["key"], []).append(error)
    for key, reason in expected_bad.items():
        key = key.removesuffix("#dup")
        assert key in by_key, f"{reason}: record {key} not reported"
        assert any(reason in e["reason"] for e in by_key[key]), (key, by_key[key])
    assert all(e["reason"] and e["stage"] and e["source"] for e in errors)
    assert {e["stage"] for e in errors if "outside the dataset root" in e["reason"]} == {"adapter"}  # refused, never opened

    written = {}
    for shard in sorted((out / "val").glob("*.tar")):
        with tarfile.open(shard) as tar:
            for member in tar.getmembers():
                key, _, ext = member.name.partition(".")
                written.setdefault(key, {})[ext] = tar.extractfile(member).read()
    assert len(written) == 24 + len(good) + 1  # the first of the duplicated ids is a good record
    assert duplicate in written
    for kind, key in good.items():
        image_ext = next(ext for ext in written[key] if ext in ("jpg", "png", "webp"))
        with Image.open(io.BytesIO(written[key][image_ext])) as img:
            assert img.mode == "RGB", kind
            if kind == "exif_rotated":
                assert img.size == (20, 40)
    manifest = read_json(out / "manifest.json")
    val = manifest["splits"]["val"]
    assert val["read"] == val["written"] + val["errored"] == len(written) + len(errors)
    classnames = (out / "classnames.txt").read_text().splitlines()
    assert len(classnames) == manifest["num_classes"] == 14
    assert "Danaus plexippus second line" in (out / "classes.jsonl").read_text().replace("\\n", " ")


@pytest.mark.slow
def test_strict_and_max_error_rate_turn_rejections_into_exit_3(corpus, tmp_path):
    root, expected_bad, _, _ = corpus
    result = run("build", "--adapter", "inat2021", "--root", str(root), "--out", str(tmp_path / "strict"), "--strict")
    assert result.returncode == 3, result.stderr
    # The metadata alone rejects records: --strict stops before any image is read or file written.
    assert "already rejects" in result.stderr and "Nothing was written" in result.stderr and not (tmp_path / "strict").exists()
    lenient = run("build", "--adapter", "inat2021", "--root", str(root), "--out", str(tmp_path / "half"), "--max-error-rate", "0.5")
    assert lenient.returncode == 0, lenient.stderr
    tight = run("build", "--adapter", "inat2021", "--root", str(root), "--out", str(tmp_path / "tight"), "--max-error-rate", "0.12")
    assert tight.returncode == 3 and "--max-error-rate allows 12.00%" in tight.stderr
    assert read_json(tmp_path / "tight" / "manifest.json")["status"] == "complete"  # built; the exit code flags it


class OffByOne:
    """A third-party adapter with a bug: one record's label is past the last class."""

    name = "off_by_one"

    def __init__(self, images: Path):
        self.images = images

    def classes(self):
        return [ClassInfo(0, "Pica hudsonia"), ClassInfo(1, "Pica pica")]

    def splits(self):
        return ["train"]

    def records(self, split):
        return [Record(f"r{label}", str(self.images), label, split) for label in (0, 1, 2)]

    def rejected(self, split):
        return []


def test_a_label_outside_the_classes_is_rejected_not_a_crash(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "x.jpg")
    summary = vlconvert.build(OffByOne(tmp_path / "x.jpg"), "memory", str(tmp_path / "out"))
    assert (summary.written, summary.errored) == (2, 1)
    (error,) = [json.loads(line) for line in (tmp_path / "out" / "errors.jsonl").read_text().splitlines()]
    assert error["key"] == "r2" and "label 2 is not one of the adapter's 2 classes (0..1)" in error["reason"]


def test_keys_that_collide_after_sanitizing_stay_apart(tmp_path):
    for name in ("a b.jpg", "a_b.jpg", "a.b.jpg", "a%b.jpg"):
        (tmp_path / "data" / "Pica pica").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8), (len(name), 0, 0)).save(tmp_path / "data" / "Pica pica" / name)
    summary = vlconvert.build("imagefolder", str(tmp_path / "data"), str(tmp_path / "out"), adapter_options={"val_fraction": "0"})
    assert summary.written == 4
    with tarfile.open(tmp_path / "out" / "train" / "train-000000.tar") as tar:
        keys = {m.name.partition(".")[0] for m in tar.getmembers()}
    assert len(keys) == 4 and all(k.startswith("a_b_") for k in keys)


@pytest.mark.parametrize(("damage", "message"), [
    (lambda text: text[: len(text) // 2], "val.json"),
    (lambda text: text.replace('"images"', '"images" :: ', 1), "val.json"),
])
def test_broken_or_cut_off_json_stops_with_one_line(tmp_path, damage, message):
    root = make_inat_root(tmp_path / "inat", per_class={"val": 1})
    (root / "val.json").write_text(damage((root / "val.json").read_text()))
    result = run("build", "--adapter", "inat2021", "--root", str(root), "--out", str(tmp_path / "out"))
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 2  # "reading …" and the error
    assert not (tmp_path / "out").exists()


def test_a_csv_with_bytes_that_are_not_utf8(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "x.jpg")
    (tmp_path / "metadata.csv").write_bytes(b"file_name,label\nx.jpg,Caf\xe9 bird\n")
    out = tmp_path.with_name(tmp_path.name + "-out")
    result = run("build", "--adapter", "table", "--root", str(tmp_path), "--out", str(out))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "metadata.csv: line 2 is not UTF-8 (byte 0xE9 at column 10); save it as UTF-8" in result.stderr
    assert not out.exists()


def test_a_template_naming_a_missing_field_fails_before_any_image(tmp_path):
    root = make_inat_root(tmp_path / "inat", per_class={"val": 1})
    for image in root.rglob("*.jpg"):
        image.unlink()
    (tmp_path / "t.j2").write_text("a photo of {{ wingspan }}")
    result = run("build", "--adapter", "inat2021", "--root", str(root), "--out", str(tmp_path / "out"),
                 "--template", str(tmp_path / "t.j2"))
    assert result.returncode == 2 and "wingspan" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_paths_outside_a_table_root_are_refused(tmp_path):
    (tmp_path / "data").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "outside.jpg")
    Image.new("RGB", (8, 8)).save(tmp_path / "data" / "inside.jpg")
    rows = f"file_name,label\ninside.jpg,A\n../outside.jpg,A\n{tmp_path}/outside.jpg,A\nfile://{tmp_path}/outside.jpg,A\n"
    (tmp_path / "data" / "metadata.csv").write_text(rows)
    summary = vlconvert.build("table", str(tmp_path / "data"), str(tmp_path / "out"))
    assert (summary.written, summary.errored) == (1, 3)
    reasons = [json.loads(line)["reason"] for line in (tmp_path / "out" / "errors.jsonl").read_text().splitlines()]
    assert all("points outside the dataset root" in r for r in reasons)
    allowed = vlconvert.build("table", str(tmp_path / "data"), str(tmp_path / "out2"), adapter_options={"allow_outside_root": "true"})
    assert allowed.written == 4
    assert os.path.exists(tmp_path / "out2" / "manifest.json")


def test_an_unreadable_class_folder_stops_the_build_instead_of_losing_its_images(tmp_path):
    for cls in ("Pica pica", "Pica hudsonia"):
        (tmp_path / "data" / cls).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(tmp_path / "data" / cls / "x.jpg")
    (tmp_path / "data" / "Pica hudsonia" / "more").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "data" / "Pica hudsonia" / "more" / "y.jpg")
    (tmp_path / "data" / "Pica hudsonia" / "more").chmod(0)
    try:
        result = subprocess.run([VLCONVERT, "build", "--adapter", "imagefolder", "--root", str(tmp_path / "data"),
                                 "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=120,
                                preexec_fn=drop_file_permission_override)
    finally:
        (tmp_path / "data" / "Pica hudsonia" / "more").chmod(0o755)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "more: cannot list this folder (Permission denied)" in result.stderr and not (tmp_path / "out").exists()


def test_an_image_field_named_label_does_not_collide_with_the_joined_label(tmp_path):
    root = make_inat_root(tmp_path / "inat", per_class={"train": 2, "val": 1})
    for split in ("train", "val"):
        doc = read_json(root / f"{split}.json")
        for image in doc["images"]:
            image["label"] = "user's own field"
        write_json(root / f"{split}.json", doc)
    summary = vlconvert.build("inat2021", str(root), str(tmp_path / "out"), holdout_classes=0.25)
    assert summary.errored == 0 and summary.splits["val"].written == 12
    with tarfile.open(tmp_path / "out" / "val" / "val-000000.tar") as tar:
        sample = json.loads(tar.extractfile(next(m for m in tar.getmembers() if m.name.endswith(".json"))).read())
    assert sample["metadata"]["label"] == "user's own field" and isinstance(sample["label"], int)
