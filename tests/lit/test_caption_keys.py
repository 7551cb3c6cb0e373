"""lit-train's --json-text-key / --json-text-key-probs (open_clip main's caption mixing), and stock open_clip 3.3
on the same shards: the commands docs/lit.md shows, with a tiny random-init model on CPU."""

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from inat_layout import EXAMPLE
from optional import require

import vlconvert

torch = require("torch")
open_clip = require("open_clip")

from vlconvert.lit.caption_keys import CaptionChoice, caption_choice  # noqa: E402
from vlconvert.lit.data import Batches, read_samples, split_shards  # noqa: E402
from vlconvert.lit.train import LitOptions, train  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
VLCONVERT = Path(sys.executable).parent / "vlconvert"
MIX = "caption_scientific;caption_taxonomic_common"


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    out = tmp_path_factory.mktemp("caption_keys") / "OUT"
    vlconvert.build("inat2021", str(EXAMPLE), str(out), shard_size=40, templates=["taxonomic_common", "scientific"])
    return out


def log_lines(run):
    return [json.loads(line) for line in (Path(run) / "log.jsonl").read_text().splitlines()]


def samples(n, **captions):
    """n synthetic samples as read_samples gives them, each KEY.json holding ``captions``."""
    meta = json.dumps(captions).encode()
    return [{"__key__": f"k{i}", "__url__": "mem", "json": meta} for i in range(n)]


@pytest.mark.slow
def test_lit_train_mixes_json_captions_through_the_cli(shards, tmp_path):
    run = tmp_path / "run"
    result = subprocess.run(
        [str(VLCONVERT), "lit-train", str(shards), "--run-dir", str(run), "--model", "lit-tiny", "--image-weights", "none",
         "--json-text-key", MIX, "--json-text-key-probs", "0.5", "0.5", "--epochs", "1", "--batch-size", "16", "--warmup", "2",
         "--seed", "3", "--cache-image-features"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    options = json.loads((run / "run.json").read_text())["options"]
    assert options["json_text_key"] == MIX and options["json_text_key_probs"] == [0.5, 0.5]
    assert options["caption_member"] == "txt"  # the default stays; --json-text-key overrides it
    lines = log_lines(run)
    assert len(lines) == 120 // 16
    assert all(set(line["captions"]) == {"caption_scientific", "caption_taxonomic_common"} for line in lines)
    assert all(sum(line["captions"].values()) == 16 for line in lines)
    drawn = {key: sum(line["captions"][key] for line in lines) for key in ("caption_scientific", "caption_taxonomic_common")}
    assert min(drawn.values()) >= 30  # about 56 each of 112


def test_the_mix_follows_the_weights_and_repeats_with_the_seed():
    choice = caption_choice(json_text_key=MIX, json_text_key_probs=[0.7, 0.3])
    assert choice.weights == (0.7, 0.3)
    batch = samples(4000, caption_scientific="S", caption_taxonomic_common="T")
    first = [choice.text(s, seed=0, epoch=1) for s in batch]
    assert first == [choice.text(s, seed=0, epoch=1) for s in batch]  # per-sample generators: no global state
    share = sum(source == "caption_scientific" for _, source in first) / len(first)
    assert 0.67 < share < 0.73
    assert all(text == {"caption_scientific": "S", "caption_taxonomic_common": "T"}[source] for text, source in first)
    assert first != [choice.text(s, seed=1, epoch=1) for s in batch]
    assert first != [choice.text(s, seed=0, epoch=2) for s in batch]  # every epoch draws afresh
    # Missing trailing weights are 0: fallback only.  Without weights: the first non-empty key, in order.
    fallback = caption_choice(json_text_key="caption_a; caption_b", json_text_key_probs=[1])
    assert fallback.weights == (1.0, 0.0)
    assert fallback.text(samples(1, caption_a="  ", caption_b=" B ")[0], 0, 1) == ("B", "caption_b")
    assert {fallback.text(s, 0, 1) for s in samples(50, caption_a="A", caption_b="B")} == {("A", "caption_a")}
    assert caption_choice(json_text_key="caption_a;caption_b").text(samples(1, caption_b="B")[0], 0, 1) == ("B", "caption_b")


def test_the_stream_draws_the_same_captions_with_and_without_images(shards):
    urls, _ = split_shards(str(shards), "train")
    choice = CaptionChoice(keys=("caption_scientific", "caption_taxonomic_common"), weights=(1.0, 1.0))

    def sources(seed, epoch, with_images):
        batches = Batches(urls, 0, seed, 16, choice, preprocess=lambda image: torch.zeros(1), tokenizer=lambda texts: texts)
        return [(keys, texts, drawn) for keys, _, texts, drawn in batches.epoch(epoch, 7, with_images=with_images)]

    plain = sources(3, 1, with_images=True)
    assert plain == sources(3, 1, with_images=False)  # cached image features do not change the captions
    assert plain != sources(3, 2, with_images=False)
    metadata = {s["__key__"]: json.loads(s["json"]) for s in read_samples(urls)}
    for keys, texts, drawn in plain:
        assert texts == [metadata[k][source] for k, source in zip(keys, drawn)]


@pytest.mark.slow
def test_two_runs_with_the_same_seed_train_on_the_same_captions(shards, tmp_path):
    def run(name, seed):
        train(LitOptions(data=str(shards), out=str(tmp_path / name), image_weights="none", model="lit-tiny", epochs=1,
                         batch_size=24, lr=1e-3, warmup=2, seed=seed, cache_image_features=True, json_text_key=MIX,
                         json_text_key_probs=(0.5, 0.5)), say=lambda _: None)
        return [(line["captions"], line["loss"]) for line in log_lines(tmp_path / name)]

    assert run("a", 5) == run("b", 5)  # another seed draws other captions: test_the_mix_follows_the_weights_…


BAD = [
    (["--json-text-key", MIX, "--json-text-key-probs", "0.5", "0.3", "0.2"], "3 weights for 2 keys"),
    (["--json-text-key", MIX, "--json-text-key-probs", "-0.5", "0.5"], "must be a finite number ≥ 0"),
    (["--json-text-key", MIX, "--json-text-key-probs", "0", "0"], "at least one weight must be positive"),
    (["--json-text-key", MIX, "--json-text-key-probs", "half"], "give numbers"),
    (["--json-text-key-probs", "1"], "give --json-text-key too"),
    (["--json-text-key", MIX, "--caption-member", "scientific.txt"], "not both"),
    (["--json-text-key", "caption_scientific;caption_sci"],
     "--json-text-key caption_sci: no such key in the samples' JSON (train/train-000000.tar, sample "),
    (["--json-text-key", "taxonomy"], "--json-text-key taxonomy: holds dict, not text"),
]


@pytest.mark.slow
@pytest.mark.parametrize("args, message", BAD, ids=["more-weights-than-keys", "negative", "all-zero", "not-a-number",
                                                     "weights-without-keys", "two-sources", "unknown-key", "not-text"])
def test_bad_caption_options_are_one_line_before_torch_loads(shards, tmp_path, args, message):
    argv = ["vlconvert", "lit-train", str(shards), "--run-dir", str(tmp_path / "run"), "--model", "lit-tiny",
            "--image-weights", "none", *args]
    probe = ("import sys\nfrom vlconvert.cli.root import main\nsys.argv = " + repr(argv) + "\ntry:\n    main()\n"
             "except SystemExit as exc:\n    print(exc.code, 'torch' in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.stdout.split() == ["2", "False"], result.stderr  # exit code 2, and torch never loaded
    assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith("error: ")
    assert message in result.stderr
    if "no such key" in message:
        assert "its captions: caption_scientific, caption_taxonomic_common;" in result.stderr
    assert not (tmp_path / "run").exists()


def doc_commands() -> list[list[str]]:
    """The commands of docs/lit.md's "Training with stock open_clip", continuation lines joined, comments dropped."""
    section = (REPO / "docs" / "lit.md").read_text(encoding="utf-8").split("## Training with stock open_clip")[1].split("\n## ")[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.S)
    return [shlex.split(re.sub(r"#.*", "", block).replace("\\\n", " ")) for block in blocks]


def test_the_docs_commands_parse_and_open_clip_3_3_reads_txt(shards):
    """The docs' open_clip 3.3 command parses with 3.3's own parser, its data options load the shards through 3.3's
    webdataset loader, and what it trains on is each sample's txt member; main's command adds only the two JSON options."""
    params = require("open_clip_train.params")
    data = require("open_clip_train.data")
    build, stock, main, ours = doc_commands()
    assert build[:2] == ["vlconvert", "build"] and ours[:2] == ["vlconvert", "lit-train"]
    assert stock[:3] == main[:3] == ["python", "-m", "open_clip_train.main"]
    assert [w for w in main if w not in stock] == ["--json-text-key", MIX, "--json-text-key-probs", "0.5", "0.5"]
    assert main[main.index("--json-text-key-probs"):][:3] == ours[ours.index("--json-text-key-probs"):][:3]
    from vlconvert.cli.lit import lit_train_command

    lit_train_command.make_context("lit-train", ours[2:])  # every option of (c) is one lit-train has
    args = params.parse_args([w.replace("OUT", str(shards)) for w in stock[3:]])
    assert args.dataset_type == "webdataset" and args.lock_image and args.train_num_samples == 120
    args.batch_size, args.workers, args.world_size = 8, 0, 1  # the shape of the run, not what it reads
    tokenizer = open_clip.get_tokenizer("RN50")
    preprocess = lambda image: torch.zeros(3, 8, 8)  # noqa: E731
    info = data.get_wds_dataset(args, preprocess, is_train=True, epoch=0, tokenizer=tokenizer)
    read = sorted(tuple(t.tolist()) for _, texts in info.dataloader for t in texts)
    urls, total = split_shards(str(shards), "train")
    members = list(read_samples(urls))
    assert len(read) == total == len(members) == 120
    assert read == sorted(tuple(tokenizer(s["txt"].decode())[0].tolist()) for s in members)
    assert read != sorted(tuple(tokenizer(json.loads(s["json"])["caption_scientific"])[0].tolist()) for s in members)
    assert all(json.loads(s["json"])["caption_taxonomic_common"] == s["txt"].decode() for s in members)
