"""Red team, inputs: a stranger's dataset may not lead vlconvert out of its root, hang it, exhaust it,
or slip a corrupt image into the shards (issue 13; threat model in docs/security.md).

Every case is built for real (symlinks, FIFOs, /dev/zero, loops, corrupt JPEG and PNG bytes,
nested JSON) and run by the real command under a memory and a time limit (hostile.run_confined).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
import time
from pathlib import Path

import pytest
from hostile import (
    VLCONVERT,
    cut_with_end_marker,
    header_claiming,
    interlaced_png,
    jpeg,
    make_fifo,
    nested_json,
    photo,
    png,
    png_claiming,
    run_confined,
    scan_bomb,
    zero_tail,
)
from inat_layout import make_inat_root, read_json, write_json
from PIL import Image

from vlconvert.readback.validate import validate


def errors_of(out: Path) -> dict[str, dict]:
    """errors.jsonl by the file as the dataset names it (an adapter's source is "<where> image <key> <path>")."""
    errors = map(json.loads, (out / "errors.jsonl").read_text().splitlines())
    return {e["source"].split(f" image {e['key']} ", 1)[-1]: e for e in errors}


def members_of(out: Path) -> dict[str, bytes]:
    found = {}
    for shard in sorted(out.rglob("*.tar")):
        with tarfile.open(shard) as tar:
            for member in tar.getmembers():
                found[member.name] = tar.extractfile(member).read()
    return found


def image_folder(root: Path, files: dict[str, bytes]) -> Path:
    for relative, data in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(data)
    return root


# ---------------------------------------------------------------------- links, special files, byte cap


@pytest.fixture
def linked_folder(tmp_path):
    """An image folder whose links lead out of the root, into a loop, into a device and onto a FIFO."""
    secret = tmp_path / "elsewhere" / "secret.jpg"
    secret.parent.mkdir()
    secret.write_bytes(jpeg(photo(seed=99)))
    root = image_folder(tmp_path / "data", {"Pica pica/a.jpg": jpeg(), "Pica pica/b.jpg": jpeg(), "Quercus robur/c.jpg": jpeg()})
    cls = root / "Pica pica"
    (cls / "passwd.jpg").symlink_to("/etc/passwd")
    (cls / "secret.jpg").symlink_to(secret)
    (cls / "zero.jpg").symlink_to("/dev/zero")
    (cls / "inside.jpg").symlink_to(cls / "a.jpg")  # a link within the root is fine
    (cls / "loop").symlink_to(".")
    (root / "Quercus robur" / "loop").symlink_to("..")
    (root / "Outside").symlink_to(secret.parent)  # a class folder that is a link out of the root
    make_fifo(cls / "fifo.jpg")
    return root


def test_links_out_of_the_root_loops_fifos_and_devices_are_refused_with_reasons(linked_folder, tmp_path):
    out = tmp_path / "out"
    result = run_confined("build", "-a", "imagefolder", "-r", str(linked_folder), "-o", str(out), "--workers", "2")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    errors = errors_of(out)
    assert "resolves to /etc/passwd, outside the dataset root" in errors["Pica pica/passwd.jpg"]["reason"]
    assert "outside the dataset root" in errors["Pica pica/secret.jpg"]["reason"]
    assert "outside the dataset root" in errors["Pica pica/zero.jpg"]["reason"]
    assert errors["Pica pica/fifo.jpg"]["reason"].endswith("is a FIFO, not a regular file; only regular files are read")
    assert "already read (a loop" in errors["Pica pica/loop"]["reason"]
    assert "already read (a loop" in errors["Quercus robur/loop"]["reason"]
    assert errors["Outside"]["reason"].startswith(f"a link to the folder {tmp_path / 'elsewhere'}, outside the dataset root")
    manifest = read_json(out / "manifest.json")
    # a.jpg, b.jpg, c.jpg and the link inside the root, each exactly once: the loops did not repeat them.
    assert manifest["splits"]["train"]["written"] == 4 and manifest["num_classes"] == 2
    assert manifest["splits"]["train"]["read"] == 4 + len(errors)
    secret = (tmp_path / "elsewhere" / "secret.jpg").read_bytes()
    written = members_of(out).values()
    assert secret not in written and not any(b"root:" in data for data in written)


def test_allow_outside_root_follows_links_but_still_reads_only_regular_files(linked_folder, tmp_path):
    out = tmp_path / "out"
    result = run_confined("build", "-a", "imagefolder", "-r", str(linked_folder), "-o", str(out),
                          "--option", "allow_outside_root=true")
    assert result.returncode == 0, result.stderr
    errors = errors_of(out)
    assert errors["Pica pica/zero.jpg"]["reason"].endswith("is a character device, not a regular file; only regular files are read")
    assert errors["Pica pica/passwd.jpg"]["reason"] == "not a recognised image format"
    assert "Pica pica/secret.jpg" not in errors and "Outside/secret.jpg" not in errors
    assert read_json(out / "manifest.json")["num_classes"] == 3


@pytest.mark.slow
def test_the_inat_layout_refuses_links_out_of_the_root(tmp_path):
    root = make_inat_root(tmp_path / "inat", per_class={"val": 1})
    doc = read_json(root / "val.json")
    first, second = doc["images"][0]["file_name"], doc["images"][1]["file_name"]
    (root / first).unlink()
    (root / first).symlink_to("/etc/passwd")
    folder = root / Path(second).parent
    moved = tmp_path / "moved"
    folder.rename(moved)
    folder.symlink_to(moved)  # a whole class folder on "another disk"
    out = tmp_path / "out"
    result = run_confined("build", "-a", "inat2021", "-r", str(root), "-o", str(out))
    assert result.returncode == 0, result.stderr
    errors = errors_of(out)
    assert "resolves to /etc/passwd, outside the dataset root" in errors[first]["reason"]
    assert f"resolves to {moved}" in errors[second]["reason"]
    assert read_json(out / "manifest.json")["splits"]["val"]["written"] == 10
    # The documented way to build from a dataset spread over links:
    allowed = run_confined("build", "-a", "inat2021", "-r", str(root), "-o", str(tmp_path / "allowed"),
                           "--option", "allow_outside_root=true")
    assert allowed.returncode == 0 and read_json(tmp_path / "allowed" / "manifest.json")["splits"]["val"]["written"] == 11


def test_the_byte_cap_refuses_a_large_file_without_reading_it(tmp_path):
    root = image_folder(tmp_path / "data", {"A/small.jpg": jpeg(), "A/big.png": png(), "B/x.jpg": jpeg()})
    out = tmp_path / "out"
    limit = len(png()) - 1
    result = run_confined("build", "-a", "imagefolder", "-r", str(root), "-o", str(out), "--max-image-bytes", str(limit))
    assert result.returncode == 0, result.stderr
    assert errors_of(out)["A/big.png"]["reason"].endswith(f"is {len(png()):,} bytes, over the limit of {limit:,} (--max-image-bytes)")
    assert read_json(out / "manifest.json")["image"]["max_bytes"] == limit


def test_file_urls_in_a_table_are_read_relative_to_the_table_never_the_working_folder(tmp_path):
    data = tmp_path / "data"
    image_folder(data, {"etc/ok.jpg": jpeg()})
    (data / "metadata.csv").write_text("file_name,label\nfile://etc/passwd,A\nfile://etc/ok.jpg,A\nfile://../outside.jpg,A\n")
    out = tmp_path / "out"
    result = run_confined("build", "-a", "table", "-r", str(data), "-o", str(out), cwd="/")  # from /, etc/passwd exists
    assert result.returncode == 0, result.stderr
    reasons = [e["reason"] for e in map(json.loads, (out / "errors.jsonl").read_text().splitlines())]
    assert sorted(reasons) == [f"image file not found: {data}/etc/passwd", "path 'file://../outside.jpg' points outside the dataset root"]
    assert read_json(out / "manifest.json")["splits"]["train"]["written"] == 1
    assert not any(b"root:" in m for m in members_of(out).values())


# ---------------------------------------------------------------------- images that do not decode cleanly

def gradient_png() -> bytes:
    """A smooth image compresses so well that zeros after its first third still inflate as valid codes."""
    out = io.BytesIO()
    Image.linear_gradient("L").convert("RGB").resize((200, 150)).save(out, "PNG")
    return out.getvalue()


CORRUPT = {
    "zero_tail.png": lambda: zero_tail(png()),
    "zero_tail_gradient.png": lambda: zero_tail(gradient_png()),
    "sliver_4000x3000.png": lambda: png_claiming(4000, 3000),
    "cut_with_end.jpg": lambda: cut_with_end_marker(jpeg()),
    "zero_tail.jpg": lambda: zero_tail(jpeg()),
    "cut_progressive.jpg": lambda: cut_with_end_marker(jpeg(progressive=True)),
    "header_13000.jpg": lambda: header_claiming(13000, 13000),
}


@pytest.mark.parametrize("resize", [None, "32"], ids=["passed-through", "resized"])
def test_corrupt_images_are_rejected_passed_through_or_resized(tmp_path, resize):
    files = {f"A/{name}": make() for name, make in CORRUPT.items()}
    root = image_folder(tmp_path / "data", {**files, "A/good.jpg": jpeg(), "A/good.png": png(), "B/good.jpg": jpeg(),
                                            "B/interlaced.png": interlaced_png()})
    assert len(CORRUPT["header_13000.jpg"]()) < 1000
    out = tmp_path / "out"
    result = run_confined("build", "-a", "imagefolder", "-r", str(root), "-o", str(out), *(["--resize", resize] if resize else []))
    assert result.returncode == 0, result.stderr
    errors = errors_of(out)
    assert set(errors) == set(files), errors
    assert all(e["stage"] == "image" and e["reason"].startswith("cannot decode image") for e in errors.values())
    assert "premature end" in errors["A/cut_with_end.jpg"]["reason"].lower()
    assert read_json(out / "manifest.json")["splits"]["train"]["written"] == 4
    assert validate(str(out)).ok


def test_a_scan_bomb_is_refused_from_its_header_at_once_and_on_every_run(tmp_path):
    bomb = scan_bomb()
    assert len(bomb) < 300_000
    root = image_folder(tmp_path / "data", {"A/bomb.jpg": bomb, "A/good.jpg": jpeg()})
    for run in ("first", "second"):
        started = time.monotonic()
        result = run_confined("build", "-a", "imagefolder", "-r", str(root), "-o", str(tmp_path / run), "--resize", "64", timeout=60)
        assert result.returncode == 0, result.stderr
        assert time.monotonic() - started < 30  # decoding it would take minutes
        reason = errors_of(tmp_path / run)["A/bomb.jpg"]["reason"]
        assert reason == ("JPEG of 4000x4000 pixels has 3,010 scans; decoding it would cost more than "
                          "10 scans of the largest image allowed (--max-image-pixels)")


def test_the_pixel_limit_is_checked_before_decoding(tmp_path):
    root = image_folder(tmp_path / "data", {"A/big.png": png(), "A/small.jpg": jpeg()})
    out = tmp_path / "out"
    result = run_confined("build", "-a", "imagefolder", "-r", str(root), "-o", str(out), "--max-image-pixels", "5000")
    assert result.returncode == 3 and "nothing was written" in result.stderr, result.stderr  # every image rejected
    reasons = {k: v["reason"] for k, v in errors_of(out).items()}
    assert reasons == {"A/big.png": "image is 96x72 = 6,912 pixels, over the limit of 5,000 (--max-image-pixels)",
                       "A/small.jpg": "image is 96x72 = 6,912 pixels, over the limit of 5,000 (--max-image-pixels)"}


# ---------------------------------------------------------------------- metadata of the wrong shape


@pytest.mark.slow
@pytest.mark.parametrize(("images", "says"), [
    ('"oops"', "'images' must be a list, but it is a string"),
    ("{}", "'images' must be a list, but it is an object"),
    ("null", "'images' must be a list, but it is null"),
    ("42", "'images' must be a list, but it is a number"),
])
def test_a_list_of_the_wrong_type_stops_the_build_naming_file_and_field(tmp_path, images, says):
    root = make_inat_root(tmp_path / "inat", per_class={"val": 1})
    text = (root / "val.json").read_text()
    doc = json.loads(text)
    doc["images"] = "PLACEHOLDER"
    (root / "val.json").write_text(json.dumps(doc).replace('"PLACEHOLDER"', images))
    result = run_confined("build", "-a", "inat2021", "-r", str(root), "-o", str(tmp_path / "out"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{root / 'val.json'}: {says}" in result.stderr
    assert not (tmp_path / "out").exists()


def test_categories_of_the_wrong_type_stop_the_build(tmp_path):
    root = make_inat_root(tmp_path / "inat", per_class={"val": 1})
    doc = read_json(root / "val.json")
    doc["categories"] = {"0": "Pica pica"}
    write_json(root / "val.json", doc)
    result = run_confined("build", "-a", "inat2021", "-r", str(root), "-o", str(tmp_path / "out"))
    assert result.returncode == 2 and "'categories' must be a list, but it is an object" in result.stderr


@pytest.mark.parametrize("where", ["images", "inside_an_image", "top_level"])
def test_deeply_nested_json_stops_within_memory_and_time(tmp_path, where):
    root = make_inat_root(tmp_path / "inat", per_class={"val": 1})
    doc = read_json(root / "val.json")
    if where == "images":
        text = nested_json(50_000)[:-1] + ', "annotations": [], "categories": ' + json.dumps(doc["categories"]) + "}"
    elif where == "inside_an_image":
        doc["images"][0]["extra"] = "NESTED"
        text = json.dumps(doc).replace('"NESTED"', "[" * 50_000 + "]" * 50_000)
    else:
        text = "[" * 50_000 + "]" * 50_000
    (root / "val.json").write_text(text)
    assert len(text) < 200_000 + len(json.dumps(doc))
    started = time.monotonic()
    result = run_confined("build", "-a", "inat2021", "-r", str(root), "-o", str(tmp_path / "out"), timeout=60)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "MemoryError" not in result.stderr
    assert "val.json: nested more than 64 levels deep near byte" in result.stderr
    assert time.monotonic() - started < 30


def test_a_deeply_nested_jsonl_table_is_an_error_not_a_crash(tmp_path):
    image_folder(tmp_path / "data", {"x.jpg": jpeg()})
    (tmp_path / "data" / "rows.jsonl").write_text('{"file_name": "x.jpg", "label": "A", "m": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
    result = run_confined("build", "-a", "table", "-r", str(tmp_path / "data" / "rows.jsonl"), "-o", str(tmp_path / "out"))
    assert result.returncode == 2, (result.returncode, result.stderr)  # pyarrow's reader alone segfaults (-11)
    assert "rows.jsonl: nested more than 64 levels deep" in result.stderr


def test_a_deeply_nested_config_file_is_an_error(tmp_path):
    (tmp_path / "build.json").write_text("[" * 100_000 + "]" * 100_000)
    result = run_confined("build", "--config", str(tmp_path / "build.json"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "build.json: not valid JSON" in result.stderr


# ---------------------------------------------------------------------- the accounting


def test_hidden_files_are_counted_in_the_manifest_and_listed_by_dry_run(tmp_path):
    root = image_folder(tmp_path / "data", {"A/x.jpg": jpeg(), "A/.hidden.jpg": jpeg(), "A/._x.jpg": b"AppleDouble",
                                            ".DS_Store": b"\0", "B/.ipynb_checkpoints/y.jpg": jpeg(), "B/y.jpg": jpeg()})
    plan = run_confined("build", "-a", "imagefolder", "-r", str(root), "-o", str(tmp_path / "out"), "--dry-run")
    assert plan.returncode == 0, plan.stderr
    assert "ignored: 4 hidden files and folders" in plan.stdout
    for path in (".DS_Store", "A/.hidden.jpg", "A/._x.jpg", "B/.ipynb_checkpoints/"):
        assert f"\n  {path}\n" in plan.stdout, path
    built = run_confined("build", "-a", "imagefolder", "-r", str(root), "-o", str(tmp_path / "out"))
    assert built.returncode == 0, built.stderr
    assert "ignored 4 hidden files and folders" in built.stdout
    train = read_json(tmp_path / "out" / "manifest.json")["splits"]["train"]
    assert (train["written"], train["errored"], train["ignored"]) == (2, 0, 4)


def test_a_non_finite_number_in_the_metadata_is_null_in_valid_json(tmp_path):
    image_folder(tmp_path / "data", {"x.jpg": jpeg(), "y.jpg": jpeg()})
    (tmp_path / "data" / "metadata.csv").write_text("file_name,label,latitude,depth\nx.jpg,A,inf,nan\ny.jpg,A,-inf,3.5\n")
    out = tmp_path / "out"
    result = run_confined("build", "-a", "table", "-r", str(tmp_path / "data"), "-o", str(out))
    assert result.returncode == 0, result.stderr

    def strict(constant):
        raise ValueError(f"{constant} is not JSON")

    documents = [json.loads(data, parse_constant=strict) for name, data in members_of(out).items() if name.endswith(".json")]
    assert sorted(((d["metadata"]["latitude"], d["metadata"]["depth"]) for d in documents), key=str) == [(None, 3.5), (None, None)]


@pytest.mark.slow
def test_an_interrupted_build_leaves_no_file_a_tar_glob_would_pick_up(tmp_path):
    root = make_inat_root(tmp_path / "inat", per_class={"val": 10})
    out = tmp_path / "out"
    (tmp_path / "slow.j2").write_text("{% for i in range(45000) %}{% endfor %}a photo of {{ name }}")
    process = subprocess.Popen([VLCONVERT, "build", "-a", "inat2021", "-r", str(root), "-o", str(out), "-t", str(tmp_path / "slow.j2"),
                                "--shard-size", "2"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list(out.rglob("_done-*")):
        time.sleep(0.02)
    process.kill()  # kill -9, mid-build
    process.wait()
    parts = sorted(p.name for p in (out / "val").iterdir())
    assert any(name.startswith("_done-") for name in parts), "the build finished before it could be interrupted"
    assert not list((out / "val").glob("*.tar")) and all(name.endswith(".part") for name in parts)
    # and the rerun finishes it
    rerun = run_confined("build", "-a", "inat2021", "-r", str(root), "-o", str(out), "-t", str(tmp_path / "slow.j2"), "--shard-size", "2")
    assert rerun.returncode == 0 and "resumed an interrupted build" in rerun.stdout
    assert len(list((out / "val").glob("*.tar"))) == 60 and not list((out / "val").glob("*.part"))


# ---------------------------------------------------------------------- found by the red team after the first pass


@pytest.mark.slow
@pytest.mark.parametrize(("adapter", "metadata"), [("cub200", "CUB_200_2011/images.txt"), ("inat2021", "val.json"),
                                                   ("table", "metadata.csv")])
@pytest.mark.parametrize("swap", ["fifo", "passwd", "zero"])
def test_a_release_file_that_is_special_or_leads_out_of_the_root_is_not_read(tmp_path, adapter, metadata, swap):
    from release_layouts import make_cub

    root = {"cub200": lambda: make_cub(tmp_path / "cub", attributes=False),
            "inat2021": lambda: make_inat_root(tmp_path / "inat", per_class={"val": 1}),
            "table": lambda: image_folder(tmp_path / "table", {"x.jpg": jpeg(), "metadata.csv": b"file_name,label\nx.jpg,A\n"})}[adapter]()
    (root / metadata).unlink()
    if swap == "fifo":
        make_fifo(root / metadata)
    else:
        (root / metadata).symlink_to({"passwd": "/etc/passwd", "zero": "/dev/zero"}[swap])
    result = run_confined("build", "-a", adapter, "-r", str(root), "-o", str(tmp_path / "out"), timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    said = "a FIFO, not a regular file; not read" if swap == "fifo" else "outside the dataset root; not read"
    assert f"{metadata}: " in result.stderr and said in result.stderr
    assert "root:" not in result.stderr  # not a line of /etc/passwd quoted in an error


def test_a_jsonl_table_with_a_stray_quote_cannot_hide_deep_nesting_from_the_guard(tmp_path):
    image_folder(tmp_path / "data", {"x.jpg": jpeg()})
    rows = '{"file_name": "x.jpg", "label": "A"}\n' * 2000 + '"\n' + ('{"m": ' + "[" * 100_000 + "]" * 100_000 + "}\n") * 3
    (tmp_path / "data" / "metadata.jsonl").write_text(rows)
    result = run_confined("build", "-a", "table", "-r", str(tmp_path / "data"), "-o", str(tmp_path / "out"))
    assert result.returncode == 2, (result.returncode, result.stderr)  # pyarrow alone: SIGSEGV (-11)
    assert "metadata.jsonl: not valid JSON (a string holds a line break or control character" in result.stderr


@pytest.mark.slow
def test_a_long_string_of_escaped_quotes_is_one_long_value(tmp_path):
    root = make_inat_root(tmp_path / "inat", per_class={"val": 1})
    text = (root / "val.json").read_text()
    (root / "val.json").write_text(text.replace('"licenses"', '"padding": "' + 'a\\"' * 23_000_000 + '", "licenses"', 1))
    result = run_confined("build", "-a", "inat2021", "-r", str(root), "-o", str(tmp_path / "out"), timeout=60)
    assert result.returncode == 2 and "is longer than 64 MB" in result.stderr, result.stderr


def test_file_and_folder_names_that_are_not_utf8_are_rejected_not_a_crash(tmp_path):
    root = image_folder(tmp_path / "data", {"A/ok.jpg": jpeg(), "B/ok.jpg": jpeg()})
    os.makedirs(os.fsencode(root / "A") + b"/sub\xff")
    with open(os.fsencode(root / "A") + b"/c\xfe.jpg", "wb") as f:
        f.write(jpeg())
    out = tmp_path / "out"
    result = run_confined("build", "-a", "imagefolder", "-r", str(root), "-o", str(out))
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    errors = errors_of(out)
    assert errors["A/c\\xfe.jpg"]["reason"] == "its name is not valid UTF-8; rename it"
    assert errors["A/sub\\xff"]["reason"] == "its name is not valid UTF-8; rename it"
    assert read_json(out / "manifest.json")["splits"]["train"]["written"] == 2


@pytest.mark.slow
def test_a_file_the_layout_puts_beside_the_root_is_read_there_and_nowhere_else(tmp_path):
    """CUB's attributes.txt lies beside CUB_200_2011/, which may itself be the root: it is read where it lies,
    but a link there to another file is refused like any other link out of the root."""
    from release_layouts import make_cub

    root = make_cub(tmp_path / "cub")
    built = run_confined("build", "-a", "cub200", "-r", str(root / "CUB_200_2011"), "-o", str(tmp_path / "out"),
                         "-t", "with_attributes")
    assert built.returncode == 0, built.stderr
    (root / "attributes.txt").unlink()
    (root / "attributes.txt").symlink_to("/etc/passwd")
    refused = run_confined("build", "-a", "cub200", "-r", str(root / "CUB_200_2011"), "-o", str(tmp_path / "again"))
    assert refused.returncode == 2 and "attributes.txt: resolves to /etc/passwd, outside the dataset root" in refused.stderr
