"""Red team, issue 17: lit-train's run folders and checkpoints (--run-dir, --overwrite, --keep-checkpoints, resume),
and the one CLI vocabulary with its retired spellings, attacked as a careless or hostile user would.

Tests whose docstring says "Was a hole" failed when they were written and pass since the fixes; the others are
attacks that held.  Most attacks call ``run_folder.prepare`` (torch-free, what the command calls before and after
torch loads) or stop before training; only a few run a tiny training (lit-tiny, random init, 1-3 epochs).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from command import VLCONVERT, run
from inat_layout import EXAMPLE
from optional import require

import vlconvert
import vlconvert.lit.run_folder as run_folder
from vlconvert import VLConvertError
from vlconvert.lit.options import LitOptions

torch = require("torch")
require("open_clip")

import vlconvert.lit.checkpoints as checkpoints  # noqa: E402  (imports torch)

TINY = ("--model", "lit-tiny", "--image-weights", "none", "--batch-size", "24", "--warmup", "2")


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    out = tmp_path_factory.mktemp("rt17") / "build"
    vlconvert.build("inat2021", str(EXAMPLE), str(out), shard_size=40)
    return out


@pytest.fixture(scope="module")
def trained(build, tmp_path_factory):
    """A finished 1-epoch lit-tiny run; tests copy it."""
    folder = tmp_path_factory.mktemp("rt17-run") / "run"
    result = tiny(build, folder, "--epochs", "1")
    assert result.returncode == 0, result.stderr
    return folder


def tiny(build, folder, *more, cwd=None):
    return run("lit-train", str(build), "--run-dir", str(folder), *TINY, *more, cwd=cwd)


def options(build, folder, **more) -> LitOptions:
    """What `lit-train BUILD --run-dir FOLDER <TINY> --epochs 1` asks for."""
    return replace(LitOptions(data=str(build), out=str(folder), image_weights="none", model="lit-tiny", epochs=1,
                              batch_size=24, warmup=2), **more)


def one_line_exit_2(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and result.stderr.rstrip().splitlines()[-1] == errors[0], result.stderr
    return errors[0]


def before_torch(build, args, cwd=None, env=None) -> tuple[str, str]:
    """Runs `vlconvert lit-train BUILD ARGS` in process: (its 'exit CODE TORCH_LOADED' line, stderr)."""
    argv = ["vlconvert", "lit-train", str(build), *args]
    probe = ("import sys; from vlconvert.cli.root import main; sys.argv = " + repr(argv) + "\n"
             "try:\n    main()\nexcept SystemExit as exit:\n    print('exit', exit.code, 'torch' in sys.modules)\n"
             "else:\n    print('exit', 0, 'torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, cwd=cwd,
                            env=env)
    return result.stdout.strip().splitlines()[-1] if result.stdout.strip() else "", result.stderr


def files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# ---------------------------------------------------------------------------------------------------------------
# --overwrite: "starts again", also where the recorded run is damaged


@pytest.mark.slow
def test_overwrite_starts_again_when_the_latest_checkpoint_is_truncated(build, trained, tmp_path):
    """Was a hole: the error says 'give --overwrite to start again', but with the same options --overwrite resumes, and
    fails on the same file again: a damaged run can only be repaired by hand."""
    folder = tmp_path / "run"
    shutil.copytree(trained, folder)
    latest = folder / "checkpoints" / "epoch_1.pt"
    latest.write_bytes(latest.read_bytes()[:1000])
    refused = tiny(build, folder, "--epochs", "1")
    assert "give --overwrite to start again" in one_line_exit_2(refused)
    again = tiny(build, folder, "--epochs", "1", "--overwrite")
    assert again.returncode == 0, again.stderr
    assert "epoch" in torch.load(latest, weights_only=False)


@pytest.mark.parametrize("content", ["[]", "null", "{not json", "DIR"])
def test_overwrite_replaces_a_damaged_run_json(build, tmp_path, content):
    """Was a hole: a run.json that is not a run record is refused 'give --overwrite to start again' even with --overwrite."""
    folder = tmp_path / "run"
    folder.mkdir()
    if content == "DIR":
        (folder / "run.json").mkdir()
    else:
        (folder / "run.json").write_text(content)
    assert run_folder.prepare(options(build, folder, overwrite=True), 1) == "new"
    assert json.loads((folder / "run.json").read_text())["model"] == "lit-tiny"


# ---------------------------------------------------------------------------------------------------------------
# run.json of the wrong shape


@pytest.mark.parametrize("identity", ["9" * 5000, "[" * 100_000 + "]" * 100_000])
def test_a_hostile_run_json_is_a_one_line_refusal(build, tmp_path, identity):
    """Was a hole: an integer of 5000 digits (ValueError) or deep nesting (RecursionError) in run.json: a traceback, exit 1."""
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "run.json").write_text('{"model": "lit-tiny", "identity": {"seed": ' + identity + "}}")
    result = tiny(build, folder, "--epochs", "1")
    one_line_exit_2(result)
    assert files(folder) == ["run.json"]


@pytest.mark.parametrize("identity", [[1], "x", 7])
def test_a_run_json_whose_identity_is_not_a_record_is_not_resumed(build, tmp_path, identity):
    """Was a hole: an "identity" that is not a dict is read as a pre-identity run.json, so the run resumes on any build,
    seed or learning rate (only --epochs is compared); it should be refused as a damaged record."""
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "run.json").write_text(json.dumps({"model": "lit-tiny", "identity": identity}))
    with pytest.raises(VLConvertError, match="run.json"):
        run_folder.check(options(build, folder, seed=123, lr=0.5), 1)


def test_a_run_json_of_vlconvert_0_3_is_compared_on_what_it_recorded(build, tmp_path):
    """Was a hole: a vlconvert 0.3 run.json recorded every option (split, lr, seed, batch size, the data's
    path); only --epochs is compared, so such a run resumes with another learning rate, seed and split."""
    folder = tmp_path / "run"
    folder.mkdir()
    old = {"data": "/elsewhere/other-build", "out": str(folder), "image_weights": "none", "split": "val",
           "model": "lit-tiny", "epochs": 1, "batch_size": 8, "lr": 0.25, "warmup": 0, "wd": 0.0, "seed": 99}
    (folder / "run.json").write_text(json.dumps({"vlconvert_version": "0.3.0", "model": "lit-tiny", "options": old}))
    with pytest.raises(VLConvertError, match="trained on /elsewhere|--(split|batch-size|lr|seed)"):
        run_folder.check(options(build, folder), 1)


# ---------------------------------------------------------------------------------------------------------------
# --overwrite removes only what a run wrote


def test_overwrite_does_not_delete_a_foreign_checkpoints_folder(build, tmp_path):
    """Was a hole: a folder holding only `checkpoints/` (another tool's; no run.json, so not a lit-train run) is wiped by
    --overwrite, rmtree and all; it should be refused as any folder of other files and no run.json is."""
    folder = tmp_path / "mine"
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "checkpoints" / "model_final.pth").write_text("three weeks of GPU time")
    with pytest.raises(VLConvertError, match="no run.json"):
        run_folder.prepare(options(build, folder, overwrite=True), 1)
    assert (folder / "checkpoints" / "model_final.pth").read_text() == "three weeks of GPU time"


def test_overwrite_does_not_delete_the_model_config_it_was_given(build, tmp_path):
    """Was a hole: `--model-config RUN/mymodel.json --run-dir RUN --overwrite` with RUN holding only that config: the
    config counts as the run's <model>.json and is deleted before the model is built from it."""
    folder = tmp_path / "configs"
    folder.mkdir()
    config = folder / "mymodel.json"
    shutil.copy(Path(vlconvert.__file__).parent / "lit" / "configs" / "lit-tiny.json", config)
    chosen = replace(options(build, folder, overwrite=True), model=None, model_config=str(config))
    try:
        run_folder.prepare(chosen, 1)
    except VLConvertError:
        pass  # refusing is fine too
    assert config.is_file()


def test_overwrite_through_symlinks_deletes_nothing_outside(build, tmp_path):
    """Held: checkpoints/, image_features/ and run.json as symlinks out of RUN: --overwrite unlinks the links only."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "epoch_1.pt").write_text("someone else's")
    (outside / "thesis.tex").write_text("years of work")
    record = tmp_path / "record.json"
    record.write_text('{"model": "ViT-B-16"}')
    folder = tmp_path / "run"
    assert run_folder.prepare(options(build, folder), 1) == "new"
    (folder / "checkpoints").symlink_to(outside)
    (folder / "image_features").symlink_to(outside)
    (folder / "log.jsonl").symlink_to(outside / "thesis.tex")
    assert run_folder.prepare(options(build, folder, epochs=2, overwrite=True), 1) == "new"
    assert sorted(p.name for p in outside.iterdir()) == ["epoch_1.pt", "thesis.tex"]
    assert (outside / "thesis.tex").read_text() == "years of work"
    (folder / "run.json").unlink()
    (folder / "run.json").symlink_to(record)
    assert run_folder.prepare(options(build, folder, overwrite=True), 1) == "new"
    assert record.read_text() == '{"model": "ViT-B-16"}'


# ---------------------------------------------------------------------------------------------------------------
# What RUN and BUILD may be


def test_run_dir_a_symlink_to_a_build_is_refused_even_with_overwrite(build, tmp_path):
    """Held."""
    link = tmp_path / "link"
    link.symlink_to(build)
    before = files(build)
    assert "a build folder" in one_line_exit_2(tiny(build, link, "--overwrite"))
    assert files(build) == before


@pytest.mark.parametrize("kind", ["file", "fifo"])
def test_run_dir_that_is_not_a_folder_is_refused_before_torch(build, tmp_path, kind):
    """Held."""
    path = tmp_path / "run"
    if kind == "file":
        path.write_text("notes")
    else:
        os.mkfifo(path)
    said, stderr = before_torch(build, ["--run-dir", str(path), *TINY, "--overwrite"])
    assert said == "exit 2 False", (said, stderr)
    assert "not a folder" in stderr


@pytest.mark.parametrize("kind", ["dangling symlink", "under a file"])
def test_an_unusable_run_dir_is_refused_in_one_line_before_torch(build, tmp_path, kind):
    """Was a hole: a --run-dir that is a dangling symlink, or lies under a file, passes the checks, loads torch and the
    model, then fails as an OSError: exit 1 ('[Errno 17] File exists' / '[Errno 20] Not a directory')."""
    if kind == "dangling symlink":
        path = tmp_path / "link"
        path.symlink_to(tmp_path / "nowhere")
    else:
        (tmp_path / "notes.txt").write_text("x")
        path = tmp_path / "notes.txt" / "run"
    said, stderr = before_torch(build, ["--run-dir", str(path), *TINY, "--epochs", "1"])
    assert said == "exit 2 False", (said, stderr)


def test_an_empty_run_dir_is_refused(build, tmp_path):
    """Was a hole: `--run-dir ''` is the current folder: lit-train writes run.json, checkpoints/ and the log into it
    (`build -o ''` is refused as missing)."""
    here = tmp_path / "cwd"
    here.mkdir()
    result = run("lit-train", str(build), "--run-dir", "", *TINY, "--epochs", "1", cwd=here)
    assert result.returncode == 2, result.stderr
    assert list(here.iterdir()) == []


@pytest.mark.parametrize("args, message", [
    (["--model-config", "nope.json", "--image-weights", "none"], "--model-config"),
    (["--model", "lit-tiny", "--image-weights", "nope.pt"], "--image-weights"),
    (["--model", "lit-tiny", "--image-weights", "none", "--text-weights", "nope.pt"], "--text-weights"),
    (["--model", "lit-tiny", "--image-weights", "none", "--batch-size", "1000"], "--batch-size"),
])
def test_more_argument_mistakes_fail_before_torch_loads(build, tmp_path, args, message):
    """Was a hole: docs/lit.md: 'Every option is checked before torch loads'; a missing --model-config / weights file and
    a batch larger than the split (sizes.json says so) are found only after torch and open_clip load."""
    said, stderr = before_torch(build, ["--run-dir", str(tmp_path / "run"), *args], cwd=tmp_path)
    assert message in stderr and "Traceback" not in stderr
    assert said == "exit 2 False", (said, stderr)


def test_a_build_whose_manifest_is_a_folder_is_refused_with_exit_2(build, tmp_path):
    """HOLE (minor): BUILD/manifest.json a folder: 'error: [Errno 21] Is a directory', exit 1, not BUILD's exit 2."""
    broken = tmp_path / "broken"
    shutil.copytree(build, broken)
    (broken / "manifest.json").unlink()
    (broken / "manifest.json").mkdir()
    one_line_exit_2(tiny(broken, tmp_path / "run", "--epochs", "1"))


def test_a_negative_world_size_is_refused(build, tmp_path):
    """Was a hole: WORLD_SIZE=-4: run.json records 1 process (run_folder.world_size clamps), training uses -4: no step
    runs, every epoch's loss is None, exit 0."""
    env = {**os.environ, "WORLD_SIZE": "-4"}
    result = subprocess.run([VLCONVERT, "lit-train", str(build), "--run-dir", str(tmp_path / "run"), *TINY,
                             "--epochs", "1"], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 2, (result.returncode, result.stderr)


# ---------------------------------------------------------------------------------------------------------------
# Checkpoints


class _Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(2, 2)


def _save_epochs(folder: Path, losses: list[float], keep: int) -> None:
    model = _Tiny()
    optimizer = torch.optim.AdamW(model.parameters())
    for epoch, loss in enumerate(losses, 1):
        checkpoints.save(folder, epoch, "tiny", model, optimizer, loss, keep)


@pytest.mark.parametrize("keep, kept", [(0, [1, 2, 3, 4, 5]), (1, [2, 5]), (3, [2, 3, 4, 5]), (9, [1, 2, 3, 4, 5])])
def test_keep_checkpoints_keeps_the_last_k_and_the_best(tmp_path, keep, kept):
    """Held."""
    _save_epochs(tmp_path, [5.0, 1.0, 4.0, 3.0, 2.0], keep)
    assert [checkpoints._epoch_of(p) for p in checkpoints.epoch_checkpoints(tmp_path)] == kept
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("optimizer_*.pt")) == ["optimizer_5.pt"]
    assert not list((tmp_path / "checkpoints").glob(".*.partial"))


def test_the_optimizer_state_is_written_before_the_epoch_checkpoint(tmp_path, monkeypatch):
    """Held."""
    written = []
    real = torch.save
    monkeypatch.setattr(torch, "save", lambda state, path: (written.append(Path(path).name), real(state, path)))
    _save_epochs(tmp_path, [1.0], 1)
    assert written == [".optimizer_1.pt.partial", ".epoch_1.pt.partial"]


def test_stray_names_in_checkpoints_are_not_epochs(tmp_path):
    """Held: epoch_abc.pt, epoch_1.pt.partial, .epoch_7.pt.partial, epoch_-1.pt are not checkpoints."""
    where = tmp_path / "checkpoints"
    where.mkdir()
    for name in ("epoch_abc.pt", "epoch_1.pt.partial", ".epoch_7.pt.partial", "epoch_-1.pt", "epoch_.pt", "epoch_2.pt"):
        (where / name).write_text("x")
    assert [p.name for p in checkpoints.epoch_checkpoints(tmp_path)] == ["epoch_2.pt"]


def test_a_damaged_epochs_json_does_not_cost_the_best_checkpoint(tmp_path):
    """Was a hole: with checkpoints/epochs.json damaged (a disk error, a hand edit, a kill -9 between epoch_N.pt and
    epochs.json), the next save forgets every earlier loss and prunes the best epoch's checkpoint it was keeping."""
    _save_epochs(tmp_path, [5.0, 1.0, 4.0], 1)
    assert [checkpoints._epoch_of(p) for p in checkpoints.epoch_checkpoints(tmp_path)] == [2, 3]
    (tmp_path / "checkpoints" / "epochs.json").write_text("garbage")
    model = _Tiny()
    checkpoints.save(tmp_path, 4, "tiny", model, torch.optim.AdamW(model.parameters()), 3.0, 1)
    assert (tmp_path / "checkpoints" / "epoch_2.pt").exists()


# ---------------------------------------------------------------------------------------------------------------
# kill -9, and two runs at once


def _start(build, folder, epochs):
    return subprocess.Popen([VLCONVERT, "lit-train", str(build), "--run-dir", str(folder), *TINY, "--epochs", str(epochs)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_resume_after_kill_9_leaves_each_step_in_the_log_once(build, tmp_path):
    """Was a hole: killed mid-epoch 2 (its log lines already flushed) and resumed from epoch 1's checkpoint, the log holds
    epoch 2's first steps twice (e.g. steps 1..8 then 6..15); tests/lit/test_lit.py's resume test cuts the log
    by hand, as a kill -9 does not."""
    folder = tmp_path / "run"
    started = _start(build, folder, 3)
    seen = ""
    deadline = time.monotonic() + 240
    while "epoch 1/" not in seen and time.monotonic() < deadline:
        char = started.stderr.read(1)
        if not char:
            break
        seen += char
    assert "epoch 1/" in seen, seen
    time.sleep(0.3)
    os.kill(started.pid, signal.SIGKILL)
    started.wait()
    started.stdout.close()
    started.stderr.close()
    assert (folder / "checkpoints" / "epoch_1.pt").exists()
    resumed = tiny(build, folder, "--epochs", "3")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming after epoch 1" in resumed.stderr
    assert sorted(p.name for p in (folder / "checkpoints").glob("optimizer_*.pt")) == ["optimizer_3.pt"]
    steps = [json.loads(line)["step"] for line in (folder / "log.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 16)), steps


@pytest.mark.slow
def test_two_runs_at_once_in_one_run_dir_do_not_mix(build, tmp_path):
    """Was a hole: two identical lit-train commands started together on one new RUN both train: the log interleaves
    (20 lines for 10 steps, duplicated steps), both write the same checkpoints, and at times one dies in the other's
    rename ('error: [Errno 2] ... .optimizer_2.pt.partial', exit 1).  The second should be refused in one line
    (RUN is in use by another lit-train), exit 2."""
    folder = tmp_path / "run"
    both = [_start(build, folder, 2) for _ in range(2)]
    results = [p.communicate() for p in both]
    codes = sorted(p.returncode for p in both)
    assert codes == [0, 2], results
    steps = [json.loads(line)["step"] for line in (folder / "log.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 11)), steps


# ---------------------------------------------------------------------------------------------------------------
# The vocabulary's retired spellings


def test_dedup_retired_t_0_is_not_dropped(build, tmp_path):
    """Was a hole: `dedup -t 0` (the 0.3 spelling of --threshold 0): renamed() treats the value 0 as 'not given'
    (0 == False), so no warning is printed and the default threshold (8) is used: 45 training images dropped
    instead of 18."""
    old = run("dedup", str(build), "-o", str(tmp_path / "old"), "-t", "0")
    new = run("dedup", str(build), "-o", str(tmp_path / "new"), "--threshold", "0")
    assert old.returncode == 0 and new.returncode == 0, (old.stderr, new.stderr)
    assert "warning: -t is deprecated" in old.stderr
    assert old.stdout.replace("old", "new") == new.stdout


@pytest.mark.slow
def test_lit_train_retired_out_and_data_spell_the_same_run(build, trained, tmp_path):
    """Held: `--data BUILD --out RUN` resumes (here: finds finished) the run `BUILD --run-dir RUN` made."""
    folder = tmp_path / "run"
    shutil.copytree(trained, folder)
    result = run("lit-train", "--data", str(build), "--out", str(folder), *TINY, "--epochs", "1")
    assert result.returncode == 0, result.stderr
    assert "nothing to train" in result.stdout
    assert "--data is deprecated" in result.stderr and "--out is deprecated" in result.stderr
