"""The installed ``vlconvert`` command, run as a user runs it."""

import json
import random
import tarfile

import pytest
from command import run
from inat_layout import EXAMPLE, all_categories, make_inat_root, read_json


def test_build_on_the_embedded_example(tmp_path):
    result = run("build", "--adapter", "inat2021", "--root", str(EXAMPLE), "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert "wrote 156 samples in 2 shards" in result.stdout and "(train: 120 in 1 shard, val: 36 in 1 shard)" in result.stdout
    assert "errors: 0" in result.stdout and "images/s" in result.stdout
    assert sum(read_json(tmp_path / "out" / "train" / "sizes.json").values()) == 120


def test_build_options_reach_the_manifest(tmp_path):
    root = make_inat_root(tmp_path / "inat", per_class={"train": 2, "val": 1})
    result = run("build", "-a", "inat2021", "-r", str(root), "-o", str(tmp_path / "out"), "--split", "val",
                 "--template", "scientific", "--template", "common", "--shard-size", "5", "--shard-max-bytes", "2MB",
                 "--seed", "7", "--workers", "2", "--resize", "40")
    assert result.returncode == 0, result.stderr
    manifest = read_json(tmp_path / "out" / "manifest.json")
    assert list(manifest["splits"]) == ["val"]
    assert [t["member"] for t in manifest["templates"]] == ["txt", "common.txt"]
    assert (manifest["seed"], manifest["shard_size"], manifest["shard_max_bytes"]) == (7, 5, 2_000_000)
    assert manifest["image"]["size"] == 40 and len(manifest["splits"]["val"]["shards"]) == 3


def test_rejected_records_are_reported(tmp_path):
    root = make_inat_root(tmp_path / "inat", per_class={"val": 1})
    (root / read_json(root / "val.json")["images"][0]["file_name"]).unlink()
    result = run("build", "-a", "inat2021", "-r", str(root), "-o", str(tmp_path / "out"))
    assert result.returncode == 0
    assert "rejected 1 records (image: 1); reasons in" in result.stdout
    error = json.loads((tmp_path / "out" / "errors.jsonl").read_text())
    assert error["reason"].startswith("image file not found: ")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--adapter", "inat2021", "--root", "/nonexistent/inat"], "error: /nonexistent/inat: no such folder"),
        (["--adapter", "cub9000", "--root", "."], "error: unknown adapter 'cub9000'; available: cub200, "),
        (["--adapter", "inat2021", "--root", str(EXAMPLE), "--template", "missing.j2"], "error: template file missing.j2 does not exist"),
        (["--adapter", "inat2021", "--root", str(EXAMPLE), "--split", "test"], "error: split 'test' not found"),
        (["--adapter", "inat2021", "--root", str(EXAMPLE), "--out", "/etc/hostname/shards"],
         "error: /etc/hostname/shards: cannot create the output folder: Not a directory"),
    ],
)
def test_user_mistakes_exit_2_without_traceback(tmp_path, args, message):
    result = run("build", *args, *([] if "--out" in args else ["--out", str(tmp_path / "out")]))
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_usage_errors_exit_2(tmp_path):
    result = run("build", "--adapter", "inat2021", "--out", str(tmp_path))
    assert result.returncode == 2 and "Missing option '--root'" in result.stderr
    result = run("build", "-a", "inat2021", "-r", ".", "-o", str(tmp_path), "--shard-max-bytes", "lots")
    assert result.returncode == 2 and "'lots' is not a size" in result.stderr
    result = run("build", "-a", "inat2021", "-r", ".", "-o", str(tmp_path), "--shard-max-bytes", "0")
    assert result.returncode == 2 and "must be at least 1 byte" in result.stderr


@pytest.mark.parametrize(
    ("text", "size"), [("500", 500), ("2MB", 2_000_000), ("2MiB", 2 << 20), ("1.5GB", 1_500_000_000), ("1GiB", 1 << 30)]
)
def test_byte_sizes(text, size):
    from vlconvert.cli.build import ParsedBy
    from vlconvert.option_kinds import Size

    assert ParsedBy(Size()).convert(text, None, None) == size


@pytest.mark.slow
@pytest.mark.parametrize("command", [[], ["build"], ["adapters"], ["captions"], ["captions", "list"], ["captions", "preview"],
                                     ["captions", "lint"]])
def test_help_on_every_command(command):
    result = run(*command, "--help")
    assert result.returncode == 0 and "Usage: vlconvert" in result.stdout
    if command == ["build"]:
        for option in ("--adapter", "--root", "--out", "--split", "--template", "--resize", "--shard-size", "--workers", "--seed"):
            assert option in result.stdout


def test_adapters_and_templates_listings():
    adapters = run("adapters")
    lines = adapters.stdout.splitlines()
    assert adapters.returncode == 0 and [line.split()[0] for line in lines] == [
        "cub200", "fgvc_aircraft", "imagefolder", "inat2017", "inat2018", "inat2019", "inat2021", "nabirds", "table"]
    assert all(len(line.split(None, 1)) == 2 for line in lines) and "iNaturalist 2021" in adapters.stdout
    templates = run("captions", "list").stdout
    assert "taxonomic_common" in templates and "a photo of Lumbricus terrestris." in templates


def test_build_on_an_unseen_dataset_with_real_categories(tmp_path):
    everything = all_categories()
    rng = random.Random(11)
    non_ascii = [c for c in everything if not c["common_name"].isascii()][:6]  # Jorō Spider first
    chosen = non_ascii + [c for c in rng.sample(everything, 46) if c not in non_ascii][:40]
    root = make_inat_root(tmp_path / "unseen", categories=chosen, per_class={"train": 2, "val": 1})
    result = run("build", "--adapter", "inat2021", "--root", str(root), "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    out = tmp_path / "out"
    for split, expected in (("train", 92), ("val", 46)):
        assert sum(read_json(out / split / "sizes.json").values()) == expected
    captions = set()
    for shard in (out / "train").glob("*.tar"):
        with tarfile.open(shard) as tar:
            captions |= {tar.extractfile(m).read().decode() for m in tar if m.name.endswith(".txt")}
    for cat in chosen:
        assert any(cat["name"] in c and cat["common_name"] in c for c in captions), cat["name"]
    assert any("Jorō Spider" in c for c in captions)
    labels = sorted(chosen, key=lambda c: c["id"])
    assert (out / "classnames.txt").read_text(encoding="utf-8").splitlines() == [c["name"] for c in labels]


def test_captions_preview_on_the_embedded_example():
    result = run("captions", "preview", "-a", "inat2021", "-r", str(EXAMPLE), "-t", "scientific_common", "-n", "4", "--seed", "1")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 8
    for header, caption in zip(lines[::2], lines[1::2]):
        scientific = header.split("] ", 1)[1].split(" (")[0].split("  ·")[0]
        assert caption.strip().startswith(f"a photo of {scientific}")
    assert result.stdout == run("captions", "preview", "-a", "inat2021", "-r", str(EXAMPLE), "-t", "scientific_common",
                                "-n", "4", "--seed", "1").stdout


@pytest.mark.slow
def test_captions_lint_passes_and_counts_tokens_on_the_example():
    result = run("captions", "lint", "-a", "inat2021", "-r", str(EXAMPLE), "-t", "taxonomic_common")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "template taxonomic_common: 12 classes, 120 sampled train records" in result.stdout
    assert "colliding captions: 0" in result.stdout
    assert "truncated at the 77-token context: 0 of 132" in result.stdout and result.stdout.rstrip().endswith("lint passed")


@pytest.mark.slow
def test_captions_lint_reports_collisions_and_undefined_fields(tmp_path):
    pica = next(c for c in read_json(EXAMPLE / "val.json")["categories"] if c["name"] == "Pica hudsonia")
    twin = {**pica, "id": 99999, "name": "Pica pica", "specific_epithet": "pica", "common_name": "black-billed magpie",
            "image_dir_name": "99999_Animalia_Chordata_Aves_Passeriformes_Corvidae_Pica_pica"}  # same name, other case
    root = make_inat_root(tmp_path / "inat", categories=[pica, twin], per_class={"train": 1})
    common = run("captions", "lint", "-a", "inat2021", "-r", str(root), "-t", "common")
    assert common.returncode == 0
    assert "colliding captions: 1" in common.stdout
    assert "'a photo of black-billed magpie.': Pica hudsonia, Pica pica" in common.stdout  # as CLIP's tokenizer sees it
    assert "colliding captions: 0" in run("captions", "lint", "-a", "inat2021", "-r", str(root), "-t", "scientific").stdout
    template = tmp_path / "bad.j2"
    template.write_text("a photo of {{ name }} in {{ meta.habitat }} by {{ photographer }}.")
    bad = run("captions", "lint", "-a", "inat2021", "-r", str(root), "-t", str(template))
    assert bad.returncode == 1
    assert "undefined field: photographer" in bad.stdout and "undefined field: meta.habitat" in bad.stdout
    assert "lint failed" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.parametrize("mix", ["scientific=nan,common=1", "scientific=1,scientific=2", "scientific", "scientific=-1"])
def test_bad_template_mix_is_a_usage_error(tmp_path, mix):
    result = run("build", "-a", "inat2021", "-r", str(EXAMPLE), "-o", str(tmp_path / "o"), "--template-mix", mix)
    assert result.returncode == 2 and "Invalid value for '--template-mix'" in result.stderr


def test_preview_fails_when_captions_fail(tmp_path):
    template = tmp_path / "depth.j2"
    template.write_text("a photo of {{ name }} at {{ meta.depth }} m")
    result = run("captions", "preview", "-a", "inat2021", "-r", str(EXAMPLE), "-t", str(template), "-n", "2")
    assert result.returncode == 1 and result.stdout.count("ERROR: template depth") == 2
    assert "2 of the sampled captions failed to render" in result.stderr


def test_prompt_files_need_exactly_the_c_placeholder(tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a photo of {c}.\n{x} and {c}\n")
    result = run("build", "-a", "inat2021", "-r", str(EXAMPLE), "-o", str(tmp_path / "o"), "--zeroshot-prompts", str(prompts))
    assert result.returncode == 2 and "prompts.txt, line 2: a zero-shot template needs the placeholder {c} and no other braces" \
        in result.stderr
