"""lit-train through the real command: the demo preset, checkpoints kept, threads, and run folders that refuse other data."""

import json
import subprocess
import sys

import pytest
from command import run
from inat_layout import EXAMPLE
from optional import require

import vlconvert

torch = require("torch")
require("open_clip")


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    """Two builds of the same example that differ (their manifests, so their sha256, differ)."""
    folder = tmp_path_factory.mktemp("builds")
    vlconvert.build("inat2021", str(EXAMPLE), str(folder / "a"), shard_size=40)
    vlconvert.build("inat2021", str(EXAMPLE), str(folder / "b"), shard_size=60)
    return folder / "a", folder / "b"


def tiny(build, run_folder, *more):
    return run("lit-train", str(build), "--run-dir", str(run_folder), "--model", "lit-tiny", "--image-weights", "none",
               "--batch-size", "24", "--warmup", "2", *more)


@pytest.mark.slow
def test_demo_preset_caches_image_features_from_the_command_line(builds, tmp_path):
    result = run("lit-train", str(builds[0]), "--run-dir", str(tmp_path / "demo"), "--preset", "demo", "--epochs", "2")
    assert result.returncode == 0, result.stderr
    recorded = json.loads((tmp_path / "demo" / "run.json").read_text())
    assert recorded["options"]["cache_image_features"] is True
    assert (tmp_path / "demo" / "image_features" / "train").is_dir()
    # Giving the default explicitly changes nothing; unlocking a group is what turns the cache off.
    explicit = run("lit-train", str(builds[0]), "--run-dir", str(tmp_path / "zero"), "--preset", "demo", "--epochs", "1",
                   "--unlocked-groups", "0")
    assert explicit.returncode == 0, explicit.stderr
    assert json.loads((tmp_path / "zero" / "run.json").read_text())["options"]["cache_image_features"] is True
    unlocked = run("lit-train", str(builds[0]), "--run-dir", str(tmp_path / "one"), "--preset", "demo", "--epochs", "1",
                   "--unlocked-groups", "1")
    assert unlocked.returncode == 0, unlocked.stderr
    assert json.loads((tmp_path / "one" / "run.json").read_text())["options"]["cache_image_features"] is False


@pytest.mark.slow
def test_keeps_the_last_and_the_best_checkpoint_and_one_optimizer_state(builds, tmp_path):
    result = tiny(builds[0], tmp_path / "run", "--epochs", "4", "--cache-image-features", "--lr", "0.05")
    assert result.returncode == 0, result.stderr
    assert "torch threads: 1 (auto: " in result.stderr  # a tiny model on CPU: one thread
    folder = tmp_path / "run" / "checkpoints"
    losses = json.loads((folder / "epochs.json").read_text())
    assert sorted(losses) == ["1", "2", "3", "4"] and all(isinstance(v, float) for v in losses.values())
    best = min(losses, key=losses.get)
    assert sorted(p.name for p in folder.glob("epoch_*.pt")) == sorted({f"epoch_{best}.pt", "epoch_4.pt"})
    assert [p.name for p in folder.glob("optimizer_*.pt")] == ["optimizer_4.pt"]
    assert "optimizer" not in torch.load(folder / "epoch_4.pt", weights_only=False)  # the model alone: a third the size
    everything = tiny(builds[0], tmp_path / "all", "--epochs", "3", "--cache-image-features", "--keep-checkpoints", "0",
                      "--threads", "2")
    assert everything.returncode == 0, everything.stderr
    assert "torch threads: 2 (--threads)" in everything.stderr
    assert len(list((tmp_path / "all" / "checkpoints").glob("epoch_*.pt"))) == 3


@pytest.mark.slow
def test_a_run_refuses_other_data_unless_overwritten(builds, tmp_path):
    first = tiny(builds[0], tmp_path / "run", "--epochs", "1")
    assert first.returncode == 0, first.stderr
    recorded = (tmp_path / "run" / "run.json").read_text()
    assert json.loads(recorded)["data_manifest_sha256"] == vlconvert_sha(builds[0])
    again = tiny(builds[0], tmp_path / "run", "--epochs", "1")
    assert again.returncode == 0 and "nothing to train" in again.stdout
    other = tiny(builds[1], tmp_path / "run", "--epochs", "1")
    assert other.returncode == 2 and len(other.stderr.strip().splitlines()) == 1
    assert "this run trained on another build" in other.stderr and "--overwrite" in other.stderr
    schedule = tiny(builds[0], tmp_path / "run", "--epochs", "1", "--lr", "0.01")
    assert schedule.returncode == 2 and "started with --lr 0.0005, not 0.01" in schedule.stderr
    assert (tmp_path / "run" / "run.json").read_text() == recorded  # refused attempts rewrite nothing
    (tmp_path / "run" / "notes.txt").write_text("mine")
    overwritten = tiny(builds[1], tmp_path / "run", "--epochs", "1", "--overwrite")
    assert overwritten.returncode == 0, overwritten.stderr
    assert json.loads((tmp_path / "run" / "run.json").read_text())["data_manifest_sha256"] == vlconvert_sha(builds[1])
    assert (tmp_path / "run" / "notes.txt").read_text() == "mine"  # --overwrite removes only what a run writes
    assert len((tmp_path / "run" / "log.jsonl").read_text().splitlines()) == 120 // 24


def test_folders_that_are_not_runs_are_refused_even_with_overwrite(builds, tmp_path):
    into_build = tiny(builds[0], builds[0], "--overwrite")
    assert into_build.returncode == 2 and "a build folder (it holds manifest.json), not a run" in into_build.stderr
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "thesis.tex").write_text("years of work")
    foreign = tiny(builds[0], tmp_path / "home", "--overwrite")
    assert foreign.returncode == 2 and "holds 'thesis.tex' but no run.json" in foreign.stderr
    assert (tmp_path / "home" / "thesis.tex").read_text() == "years of work"


@pytest.mark.slow
def test_old_spellings_work_with_a_deprecation_line(builds, tmp_path):
    result = run("lit-train", "--data", str(builds[0]), "--out", str(tmp_path / "run"), "--preset", "demo", "--epochs", "1")
    assert result.returncode == 0, result.stderr
    assert "warning: --data is deprecated and goes in the next release; give BUILD (the first argument)" in result.stderr
    assert "warning: --out is deprecated and goes in the next release; give --run-dir" in result.stderr
    both = run("lit-train", str(builds[0]), "--data", str(builds[1]), "--run-dir", str(tmp_path / "x"), "--preset", "demo")
    assert both.returncode == 2 and "--data and BUILD (the first argument) both given" in both.stderr


@pytest.mark.parametrize("args, message", [
    (["--model", "ViT-B-61", "--image-weights", "none"], "'ViT-B-61' is not an open_clip model (did you mean ViT-B-16"),
    (["--preset", "demo", "--split", "nope"], "--split nope: "),
    (["--preset", "demo", "--unlocked-groups", "1", "--cache-image-features"], "needs a fully locked image tower"),
    (["--model", "lit-tiny"], "--image-weights is required"),
])
def test_argument_mistakes_fail_before_torch_loads(builds, tmp_path, args, message):
    argv = ["vlconvert", "lit-train", str(builds[0]), "--run-dir", str(tmp_path / "run"), *args]
    probe = ("import sys; from vlconvert.cli.root import main; sys.argv = " + repr(argv) + "\n"
             "try:\n    main()\nexcept SystemExit as exit:\n    print('exit', exit.code, 'torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.stdout.split() == ["exit", "2", "False"], (result.stdout, result.stderr)
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


def vlconvert_sha(build):
    import hashlib

    return hashlib.sha256((build / "manifest.json").read_bytes()).hexdigest()
