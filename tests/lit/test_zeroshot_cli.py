"""vlconvert zeroshot as a user meets it: argument checks before torch loads, no download when offline, one
metrics.json shape for one model or many, progress per model, and no library warnings for a random init."""

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from inat_layout import EXAMPLE
from optional import require

import vlconvert
from vlconvert.cli.root import cli
from vlconvert.lit.report import document

VLCONVERT = Path(sys.executable).parent / "vlconvert"
# The real command line, in a process that then says whether torch got imported.
PROBE = ("import sys\nfrom vlconvert.cli.root import main\nsys.argv[0] = 'vlconvert'\n"
         "try:\n    main()\nfinally:\n    print('torch imported:', 'torch' in sys.modules)\n")


@pytest.fixture(scope="module")
def build(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("zeroshot") / "shards"
    vlconvert.build("inat2021", root=str(EXAMPLE), out=str(out), splits=["val"])
    return out


def probe(*args: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=120, env=env)


@pytest.mark.parametrize("case, expected", [
    ("nothing", "give --checkpoint RUN or --model NAME --pretrained TAG|PATH"),
    ("counts", "give one --pretrained per --model (or none at all for random init): 2 --model, 1 --pretrained"),
    ("not_a_build", "no manifest.json; give the --out folder of `vlconvert build`"),
    ("split", "--split test: the build in {build} has no such split; it has val"),
    ("prompts", "--prompts {tmp}/nope.txt: no such file"),
    ("checkpoint", "--checkpoint {tmp}/nowhere: no such run folder or checkpoint file"),
    ("not_a_run", "--checkpoint {build}: not a lit-train run folder"),
    ("pretrained", "--pretrained {tmp}/missing.pt: no such checkpoint file"),
    ("report", "--report {tmp}/afile: is a file"),
])
def test_wrong_arguments_fail_in_one_line_before_torch_loads(build, tmp_path, case, expected):
    (tmp_path / "afile").write_text("x")
    given = {"nothing": [], "counts": ["--model", "lit-tiny", "--model", "lit-tiny", "--pretrained", "a.pt"],
             "not_a_build": ["--model", "lit-tiny"], "split": ["--model", "lit-tiny", "--split", "test"],
             "prompts": ["--model", "lit-tiny", "--prompts", str(tmp_path / "nope.txt")],
             "checkpoint": ["--checkpoint", str(tmp_path / "nowhere")], "not_a_run": ["--checkpoint", str(build)],
             "pretrained": ["--model", "lit-tiny", "--pretrained", str(tmp_path / "missing.pt")],
             "report": ["--model", "lit-tiny", "--report", str(tmp_path / "afile")]}[case]
    result = probe("zeroshot", str(tmp_path if case == "not_a_build" else build), "--report", str(tmp_path / "r"), *given)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [result.stderr.strip()] and result.stderr.startswith("error: ")
    assert expected.format(build=build, tmp=tmp_path) in result.stderr
    assert result.stdout == "torch imported: False\n"
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_a_pretrained_tag_not_in_the_local_cache_fails_at_once(build, tmp_path):
    require("open_clip")
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(empty), "HF_HUB_CACHE": str(empty / "hub"),
           "XDG_CACHE_HOME": str(empty), "HOME": str(empty)}  # HOME: open_clip's own ~/.cache/clip
    started = time.monotonic()
    result = subprocess.run([str(VLCONVERT), "zeroshot", str(build), "--model", "ViT-B-16", "--pretrained", "openai",
                             "--report", str(tmp_path / "r")], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 2
    assert result.stderr.splitlines() == ["error: --pretrained openai: the weights for ViT-B-16/openai are not in the local "
                                          "cache (nothing is downloaded); download them where there is internet (open_clip "
                                          "caches them), or pass a local checkpoint file"]
    assert time.monotonic() - started < 60  # what remains is importing torch; open_clip's retries took about a minute
    assert not (tmp_path / "r").exists()


def test_every_option_with_a_default_shows_it():
    result = CliRunner().invoke(cli, ["zeroshot", "--help"], terminal_width=200)
    assert result.exit_code == 0
    options = {line.split()[0]: line for line in result.output.splitlines() if line.strip().startswith("-")}
    assert "The split of the build to evaluate" in options["-s,"] and "[default: val]" in options["-s,"]
    assert "[default: build]" in options["--prompts"] and "default: 64" in options["--batch-size"]


def test_metrics_json_has_one_shape_for_one_model():
    one = document({"lit-tiny:random": {"samples": 2, "acc1": 0.5}}, {"acc1": 0.25}, {"data": "d", "split": "val", "prompts": "build"})
    assert one == {"data": "d", "split": "val", "prompts": "build", "model": "lit-tiny:random", "samples": 2, "acc1": 0.5,
                   "chance": {"acc1": 0.25}, "models": [{"model": "lit-tiny:random", "samples": 2, "acc1": 0.5}]}


@pytest.mark.slow
def test_two_models_one_metrics_json_shape_and_inspect_shows_the_first(build, tmp_path):
    require("open_clip")
    require("matplotlib")
    report = tmp_path / "report"
    result = subprocess.run([str(VLCONVERT), "zeroshot", str(build), "--model", "lit-tiny", "--model", "lit-tiny",
                             "--report", str(report)], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "VLCONVERT_PROGRESS_INTERVAL": "0.01"})
    assert result.returncode == 0, result.stderr
    assert "No pretrained weights loaded" not in result.stderr and "WARNING" not in result.stderr
    # In a log (stderr not a terminal) progress is a plain key=value line, per model.
    beats = [dict(w.split("=", 1) for w in line.split()[1:]) for line in result.stderr.splitlines()
             if line.startswith("progress stage=zeroshot ")]
    assert beats and all(int(b["done"]) <= int(b["total"]) == 36 for b in beats), result.stderr
    metrics = json.loads((report / "metrics.json").read_text())
    models = metrics["models"]
    assert [m["model"] for m in models] == ["lit-tiny:random", "lit-tiny:random (2)"]
    assert {k: v for k, v in metrics.items() if k not in ("data", "split", "prompts", "chance", "models")} == models[0]
    assert set(models[1]) == set(models[0]) and models[0]["samples"] == 36
    shown = subprocess.run([str(VLCONVERT), "inspect", str(build), "-n", "0", "--zeroshot-report", str(report)],
                           capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert (f"zero-shot report: {report / 'report.md'} (top-1 {100 * metrics['acc1']:.2f}% of lit-tiny:random, "
            "the first of 2 models)") in shown.stdout


@pytest.mark.slow
def test_progress_counts_each_models_images_and_open_clip_stays_quiet(build, tmp_path, caplog):
    require("open_clip")
    import vlconvert.lit

    seen = []
    with caplog.at_level(logging.INFO):
        evaluation = vlconvert.lit.evaluate(str(build), checkpoints=(), models=["lit-tiny"], batch_size=16,
                                            progress=lambda *call: seen.append(call))
    assert seen == [("lit-tiny:random", 0, 36), ("lit-tiny:random", 16, 36), ("lit-tiny:random", 32, 36),
                    ("lit-tiny:random", 36, 36)]
    assert list(evaluation.results) == ["lit-tiny:random"]
    assert not [r for r in caplog.records if "No pretrained weights loaded" in r.getMessage()]


def test_reports_written_before_one_shape_still_show_their_first_top1(build, tmp_path):
    report = tmp_path / "old"
    report.mkdir()  # a comparison as metrics.json used to hold it: models by name, nothing at the top level
    (report / "metrics.json").write_text(json.dumps({"models": {"run/epoch_3": {"acc1": 0.25}, "b": {"acc1": 0.5}}}))
    result = CliRunner().invoke(cli, ["inspect", str(build), "-n", "0", "--zeroshot-report", str(report)])
    assert result.exit_code == 0, result.output
    assert f"zero-shot report: {report / 'metrics.json'} (top-1 25.00% of run/epoch_3, the first of 2 models)" in result.output
