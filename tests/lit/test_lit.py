"""The LiT recipe on real shards with a tiny random-init open_clip model, on CPU."""

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from inat_layout import EXAMPLE
from optional import require

import vlconvert

torch = require("torch")
open_clip = require("open_clip")

from vlconvert.lit import model as lit_model  # noqa: E402
from vlconvert.lit.train import LitOptions, train  # noqa: E402

VLCONVERT = Path(sys.executable).parent / "vlconvert"


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    out = tmp_path_factory.mktemp("lit") / "shards"
    vlconvert.build("inat2021", str(EXAMPLE), str(out), shard_size=40, templates=["taxonomic_common", "scientific"])
    return out


def options(shards, run, **more):
    return replace(LitOptions(data=str(shards), out=str(run), image_weights="none", model="lit-tiny", epochs=1,
                              batch_size=16, lr=1e-3, warmup=2, seed=3), **more)


def losses(run):
    return [json.loads(line)["loss"] for line in (Path(run) / "log.jsonl").read_text().splitlines()]


def test_image_tower_stays_locked_and_the_text_tower_learns(shards, tmp_path):
    train(options(shards, tmp_path / "run"), say=lambda _: None)
    trained = torch.load(tmp_path / "run" / "checkpoints" / "epoch_1.pt", weights_only=False)["state_dict"]
    torch.manual_seed(3)
    start, _, _ = lit_model.create(lit_model.register_config("lit-tiny", None), "none", None, 0, warn=lambda _: None)
    initial = start.state_dict()
    visual = [k for k in initial if k.startswith("visual.")]
    text = [k for k in initial if not k.startswith("visual.") and k != "logit_scale"]
    assert visual and all(torch.equal(initial[k], trained[k]) for k in visual)
    assert any(not torch.equal(initial[k], trained[k]) for k in text)
    assert not torch.equal(initial["logit_scale"], trained["logit_scale"])  # the temperature is learned


@pytest.mark.slow
def test_cached_features_give_the_same_loss_trajectory(shards, tmp_path):
    train(options(shards, tmp_path / "plain", epochs=2), say=lambda _: None)
    train(options(shards, tmp_path / "cached", epochs=2, cache_image_features=True), say=lambda _: None)
    plain, cached = losses(tmp_path / "plain"), losses(tmp_path / "cached")
    assert len(plain) == len(cached) == 14  # 120 samples // 16 per batch = 7 steps per epoch
    assert cached == pytest.approx(plain, abs=1e-4)
    files = sorted((tmp_path / "cached" / "image_features" / "train").glob("*.pt"))
    caches = [torch.load(f, weights_only=False) for f in files]
    assert len(files) == 3 and sum(len(c["keys"]) for c in caches) == 120  # one file per shard
    assert all(c["features"].shape[1] == 64 and c["identity"]["shard_sha256"] for c in caches)


def test_checkpoints_load_in_open_clip(shards, tmp_path):
    train(options(shards, tmp_path / "run", caption_member="scientific.txt"), say=lambda _: None)
    checkpoint = tmp_path / "run" / "checkpoints" / "epoch_1.pt"
    open_clip.add_model_config(tmp_path / "run" / "lit-tiny.json")  # the run keeps its model config
    model, _, _ = open_clip.create_model_and_transforms("lit-tiny", pretrained=str(checkpoint))
    saved = torch.load(checkpoint, weights_only=False)["state_dict"]
    assert all(torch.equal(v, saved[k]) for k, v in model.state_dict().items())
    assert json.loads((tmp_path / "run" / "run.json").read_text())["options"]["caption_member"] == "scientific.txt"


@pytest.mark.slow
def test_resume_continues_where_it_stopped(shards, tmp_path):
    run = tmp_path / "run"
    train(options(shards, run, epochs=2, cache_image_features=True), say=lambda _: None)
    straight = losses(run)
    final = torch.load(run / "checkpoints" / "epoch_2.pt", weights_only=False)["state_dict"]
    # Killed during epoch 2: its checkpoint never written.
    killed = tmp_path / "killed"

    def die_in_epoch_2(done, total):
        if done == 8:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(options(shards, killed, epochs=2, cache_image_features=True), say=lambda _: None, progress=die_in_epoch_2)
    run = killed  # its log holds a step of epoch 2 that the resumed run repeats: resuming drops it
    said = []
    train(options(shards, run, epochs=2, cache_image_features=True), say=said.append)
    assert any(line.startswith("resuming after epoch 1") for line in said)
    assert losses(run) == pytest.approx(straight, abs=1e-5)
    resumed = torch.load(run / "checkpoints" / "epoch_2.pt", weights_only=False)["state_dict"]
    assert all(torch.allclose(final[k], resumed[k], atol=1e-6) for k in final)


@pytest.mark.slow
def test_two_processes_with_torchrun_on_cpu(shards, tmp_path):
    run = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517", "-m", "vlconvert",
         "lit-train", str(shards), "--run-dir", str(run), "--model", "lit-tiny", "--image-weights", "none",
         "--epochs", "1", "--batch-size", "8", "--seed", "3"],
        capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr.count("epoch 1/1") == 1  # rank 0 reports and saves; rank 1 trains quietly
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["epoch_1.pt", "epochs.json", "optimizer_1.pt"]
    assert len(losses(run)) == 120 // (8 * 2)


@pytest.mark.slow
def test_cli_requires_explicit_image_weights(shards, tmp_path):
    result = subprocess.run([str(VLCONVERT), "lit-train", str(shards), "--run-dir", str(tmp_path), "--model", "lit-tiny"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "--image-weights is required" in result.stderr
    result = subprocess.run([str(VLCONVERT), "lit-train", str(shards), "--run-dir", str(tmp_path), "--model", "ViT-B-16",
                             "--image-weights", "openclip:laion2b_s34b_b88k"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "are not in the local cache" in result.stderr


def test_trimmed_text_encoding_equals_open_clips():
    torch.manual_seed(0)
    model, _, tokenizer = lit_model.create(lit_model.register_config("lit-tiny", None), "none", None, 0, warn=lambda _: None)
    texts = tokenizer(["a photo of Pica hudsonia.", "a photo of Animalia Chordata Aves Passeriformes Corvidae Pica hudsonia."])
    with torch.no_grad():
        full = model.encode_text(texts, normalize=True)
        trimmed = lit_model.encode_text(model, texts)
    assert torch.allclose(full, trimmed, atol=1e-5)


def test_batchnorm_statistics_of_a_locked_resnet_stay_fixed(shards, tmp_path):
    config = tmp_path / "lit-rn-tiny.json"
    config.write_text(json.dumps({"embed_dim": 32, "vision_cfg": {"image_size": 64, "layers": [1, 1, 1, 1], "width": 16},
                                  "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}))
    train(options(shards, tmp_path / "rn", model=None, model_config=str(config)), say=lambda _: None)
    trained = torch.load(tmp_path / "rn" / "checkpoints" / "epoch_1.pt", weights_only=False)["state_dict"]
    torch.manual_seed(3)
    start, _, _ = lit_model.create(lit_model.register_config(None, str(config)), "none", None, 0, warn=lambda _: None)
    statistics = [k for k in start.state_dict() if k.startswith("visual.") and ("running_" in k or "num_batches" in k)]
    assert statistics and all(torch.equal(start.state_dict()[k], trained[k]) for k in statistics)


def test_image_and_text_weights_from_checkpoint_files_and_fsspec_data(shards, tmp_path):
    torch.manual_seed(11)
    donor, _, _ = lit_model.create(lit_model.register_config("lit-tiny", None), "none", None, 0, warn=lambda _: None)
    torch.save({"state_dict": {f"module.{k}": v for k, v in donor.state_dict().items()}}, tmp_path / "donor.pt")
    run = tmp_path / "run"
    train(options(f"file://{shards}", run, image_weights=str(tmp_path / "donor.pt"), text_weights=str(tmp_path / "donor.pt")),
          say=lambda _: None)
    trained = torch.load(run / "checkpoints" / "epoch_1.pt", weights_only=False)["state_dict"]
    donated = donor.state_dict()
    assert all(torch.equal(donated[k], trained[k]) for k in donated if k.startswith("visual."))  # loaded, then locked
    assert json.loads((run / "log.jsonl").read_text().splitlines()[0])["step"] == 1
    with pytest.raises(vlconvert.VLConvertError, match="does not fit lit-tiny's image tower"):
        torch.save({"visual.conv1.weight": torch.zeros(1)}, tmp_path / "wrong.pt")
        train(options(shards, tmp_path / "bad", image_weights=str(tmp_path / "wrong.pt")), say=lambda _: None)


def test_unlocked_groups_train_the_top_of_the_image_tower(shards, tmp_path):
    train(options(shards, tmp_path / "run", unlocked_groups=1), say=lambda _: None)
    trained = torch.load(tmp_path / "run" / "checkpoints" / "epoch_1.pt", weights_only=False)["state_dict"]
    torch.manual_seed(3)
    start, _, _ = lit_model.create(lit_model.register_config("lit-tiny", None), "none", None, 0, warn=lambda _: None)
    initial = start.state_dict()
    assert not torch.equal(initial["visual.proj"], trained["visual.proj"])  # the last group learns
    assert torch.equal(initial["visual.conv1.weight"], trained["visual.conv1.weight"])  # the rest stays locked
    with pytest.raises(vlconvert.VLConvertError, match="--cache-image-features needs a fully locked image tower"):
        train(options(shards, tmp_path / "cached", unlocked_groups=1, cache_image_features=True), say=lambda _: None)



def test_resume_refuses_another_model_or_schedule(shards, tmp_path):
    run = tmp_path / "run"
    train(options(shards, run, epochs=2), say=lambda _: None)
    with pytest.raises(vlconvert.VLConvertError, match="started with --epochs 2"):
        train(options(shards, run, epochs=3), say=lambda _: None)
    config = tmp_path / "other.json"
    vision = {"image_size": 64, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16}
    config.write_text(json.dumps({"embed_dim": 32, "vision_cfg": vision,
                                  "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}))
    with pytest.raises(vlconvert.VLConvertError, match="holds a run of lit-tiny, not other"):
        train(options(shards, run, epochs=2, model=None, model_config=str(config)), say=lambda _: None)
    assert json.loads((run / "run.json").read_text())["model"] == "lit-tiny"  # the failed attempt changed nothing
    said = []
    train(options(shards, run, epochs=2), say=said.append)
    assert "the run already finished its 2 epochs" in said


def test_bad_weights_and_configs_are_one_line_errors(shards, tmp_path):
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(vlconvert.VLConvertError, match="garbage.pt: not a PyTorch checkpoint"):
        train(options(shards, tmp_path / "a", image_weights=str(tmp_path / "garbage.pt")), say=lambda _: None)
    torch.save({"visual.conv1.weight": torch.zeros(64, 3, 16, 16)}, tmp_path / "visual_only.pt")
    with pytest.raises(vlconvert.VLConvertError, match="holds no tensor of lit-tiny's text tower"):
        train(options(shards, tmp_path / "b", text_weights=str(tmp_path / "visual_only.pt")), say=lambda _: None)
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(vlconvert.VLConvertError, match="broken.json: not a JSON model config"):
        train(options(shards, tmp_path / "c", model=None, model_config=str(tmp_path / "broken.json")), say=lambda _: None)


def test_the_python_api_requires_what_the_command_requires(shards, tmp_path):
    with pytest.raises(vlconvert.VLConvertError, match="--image-weights is required"):
        train(LitOptions(data=str(shards), out=str(tmp_path / "a"), model="lit-tiny"), say=lambda _: None)
    with pytest.raises(vlconvert.VLConvertError, match="give --model or --model-config"):
        train(LitOptions(data=str(shards), out=str(tmp_path / "b"), image_weights="none"), say=lambda _: None)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
