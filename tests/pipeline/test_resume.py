"""Interrupted builds: killed for real, then finished by rerunning the same command."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from command import VLCONVERT, run
from inat_layout import make_inat_root, read_json
from PIL import Image
from test_build import tree_digest

import vlconvert
from vlconvert import VLConvertError


def noisy_root(path: Path, per_class: int) -> Path:
    """The iNat layout with 320x240 noise photos: slow enough to decode that a kill lands mid-build."""
    root = make_inat_root(path, per_class={"val": per_class})
    for n, image in enumerate(sorted(root.rglob("*.jpg"))):
        Image.effect_noise((320, 240), 40 + n % 50).convert("RGB").save(image, quality=90)
    return root


def build_args(root: Path, out: Path) -> list[str]:
    return ["build", "--adapter", "inat2021", "--root", str(root), "--out", str(out), "--shard-size", "2", "--resize", "64"]


def committed(out: Path) -> list[Path]:
    return sorted((out / "_progress" / "val").glob("*.json"))


@pytest.mark.slow
def test_kill_9_then_rerun_finishes_byte_identical(tmp_path):
    root = noisy_root(tmp_path / "inat", per_class=10)  # 120 records, 60 shard tasks
    run(*build_args(root, tmp_path / "reference"))
    out = tmp_path / "out"
    # A session of its own, so SIGKILL reaches the build and anything it started, as an OOM kill or a lost node would.
    process = subprocess.Popen([VLCONVERT, *build_args(root, out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               start_new_session=True)
    deadline = time.monotonic() + 120
    while len(committed(out)) < 3 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the build finished before it could be killed"

    assert read_json(out / "manifest.json")["status"] == "in_progress"
    assert not list((out / "val").glob("val-*.tar")), "a final shard name appeared before the build finished"
    done_before = {}
    for entry in committed(out):
        for part in json.loads(entry.read_text())["shards"]:
            done_before[Path(part["path"]).name] = (out / "val" / Path(part["path"]).name).stat().st_ino
    assert 3 <= len(done_before) < 60

    result = run(*build_args(root, out))
    assert result.returncode == 0, result.stderr
    resumed = int(result.stdout.split("resumed an interrupted build: ")[1].split()[0])
    assert resumed >= len(done_before)
    assert tree_digest(out) == tree_digest(tmp_path / "reference")
    # The parts finished before the kill were renamed into place, not written again.
    final_inodes = {p.stat().st_ino for p in (out / "val").glob("val-*.tar")}
    assert set(done_before.values()) <= final_inodes
    assert not (out / "_progress").exists() and not list(out.rglob("_tmp-*")) and not list(out.rglob("_done-*"))


class StopAfter:
    """A progress callback that interrupts the build as Ctrl-C would, after some tasks finished."""

    def __init__(self, tasks: int):
        self.calls = 0
        self.tasks = tasks

    def __call__(self, progress) -> None:
        self.calls += 1
        if self.calls > self.tasks:
            raise KeyboardInterrupt


@pytest.fixture
def interrupted(tmp_path):
    root = make_inat_root(tmp_path / "inat", per_class={"train": 2, "val": 1})
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        vlconvert.build("inat2021", str(root), str(out), shard_size=3, progress=StopAfter(4))
    return root, out


def test_resume_skips_committed_tasks_and_repairs_partial_ones(interrupted, tmp_path):
    root, out = interrupted
    reference = tmp_path / "reference"
    vlconvert.build("inat2021", str(root), str(reference), shard_size=3)
    entries = sorted((out / "_progress").rglob("*.json"))
    assert len(entries) == 4
    # Damage the interrupted output the ways a crash can: a half-written part, a committed part cut short.
    (out / "train" / "_tmp-000007-000.part").write_bytes(b"half a tar")
    damaged = json.loads(entries[0].read_text())["shards"][0]["path"]
    Path(damaged).write_bytes(Path(damaged).read_bytes()[:700])

    summary = vlconvert.build("inat2021", str(root), str(out), shard_size=3)
    assert summary.resumed_tasks == 3  # the damaged task was done again
    assert tree_digest(out) == tree_digest(reference)


def test_other_options_do_not_resume(interrupted):
    root, out = interrupted
    with pytest.raises(VLConvertError, match="unfinished build with other inputs or options; pass --overwrite"):
        vlconvert.build("inat2021", str(root), str(out), shard_size=3, seed=1)
    summary = vlconvert.build("inat2021", str(root), str(out), shard_size=3, seed=1, overwrite=True)
    assert summary.resumed_tasks == 0 and read_json(out / "manifest.json")["seed"] == 1


def test_the_same_option_spelled_another_way_still_resumes(tmp_path):
    """0.25 from a script and "0.25" from the command line hold out the same classes: one build, resumable."""
    root = make_inat_root(tmp_path / "inat", per_class={"train": 2, "val": 1})
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        vlconvert.build("inat2021", str(root), str(out), shard_size=3, holdout_classes=0.25, progress=StopAfter(2))
    result = run("build", "-a", "inat2021", "-r", str(root), "-o", str(out), "--shard-size", "3", "--holdout-classes", "0.25")
    assert result.returncode == 0, result.stderr
    assert "resumed an interrupted build: 2 shard tasks were already done" in result.stdout


def test_an_unfinished_build_of_another_version_says_so(interrupted):
    root, out = interrupted
    manifest = read_json(out / "manifest.json")
    (out / "manifest.json").write_text(json.dumps({**manifest, "vlconvert_version": "0.1.0", "resume_key": "0" * 64}))
    with pytest.raises(VLConvertError, match=rf"unfinished build by vlconvert 0\.1\.0 \(this is {vlconvert.__version__}\)"):
        vlconvert.build("inat2021", str(root), str(out), shard_size=3)


def test_overwrite_still_resumes_the_same_command_unless_told_not_to(interrupted, tmp_path):
    root, out = interrupted
    assert vlconvert.build("inat2021", str(root), str(out), shard_size=3, overwrite=True).resumed_tasks == 4
    root, out = make_inat_root(tmp_path / "again", per_class={"val": 2}), tmp_path / "again-out"
    with pytest.raises(KeyboardInterrupt):
        vlconvert.build("inat2021", str(root), str(out), shard_size=3, progress=StopAfter(2))
    assert vlconvert.build("inat2021", str(root), str(out), shard_size=3, overwrite=True, resume=False).resumed_tasks == 0


def test_changed_input_data_does_not_resume(interrupted):
    root, out = interrupted
    doc = read_json(root / "val.json")
    doc["images"], doc["annotations"] = doc["images"][:-1], doc["annotations"][:-1]
    (root / "val.json").write_text(json.dumps(doc))
    with pytest.raises(VLConvertError, match="other inputs or options"):
        vlconvert.build("inat2021", str(root), str(out), shard_size=3)


def test_changed_records_with_the_same_counts_are_redone(interrupted, tmp_path):
    root, out = interrupted
    doc = read_json(root / "train.json")
    for image in doc["images"]:
        image["date"] = "2020-12-24 10:00:00+00:00"  # same counts, different metadata in every KEY.json
    (root / "train.json").write_text(json.dumps(doc))
    summary = vlconvert.build("inat2021", str(root), str(out), shard_size=3)
    vlconvert.build("inat2021", str(root), str(tmp_path / "fresh"), shard_size=3)
    assert tree_digest(out) == tree_digest(tmp_path / "fresh")
    assert summary.resumed_tasks == 0  # the four finished tasks were train tasks, and every train record changed


def test_a_crash_while_naming_the_finished_shards_is_finished_by_a_rerun(tmp_path):
    root = make_inat_root(tmp_path / "inat", per_class={"val": 2})
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):  # every task committed, no part renamed yet
        vlconvert.build("inat2021", str(root), str(out), shard_size=5, progress=StopAfter(5))
    parts = sorted((out / "val").glob("_done-*[0-9].part"))
    assert len(parts) == 5 and len(list((out / "val").glob("_done-*.parquet.part"))) == 5
    for number, part in enumerate(parts[:2]):  # the crash came after two renames (each shard and its table)
        part.rename(out / "val" / f"val-{number:06d}.tar")
        part.with_name(part.name.replace(".part", ".parquet.part")).rename(out / "val" / f"val-{number:06d}.parquet")
    summary = vlconvert.build("inat2021", str(root), str(out), shard_size=5)
    assert summary.resumed_tasks == 5
    vlconvert.build("inat2021", str(root), str(tmp_path / "fresh"), shard_size=5)
    assert tree_digest(out) == tree_digest(tmp_path / "fresh")


def test_wildcards_in_out_are_refused_before_anything_is_touched(tmp_path):
    root = make_inat_root(tmp_path / "inat", per_class={"val": 1})
    (tmp_path / "exp1").mkdir()
    (tmp_path / "exp1" / "precious.txt").write_text("keep me")
    with pytest.raises(VLConvertError, match=r"may not contain \[ \]"):
        vlconvert.build("inat2021", str(root), str(tmp_path / "exp[1]"), overwrite=True)
    assert (tmp_path / "exp1" / "precious.txt").exists() and not (tmp_path / "exp[1]").exists()


def test_overwrite_replaces_a_build_in_the_current_folder(tmp_path):
    root = make_inat_root(tmp_path / "inat", per_class={"val": 1})
    out = tmp_path / "here"
    vlconvert.build("inat2021", str(root), str(out))
    result = subprocess.run([VLCONVERT, *build_args(root, Path(".")), "--overwrite"], cwd=out, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert read_json(out / "manifest.json")["shard_size"] == 2
