"""Red team, outputs: --overwrite never deletes what is not a build, a build never writes into its
dataset, the read-back tools survive a tampered or damaged build, data never drives the terminal,
and workers never outlive their build (issue 13; threat model in docs/security.md).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from hostile import VLCONVERT, jpeg, make_fifo, run_confined
from inat_layout import category, make_inat_root, read_json, write_json

import vlconvert


def files_in(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A real, complete build, to copy and tamper with."""
    base = tmp_path_factory.mktemp("red-team-outputs")
    root = make_inat_root(base / "inat", per_class={"train": 2, "val": 1})
    vlconvert.build("inat2021", str(root), str(base / "out"), shard_size=5)
    return root, base / "out"


def copy_of(built_out: Path, to: Path) -> Path:
    shutil.copytree(built_out, to, symlinks=True)
    return to


# ---------------------------------------------------------------------- --overwrite and where a build may write


def test_overwrite_of_the_dataset_itself_is_refused_even_with_a_real_manifest(built, tmp_path):
    _, out = built
    data = tmp_path / "ds"
    for name in ("Pica pica", "Quercus robur"):
        (data / name).mkdir(parents=True)
        (data / name / "x.jpg").write_bytes(jpeg())
    shutil.copy(out / "manifest.json", data / "manifest.json")  # a user kept a build's manifest beside the data
    before = files_in(data)
    result = run_confined("build", "-a", "imagefolder", "-r", str(data), "-o", str(data), "--overwrite")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 2  # "reading …" and the refusal
    assert f"--out {data} is the dataset folder {data}" in result.stderr
    assert files_in(data) == before


@pytest.mark.slow
@pytest.mark.parametrize("manifest", ["hello", "{}", '{"format_version": 1, "status": "complete"}', "[]",
                                      '{"format_version": 1, "vlconvert_version": "0.1.0", "status": "in_progress"}'])
def test_a_folder_whose_manifest_vlconvert_did_not_write_is_never_emptied(built, tmp_path, manifest):
    root, _ = built
    target = tmp_path / "precious"
    target.mkdir()
    (target / "manifest.json").write_text(manifest)
    (target / "thesis.tex").write_text("keep me")
    result = run_confined("build", "-a", "inat2021", "-r", str(root), "-o", str(target), "--overwrite")
    assert result.returncode == 2, result.stderr
    assert "is not one vlconvert wrote" in result.stderr
    assert files_in(target) == {"manifest.json": manifest.encode(), "thesis.tex": b"keep me"}


@pytest.mark.slow
def test_overwrite_refuses_a_build_folder_holding_files_a_build_does_not_write(built, tmp_path):
    root, out = built
    target = copy_of(out, tmp_path / "out")
    (target / "notes.txt").write_text("my notes")
    (target / "train" / "extra").mkdir()
    (target / "train" / "extra" / "img.jpg").write_bytes(b"x")
    (target / "val" / "link.tar").symlink_to(out / "val" / "val-000000.tar")
    before = files_in(target)
    result = run_confined("build", "-a", "inat2021", "-r", str(root), "-o", str(target), "--overwrite", "--seed", "3")
    assert result.returncode == 2
    assert "holds notes.txt and 2 more, which no vlconvert build writes" in result.stderr
    assert files_in(target) == before
    (target / "notes.txt").unlink()
    shutil.rmtree(target / "train" / "extra")
    (target / "val" / "link.tar").unlink()
    again = run_confined("build", "-a", "inat2021", "-r", str(root), "-o", str(target), "--overwrite", "--seed", "3")
    assert again.returncode == 0, again.stderr  # a build's own folder is replaced as before
    assert read_json(target / "manifest.json")["seed"] == 3


@pytest.mark.parametrize("where", ["inside", "contains", "link"])
def test_a_build_never_writes_into_the_data_it_reads(tmp_path, where):
    root = make_inat_root(tmp_path / "data" / "inat", per_class={"val": 1})
    out = {"inside": root / "shards", "contains": tmp_path / "data", "link": tmp_path / "link"}[where]
    if where == "link":
        out.symlink_to(root)
    before = files_in(tmp_path / "data")
    result = run_confined("build", "-a", "inat2021", "-r", str(root), "-o", str(out), "--overwrite")
    assert result.returncode == 2
    said = {"inside": "is inside", "contains": "contains", "link": "is"}[where]
    assert f"--out {out} {said} the dataset folder {root}" in result.stderr
    assert files_in(tmp_path / "data") == before


# ---------------------------------------------------------------------- validate: side files and a tampered manifest


@pytest.mark.slow
def test_validate_checks_every_side_file_against_the_manifest(built, tmp_path):
    _, out = built
    target = copy_of(out, tmp_path / "out")
    names = (target / "classnames.txt").read_text().splitlines()
    names[3] = "Homo sapiens"  # same number of lines: only the hash tells
    (target / "classnames.txt").write_text("\n".join(names) + "\n")
    classes = (target / "classes.jsonl").read_text().splitlines()
    (target / "classes.jsonl").write_text("\n".join(classes[1:] + classes[:1]) + "\n")
    (target / "zeroshot_classification_templates.txt").write_text("a photo of a {c}.\nno placeholder here\n")
    result = run_confined("validate", str(target))
    assert result.returncode == 1
    assert "classnames.txt: " in result.stdout and "changed since the build wrote it" in result.stdout
    assert "classes.jsonl: line 1 is not class 0" in result.stdout
    assert "zeroshot_classification_templates.txt: line 2 has no {c} for the class name" in result.stdout
    assert run_confined("validate", str(out)).returncode == 0


def test_validate_never_opens_a_path_a_tampered_manifest_names_outside_out(built, tmp_path):
    _, out = built
    target = copy_of(out, tmp_path / "out")
    make_fifo(tmp_path / "trap.tar")  # opening it would block validate for ever
    manifest = read_json(target / "manifest.json")
    manifest["splits"]["val"]["shards"][0]["name"] = "../trap.tar"
    manifest["splits"]["train"]["shards"][0]["name"] = "/etc/passwd"
    manifest["errors"]["file"] = "../trap.tar"
    manifest["files"]["../trap.tar"] = {"bytes": 1, "sha256": "0" * 64}
    write_json(target / "manifest.json", manifest)
    result = run_confined("validate", str(target), timeout=60)
    assert result.returncode == 1, result.stderr
    assert "shards[0] is named '../trap.tar', not val/val-NNNNNN.tar as a build names them; not opened" in result.stdout
    assert "shards[0] is named '/etc/passwd', not train/train-NNNNNN.tar" in result.stdout
    assert "files lists '../trap.tar', which is not a file a build writes; not opened" in result.stdout
    assert "errors.file is '../trap.tar', not 'errors.jsonl'" in result.stdout


@pytest.mark.slow
def test_validate_and_inspect_do_not_hang_on_fifos_inside_out(built, tmp_path):
    _, out = built
    target = copy_of(out, tmp_path / "out")
    (target / "val" / "val-000000.tar").unlink()
    make_fifo(target / "val" / "val-000000.tar")
    (target / "errors.jsonl").unlink()
    make_fifo(target / "errors.jsonl")
    checked = run_confined("validate", str(target), timeout=60)
    assert checked.returncode == 1
    assert checked.stdout.splitlines()[:2] == ["val/val-000000.tar: a FIFO, not a regular file; not read",
                                               "errors.jsonl: a FIFO, not a regular file; not read"]
    shown = run_confined("inspect", str(target), "--max-shards", "100", timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert "  val/val-000000.tar: a FIFO, not a regular file; not read" in shown.stdout
    assert "  errors.jsonl: a FIFO, not a regular file; not read" in shown.stdout


# ---------------------------------------------------------------------- inspect on damage


def test_inspect_lists_a_truncated_shard_and_mistyped_fields_instead_of_a_traceback(built, tmp_path):
    _, out = built
    target = copy_of(out, tmp_path / "out")
    shard = target / "train" / "train-000000.tar"
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 3])
    manifest = read_json(target / "manifest.json")
    manifest["num_classes"] = "twelve"
    manifest["splits"]["val"]["written"] = "many"
    manifest["splits"]["val"]["class_counts"] = {"0": 1}
    manifest["errors"] = {"count": "x", "by_stage": ["image"]}
    manifest["adapter"] = "inat2021"
    manifest["templates"] = "taxonomic"
    write_json(target / "manifest.json", manifest)
    result = run_confined("inspect", str(target), "--max-shards", "100")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "manifest.json: num_classes is 'twelve', not a count" in result.stdout
    assert "manifest.json: split val: written is 'many', not a count" in result.stdout
    assert re.search(r"train/train-000000.tar: (unreadable after|\d samples, the manifest says 5: truncated)", result.stdout)


@pytest.mark.slow
def test_inspect_refuses_a_manifest_that_is_a_fifo_or_huge_nesting(built, tmp_path):
    _, out = built
    fifo = copy_of(out, tmp_path / "fifo")
    (fifo / "manifest.json").unlink()
    make_fifo(fifo / "manifest.json")
    result = run_confined("inspect", str(fifo), timeout=60)
    assert result.returncode == 2 and "its manifest.json is not a vlconvert manifest (a FIFO, not a regular file)" in result.stderr
    nested = copy_of(out, tmp_path / "nested")
    (nested / "manifest.json").write_text("[" * 100_000 + "]" * 100_000)
    for command in ("inspect", "validate"):
        result = run_confined(command, str(nested), timeout=60)
        assert result.returncode in (1, 2) and "Traceback" not in result.stderr, (command, result.stderr)


# ---------------------------------------------------------------------- data never drives the terminal

ESCAPES = "Pica \x1b[2J\x1b[31mpica\x1b]0;pwned\x07 \u202eevil"


@pytest.mark.slow
def test_escape_sequences_in_class_names_are_shown_escaped(tmp_path):
    root = make_inat_root(tmp_path / "inat", categories=[{**category("Pica hudsonia"), "name": ESCAPES,
                                                          "common_name": "magpie\x1b[8m"}], per_class={"val": 2})
    out = tmp_path / "out"
    assert run_confined("build", "-a", "inat2021", "-r", str(root), "-o", str(out)).returncode == 0
    outputs = [
        run_confined("inspect", str(out)).stdout,
        run_confined("captions", "preview", "-a", "inat2021", "-r", str(root), "-n", "2").stdout,
    ]
    broken = copy_of(out, tmp_path / "broken")
    (broken / "classnames.txt").write_text(ESCAPES + "\n")
    outputs.append(run_confined("validate", str(broken)).stdout)
    doc = read_json(root / "val.json")
    doc["categories"] = [{**doc["categories"][0], "id": "\x1b]52;c;cHduZWQ=\x07"}] * 2  # a duplicate id, quoted in the error
    write_json(root / "val.json", doc)
    outputs.append(run_confined("build", "-a", "inat2021", "-r", str(root), "-o", str(tmp_path / "again")).stderr)
    for output in outputs:
        assert "\x1b" not in output and "\x07" not in output and "\u202e" not in output, output
    assert "Pica \\x1b[2J\\x1b[31mpica\\x1b]0;pwned\\x07 \\u202eevil" in outputs[0]
    assert "\\x1b" in outputs[1] and "\\x1b" in outputs[3]


# ---------------------------------------------------------------------- workers end with their build


@pytest.mark.slow
def test_workers_end_when_the_build_is_killed(tmp_path):
    root = make_inat_root(tmp_path / "inat", per_class={"train": 60})
    (tmp_path / "slow.j2").write_text("{% for i in range(45000) %}{% endfor %}a photo of {{ name }}")
    build = subprocess.Popen([VLCONVERT, "build", "-a", "inat2021", "-r", str(root), "-o", str(tmp_path / "out"),
                              "-t", str(tmp_path / "slow.j2"), "--workers", "2", "--shard-size", "5"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: list[int] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(workers) < 2:
        time.sleep(0.1)
        workers = [int(pid) for pid in _children(build.pid) if "multiprocessing.spawn" in _cmdline(int(pid))]
    assert len(workers) == 2, "the pool did not start"
    os.kill(build.pid, signal.SIGKILL)
    build.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(pid) for pid in workers):
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in workers), "a worker outlived the build that started it"


def _children(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has ended; only its parent's wait would clear it


def test_validate_decodes_as_strictly_as_the_build(built, tmp_path):
    """A JPEG Pillow decodes without complaint but libjpeg warns about (cut short, end marker appended),
    planted in a shard whose manifest entry is updated to match: only the decode can tell."""
    import tarfile

    from hostile import cut_with_end_marker, rewrite_shard

    _, out = built
    target = copy_of(out, tmp_path / "out")
    with tarfile.open(target / "val" / "val-000000.tar") as tar:
        first_image = next(m.name for m in tar.getmembers() if m.name.endswith(".jpg"))
    rewrite_shard(target, "val", 0, lambda name, data: (name, cut_with_end_marker(jpeg()) if name == first_image else data))
    result = run_confined("validate", str(target))
    assert result.returncode == 1
    assert result.stdout.splitlines()[0] == (f"val/val-000000.tar: {first_image}: image does not decode: "
                                             "cannot decode image: Corrupt JPEG data: premature end of data segment")


@pytest.mark.slow
def test_oversized_members_headers_and_lines_of_a_tampered_build_are_not_read_into_memory(built, tmp_path):
    import io
    import tarfile

    _, out = built
    target = copy_of(out, tmp_path / "out")
    shard = target / "train" / "train-000000.tar"
    with tarfile.open(shard, "a", format=tarfile.PAX_FORMAT) as tar:
        big = tarfile.TarInfo("zzz.txt")
        big.size = 20 << 20  # more than any caption: reported, skipped unread
        tar.addfile(big, io.BytesIO(b"a" * big.size))
        named = tarfile.TarInfo("y" * (2 << 20) + ".txt")  # a 2 MB name: a 2 MB PAX header
        tar.addfile(named, io.BytesIO(b""))
    with (target / "errors.jsonl").open("ab") as f:
        f.write(b'{"reason": "' + b"x" * (3 << 20) + b'"}\n')
    manifest = read_json(target / "manifest.json")
    manifest["errors"]["count"] = 1  # so that inspect shows the line
    write_json(target / "manifest.json", manifest)
    checked = run_confined("validate", str(target), memory=600 << 20)
    assert checked.returncode == 1 and "Traceback" not in checked.stderr, checked.stderr
    assert "train/train-000000.tar: zzz.txt: 20,971,520 bytes, larger than any member a build writes; not read" in checked.stdout
    assert "extended header, larger than any a build writes" in checked.stdout
    assert "errors.jsonl: line 1 is not an error entry" in checked.stdout
    shown = run_confined("inspect", str(target), "--max-shards", "100", memory=600 << 20)
    assert shown.returncode == 0 and "Traceback" not in shown.stderr, shown.stderr
    assert "<a line longer than 1 MB, not read>" in shown.stdout
