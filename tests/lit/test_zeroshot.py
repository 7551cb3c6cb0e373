"""vlconvert zeroshot: metrics by hand, and the whole loop build → lit-train → zeroshot on the example."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from inat_layout import EXAMPLE
from optional import require

torch = require("torch")
require("open_clip")
require("matplotlib")

from vlconvert.lit.zeroshot import metrics  # noqa: E402

VLCONVERT = Path(sys.executable).parent / "vlconvert"
TAXONOMY = {0: {"genus": "Pica", "family": "Corvidae", "species": "Pica hudsonia"},
            1: {"genus": "Pica", "family": "Corvidae", "species": "Pica pica"},
            2: {"genus": "Quercus", "family": "Fagaceae", "species": "Quercus robur"}}


def test_metrics_by_hand():
    labels = torch.tensor([0, 0, 1, 2])
    top5 = torch.tensor([[0, 1, 2], [1, 0, 2], [0, 1, 2], [2, 0, 1]])  # right, wrong (same genus), wrong (same genus), right
    result = metrics(top5, labels, TAXONOMY, train_counts=[30, 10, 1])
    assert result["acc1"] == 0.5 and result["acc5"] == 1.0
    assert result["mean_per_class_recall"] == pytest.approx((0.5 + 0 + 1) / 3)
    assert result["per_rank"] == {"species": 0.5, "genus": 1.0, "family": 1.0}
    assert result["by_frequency"]["head"] == {"classes": 1, "acc1": 0.5, "train_images_min": 30}
    assert result["by_frequency"]["tail"]["acc1"] == 1.0


def run(*args):
    return subprocess.run([str(VLCONVERT), *args], capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_build_train_and_zeroshot_report_on_the_example(tmp_path):
    data, lit, report = tmp_path / "shards", tmp_path / "run", tmp_path / "report"
    assert run("build", "-a", "inat2021", "-r", str(EXAMPLE), "-o", str(data), "--zeroshot-prompts", "same_as_training").returncode == 0
    trained = run("lit-train", str(data), "--run-dir", str(lit), "--preset", "demo")
    assert trained.returncode == 0, trained.stderr
    result = run("zeroshot", str(data), "--checkpoint", str(lit), "--model", "lit-tiny", "--report", str(report))
    assert result.returncode == 0, result.stderr
    document = json.loads((report / "metrics.json").read_text())
    by_name = {m["model"]: m for m in document["models"]}
    assert list(by_name) == ["run/epoch_30", "lit-tiny:random"]
    lit_result = by_name["run/epoch_30"]
    assert {"acc1", "acc5", "mean_per_class_recall", "per_rank", "by_frequency"} <= set(lit_result)
    assert lit_result["samples"] == 36 and lit_result["classes"] == 12
    assert lit_result["acc1"] > 3 * document["chance"]["acc1"]  # 12 classes: chance is 8.3%
    assert (report / "accuracy_by_rank.png").stat().st_size > 0 and (report / "accuracy_vs_frequency.png").stat().st_size > 0
    assert "| top-1 |" in (report / "report.md").read_text()
    again = run("zeroshot", str(data), "--checkpoint", str(lit / "checkpoints" / "epoch_30.pt"), "--report", str(report))
    assert again.returncode == 0 and len(list((report / ".cache").glob("classifier-*.pt"))) == 2  # reused, not rebuilt
    assert json.loads((report / "metrics.json").read_text())["acc1"] == lit_result["acc1"]


def test_zeroshot_errors_are_one_line(tmp_path):
    result = run("zeroshot", str(tmp_path), "--checkpoint", str(tmp_path), "--report", str(tmp_path / "r"))
    assert result.returncode == 2 and "no manifest.json; give the --out folder of `vlconvert build`" in result.stderr
    assert run("build", "-a", "inat2021", "-r", str(EXAMPLE), "-o", str(tmp_path / "data"), "--split", "val").returncode == 0
    result = run("zeroshot", str(tmp_path / "data"), "--checkpoint", str(tmp_path), "--report", str(tmp_path / "r"))
    assert result.returncode == 2 and "not a lit-train run folder" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_agrees_with_clip_benchmark(tmp_path):
    require("clip_benchmark")
    import vlconvert
    from vlconvert.lit.train import LitOptions, train

    data, lit = tmp_path / "shards", tmp_path / "run"
    vlconvert.build("inat2021", str(EXAMPLE), str(data), zeroshot_prompts="openai_imagenet")
    train(LitOptions(data=str(data), out=str(lit), image_weights="none", model="lit-tiny", epochs=3, batch_size=24, lr=2e-3,
                     warmup=5, cache_image_features=True), say=lambda _: None)
    checkpoint = lit / "checkpoints" / "epoch_3.pt"
    ours = run("zeroshot", str(data), "--checkpoint", str(checkpoint), "--report", str(tmp_path / "report"))
    assert ours.returncode == 0, ours.stderr
    exported = run("export-clip-benchmark", str(data), "--split", "val", "--dataset-root", str(tmp_path / "wds"))
    assert exported.returncode == 0, exported.stderr
    output = tmp_path / "clip_benchmark.json"
    script = ("import sys, open_clip; open_clip.add_model_config(sys.argv.pop(1)); from clip_benchmark.cli import main; "
              "sys.argv[0] = 'clip_benchmark'; main()")
    reference = subprocess.run(
        [sys.executable, "-c", script, str(lit / "lit-tiny.json"), "eval", "--dataset", "wds/inat2021_mini",
         "--dataset_root", str(tmp_path / "wds"), "--split", "val", "--model", "lit-tiny", "--pretrained", str(checkpoint),
         "--task", "zeroshot_classification", "--no_amp", "--batch_size", "16", "--num_workers", "0", "--output", str(output)],
        capture_output=True, text=True, timeout=600)
    assert reference.returncode == 0, reference.stderr[-3000:]
    theirs = json.loads(output.read_text())["metrics"]
    mine = json.loads((tmp_path / "report" / "metrics.json").read_text())
    for key in ("acc1", "acc5", "mean_per_class_recall"):
        assert abs(mine[key] - theirs[key]) <= 1e-6, (key, mine[key], theirs[key])


@pytest.mark.slow
def test_seen_and_unseen_classes_are_reported_apart(tmp_path):
    data, lit, report = tmp_path / "shards", tmp_path / "run", tmp_path / "report"
    built = run("build", "-a", "inat2021", "-r", str(EXAMPLE), "-o", str(data), "--zeroshot-prompts", "same_as_training",
                "--holdout-classes", "0.25")
    assert built.returncode == 0, built.stderr
    held = json.loads((data / "manifest.json").read_text())["holdout"]["classes"]
    assert len(held) == 3
    assert run("lit-train", str(data), "--run-dir", str(lit), "--preset", "demo", "--epochs", "5").returncode == 0
    result = run("zeroshot", str(data), "--checkpoint", str(lit), "--report", str(report))
    assert result.returncode == 0, result.stderr
    document = json.loads((report / "metrics.json").read_text())
    assert document["seen"]["classes"] == 9 and document["unseen"]["classes"] == 3
    assert document["seen"]["samples"] + document["unseen"]["samples"] == document["samples"] == 36
    assert "| top-1, unseen classes |" in (report / "report.md").read_text()



@pytest.mark.slow
def test_stale_weights_at_the_same_path_are_not_reused(tmp_path):
    import vlconvert
    from vlconvert.lit.train import LitOptions, train

    data, lit = tmp_path / "shards", tmp_path / "run"
    vlconvert.build("inat2021", str(EXAMPLE), str(data), zeroshot_prompts="same_as_training")
    train(LitOptions(data=str(data), out=str(lit), image_weights="none", model="lit-tiny", epochs=2, batch_size=24, lr=2e-3,
                     warmup=5, cache_image_features=True, keep_checkpoints=0), say=lambda _: None)
    weights = tmp_path / "x.pt"
    accuracies = []
    for epoch in (1, 2):
        weights.write_bytes((lit / "checkpoints" / f"epoch_{epoch}.pt").read_bytes())
        assert run("zeroshot", str(data), "--model", "lit-tiny", "--pretrained", str(weights),
                   "--report", str(tmp_path / "report")).returncode == 0
        accuracies.append(json.loads((tmp_path / "report" / "metrics.json").read_text()))
    assert len(list((tmp_path / "report" / ".cache").glob("classifier-*.pt"))) == 2  # the changed file got its own
    fresh = run("zeroshot", str(data), "--model", "lit-tiny", "--pretrained", str(weights), "--report", str(tmp_path / "new"))
    assert fresh.returncode == 0
    assert json.loads((tmp_path / "new" / "metrics.json").read_text())["acc1"] == accuracies[1]["acc1"]
    (tmp_path / "afile").write_text("x")
    assert "is a file" in run("zeroshot", str(data), "--model", "lit-tiny", "--report", str(tmp_path / "afile")).stderr
    assert "no manifest.json" in run("zeroshot", str(tmp_path), "--model", "lit-tiny", "--report", str(tmp_path / "r")).stderr


def test_the_python_api_checks_what_the_command_checks(tmp_path):
    import vlconvert.lit

    with pytest.raises(vlconvert.VLConvertError, match="give --checkpoint RUN or --model NAME"):
        vlconvert.lit.evaluate(str(tmp_path))
    with pytest.raises(vlconvert.VLConvertError, match="give one --pretrained per --model"):
        vlconvert.lit.evaluate(str(tmp_path), models=["lit-tiny", "lit-tiny"], pretrained=["a.pt"])
    with pytest.raises(vlconvert.VLConvertError, match="no manifest.json; give the --out folder"):
        vlconvert.lit.evaluate(str(tmp_path), models=["lit-tiny"])
    (tmp_path / "afile").write_text("x")
    with pytest.raises(vlconvert.VLConvertError, match="is a file"):
        vlconvert.lit.evaluate(str(tmp_path), models=["lit-tiny"], report_dir=tmp_path / "afile")
    # One string is one model, not one per character: so one --pretrained pairs with it.
    with pytest.raises(vlconvert.VLConvertError, match="no manifest.json; give the --out folder"):
        vlconvert.lit.evaluate(str(tmp_path), models="lit-tiny", pretrained="a.pt")


def test_importing_the_lit_package_does_not_import_torch():
    code = "import sys, vlconvert.lit; print('torch' in sys.modules, callable(vlconvert.lit.evaluate), 'torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.split() == ["False", "True", "False"], result.stderr  # evaluate loads torch when called
