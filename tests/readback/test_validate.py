"""`vlconvert validate` on real builds, intact and damaged the ways copies and crashes damage them."""

import hashlib
import json
import shutil
import tarfile
from pathlib import Path

import fsspec
import pytest
from command import run
from hostile import rewrite_shard
from inat_layout import make_inat_root, read_json

import vlconvert
from vlconvert.errors import VLConvertError
from vlconvert.readback.validate import validate


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """One build, 12 classes: train 24 samples in 3 shards, val 12 in 2."""
    base = tmp_path_factory.mktemp("validate")
    root = make_inat_root(base / "inat", per_class={"train": 2, "val": 1})
    vlconvert.build("inat2021", root=str(root), out=str(base / "out"), shard_size=10, templates=["taxonomic_common", "scientific"])
    return base / "out"


@pytest.fixture
def out(built, tmp_path) -> Path:
    """A copy of the build each test may damage."""
    return Path(shutil.copytree(built, tmp_path / "out"))


def problems(out: Path) -> list[str]:
    return [str(p) for p in validate(str(out)).problems]


def member_offset(shard: Path, suffix: str) -> tuple[str, int]:
    with tarfile.open(shard) as tar:
        member = next(m for m in tar if m.name.endswith(suffix))
        return member.name, member.offset_data


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.slow
def test_a_good_build_passes(out):
    result = run("validate", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == f"{out}: 2 splits, 5 shards, 36 samples checked; no problems\n"
    result = run("validate", str(out), "--no-decode", "--workers", "2")
    assert result.returncode == 0 and "(images not decoded); no problems" in result.stdout


def test_a_flipped_byte_in_an_image(out):
    shard = out / "train" / "train-000000.tar"
    name, offset = member_offset(shard, ".jpg")
    flip(shard, offset)  # the JPEG's first byte: no longer an image at all
    result = run("validate", str(out))
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert any(line.startswith("train/train-000000.tar: sha256 ") and "differs from the manifest's" in line for line in lines)
    assert any(line.startswith(f"train/train-000000.tar: {name}: image does not decode: ") for line in lines)
    assert lines[-1] == f"{out}: 2 splits, 5 shards, 36 samples checked; 2 problems (build status: complete)"


def test_a_flipped_byte_in_a_caption_is_caught_by_the_hash(out):
    shard = out / "val" / "val-000001.tar"
    _, offset = member_offset(shard, ".scientific.txt")
    flip(shard, offset + 3)
    assert problems(out) == [f"val/val-000001.tar: sha256 {hashlib.sha256(shard.read_bytes()).hexdigest()[:16]}… differs from "
                             f"the manifest's {read_json(out / 'manifest.json')['splits']['val']['shards'][1]['sha256'][:16]}…"]


def test_a_missing_shard(out):
    (out / "train" / "train-000002.tar").unlink()
    assert problems(out) == ["train/train-000002.tar: missing: listed in manifest.json but not on disk"]


def test_a_truncated_shard(out):
    # Cut at a member boundary: tarfile itself reads this as a complete, shorter archive.
    shard = out / "train" / "train-000001.tar"
    with tarfile.open(shard) as tar:
        third = [m for m in tar if m.name.endswith(".jpg")][2].offset  # the header of the third sample's first member
    size = shard.stat().st_size
    shard.write_bytes(shard.read_bytes()[:third])
    found = problems(out)
    assert found[:2] == [f"train/train-000001.tar: {third:,} bytes, the manifest says {size:,}: truncated",
                         f"train/train-000001.tar: sha256 {hashlib.sha256(shard.read_bytes()).hexdigest()[:16]}… differs "
                         f"from the manifest's {read_json(out / 'manifest.json')['splits']['train']['shards'][1]['sha256'][:16]}…"]
    assert found[2:] == ["train/train-000001.tar: 2 samples, the manifest says 10"]


def test_a_shard_cut_inside_a_sample(out):
    shard = out / "train" / "train-000001.tar"
    shard.write_bytes(shard.read_bytes()[:shard.stat().st_size // 2])
    found = problems(out)
    assert any(": truncated" in p for p in found) and any("samples, the manifest says 10" in p for p in found)


def test_a_shard_cut_inside_a_samples_first_member_counts_only_whole_samples(out):
    """Nothing of the cut sample was read: it is no sample, and it has no missing members to report."""
    shard = out / "train" / "train-000001.tar"
    with tarfile.open(shard) as tar:
        third = [m for m in tar if m.name.endswith(".jpg")][2]
    shard.write_bytes(shard.read_bytes()[:third.offset_data + 100])
    found = problems(out)
    assert "train/train-000001.tar: 2 samples, the manifest says 10" in found
    assert not any("no image member" in p or "no caption" in p or "no label" in p for p in found), found


def test_sizes_json_that_disagrees_with_the_manifest(out):
    sizes = read_json(out / "val" / "sizes.json")
    sizes["val-000001.tar"] += 1
    (out / "val" / "sizes.json").write_text(json.dumps(sizes))
    found = problems(out)
    assert found[0] == "val/sizes.json: val-000001.tar: 3 samples, the manifest says 2"
    assert found[1].startswith("val/sizes.json: 43 bytes with sha256") and found[1].endswith("changed since the build wrote it")
    assert len(found) == 2


def test_an_unlisted_shard(out):
    shutil.copy(out / "val" / "val-000000.tar", out / "val" / "val-000002.tar")
    assert problems(out) == ["val/val-000002.tar: not listed in manifest.json (left by another build, an unfinished run, or a copy?)"]


def test_a_repeated_key(out):
    """A sample renamed to a key of another shard, with the manifest updated to match: only the repeat is wrong."""
    first = member_offset(out / "train" / "train-000000.tar", ".cls")[0].split(".")[0]
    with tarfile.open(out / "train" / "train-000001.tar") as source:
        renamed = next(iter(source)).name.split(".")[0]

    def rename(name: str, data: bytes) -> tuple[str, bytes]:
        if not name.startswith(renamed + "."):
            return name, data
        return first + name[len(renamed):], data.replace(f'"key": "{renamed}"'.encode(), f'"key": "{first}"'.encode())

    rewrite_shard(out, "train", 1, rename)
    # The shard's table still lists the old key: it no longer describes the tar, which is a problem of its own.
    assert problems(out) == ["train/train-000001.parquet: 10 rows for 10 samples in the shard; they differ from row 0",
                             f"train/train-000001.tar: {first}: key repeated in split train (first in train/train-000000.tar)"]


def test_an_interrupted_build_is_reported_as_in_progress(tmp_path):
    root = make_inat_root(tmp_path / "inat", per_class={"val": 1})

    def stop(progress):
        if progress.done:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        vlconvert.build("inat2021", root=str(root), out=str(tmp_path / "out"), shard_size=4, progress=stop)
    result = run("validate", str(tmp_path / "out"))
    assert result.returncode == 1
    assert result.stdout.startswith("manifest.json: the build is in progress or was interrupted (status in_progress); ")
    assert "(build status: in_progress)" in result.stdout


@pytest.mark.parametrize("make", [lambda p: p.mkdir(), lambda p: (p.mkdir(), (p / "manifest.json").write_text("[1]"))])
def test_not_a_build_exits_2(tmp_path, make):
    folder = tmp_path / "folder"
    make(folder)
    result = run("validate", str(folder))
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {folder}: ") and result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr + result.stdout
    assert run("validate", str(tmp_path / "nowhere")).stderr == f"error: {tmp_path / 'nowhere'}: no such folder\n"


def test_an_fsspec_url(built):
    fs = fsspec.filesystem("memory")
    fs.put(str(built), "/validate-copy", recursive=True)
    try:
        report = validate("memory://validate-copy")
        assert report.ok and (report.shards, report.samples) == (5, 36)
        fs.rm("/validate-copy/val/val-000000.tar")
        assert [str(p) for p in validate("memory://validate-copy").problems] == [
            "val/val-000000.tar: missing: listed in manifest.json but not on disk"]
        with pytest.raises(VLConvertError, match="no such folder"):
            validate("memory://nothing-here")
    finally:
        fs.rm("/validate-copy", recursive=True)


def test_counts_that_do_not_add_up(out):
    with (out / "errors.jsonl").open("a") as f:
        f.write('{"split": "val", "key": "x", "reason": "added by hand"}\n')
    manifest = read_json(out / "manifest.json")
    manifest["splits"]["val"]["read"] += 1
    (out / "manifest.json").write_text(json.dumps(manifest))
    found = problems(out)
    assert found[0] == "manifest.json split val: read 13 is not written 12 + errored 0 + held out 0 + capped 0 + deduplicated 0"
    assert found[1].startswith("errors.jsonl: 56 bytes with sha256") and found[1].endswith("changed since the build wrote it")
    assert found[2:] == ["errors.jsonl: line 1 is not an error entry (a JSON object with split, key, source, stage, reason)",
                         "errors.jsonl: 1 lines, the manifest counts 0 errors"]


def test_a_split_the_manifest_lost_and_mistyped_fields_are_reported_not_crashed(tmp_path):
    root = make_inat_root(tmp_path / "inat", per_class={"train": 1, "val": 1})
    out = tmp_path / "out"
    vlconvert.build("inat2021", str(root), str(out))
    manifest = json.loads((out / "manifest.json").read_text())
    del manifest["splits"]["val"]
    del manifest["files"]["val/sizes.json"], manifest["files"]["val/val.wids.json"]
    (out / "manifest.json").write_text(json.dumps(manifest))
    assert [str(p) for p in validate(str(out)).problems] == ["val/: holds .tar shards, but manifest.json lists no such split"]
    for field, value in (("num_classes", "12"), ("splits", ["train"])):
        broken = {**manifest, field: value}
        (out / "manifest.json").write_text(json.dumps(broken))
        (problem,) = validate(str(out)).problems
        assert problem.where == "manifest.json" and field in problem.what
    manifest["splits"]["train"]["shards"][0]["name"] = 7
    (out / "manifest.json").write_text(json.dumps(manifest))
    assert "shards[0] is not a shard entry" in str(validate(str(out)).problems[0])


def test_the_tar_stream_reader_groups_members_skips_what_no_build_writes_and_keeps_a_cut_sample(built):
    import io

    from vlconvert.readback.tar_stream import UnreadableTar, read_samples

    data = (built / "val" / "val-000000.tar").read_bytes()
    samples = list(read_samples(io.BytesIO(data)))
    with tarfile.open(built / "val" / "val-000000.tar") as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert [s.key for s in samples] == list(dict.fromkeys(n.partition(".")[0] for n in names))
    assert {m for m, _ in samples[0].members} == {"jpg", "txt", "scientific.txt", "json", "cls"}
    assert samples[0].image()[0] == "jpg" and samples[0].get("cls").isdigit()

    extra = io.BytesIO()
    with tarfile.open(fileobj=extra, mode="w") as tar:
        tar.addfile(tarfile.TarInfo("no-dot"), io.BytesIO(b""))
        folder = tarfile.TarInfo("k.d")
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)
    skipped = []
    assert list(read_samples(io.BytesIO(extra.getvalue()), skipped=lambda name, why: skipped.append((name, why)))) == []
    assert skipped == [("no-dot", "not a KEY.EXTENSION member"), ("k.d", "not a regular file")]

    second = members[1]
    with pytest.raises(UnreadableTar) as cut:
        list(read_samples(io.BytesIO(data[:second.offset_data + second.size // 2])))  # in the middle of the second member
    assert cut.value.partial.key == samples[0].key and len(cut.value.partial.members) == 1


def test_manifest_reader_tells_missing_damaged_and_foreign_apart(tmp_path):
    from fsspec.implementations.local import LocalFileSystem

    from vlconvert.format import ManifestUnreadable, read_manifest

    fs = LocalFileSystem()
    with pytest.raises(FileNotFoundError):
        read_manifest(fs, str(tmp_path))
    for text, damaged in (("{cut", True), ('{"name": "a dataset"}', False), ("[]", False)):
        (tmp_path / "manifest.json").write_text(text)
        with pytest.raises(ManifestUnreadable) as caught:
            read_manifest(fs, str(tmp_path))
        assert caught.value.damaged is damaged
    (tmp_path / "manifest.json").write_text('{"format_version": 1, "status": "complete"}')
    assert read_manifest(fs, str(tmp_path))["status"] == "complete"
