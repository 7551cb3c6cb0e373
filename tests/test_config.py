"""`vlconvert build --config FILE`: TOML/JSON options, the manifest's "config", precedence, errors."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from inat_layout import EXAMPLE, REPO, read_json

import vlconvert
from vlconvert import VLConvertError
from vlconvert.config import config_keys, load_config
from vlconvert.options import OPTIONS
from vlconvert.pipeline import opencv_resize

KEYS = config_keys()
RECORDED = [o.name for o in OPTIONS if o.recorded]

VLCONVERT = shutil.which("vlconvert", path=str(Path(sys.executable).parent)) or "vlconvert"
DOC = (REPO / "docs" / "configuration.md").read_text(encoding="utf-8")
DOC_TOML = DOC.split("```toml\n")[1].split("```")[0]


# --image-codec auto is recorded as the path it chose: OpenCV's where vlconvert[fast] is installed.
CODEC = "opencv" if opencv_resize.available() else "pillow"


def run(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([VLCONVERT, *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def files_of(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_a_manifest_repeats_its_build_byte_for_byte(tmp_path):
    first = run("build", "--adapter", "inat2021", "--root", str(EXAMPLE), "--out", str(tmp_path / "first"),
                "--template-mix", "scientific=0.3,common=0.7", "--template", "taxonomic", "--seed", "11",
                "--shard-size", "25", "--shard-max-bytes", "600KB", "--resize", "40", "--resize-mode", "center_crop",
                "--format", "jpg", "--quality", "80", "--holdout-classes", "0.25", "--zeroshot-prompts", "openai_imagenet",
                "--max-error-rate", "0.5", "--workers", "2")
    assert first.returncode == 0, first.stderr
    manifest = read_json(tmp_path / "first" / "manifest.json")
    config = manifest["config"]
    assert list(config) == list(RECORDED)
    assert config == {
        "adapter": "inat2021", "root": str(EXAMPLE), "splits": ["train", "val"], "templates": ["taxonomic"],
        "template_mix": {"scientific": 0.3, "common": 0.7}, "all_templates": False, "zeroshot_prompts": "openai_imagenet",
        "holdout_classes": "0.25", "min_per_class": None, "max_per_class": None, "dedup": False,
        "dedup_against": [], "dedup_threshold": 8, "resize": 40, "resize_mode": "center_crop",
        "image_format": "jpg", "quality": 80,
        "image_codec": CODEC, "upscale": False, "max_image_bytes": 256 << 20, "max_image_pixels": 178_956_970,
        "shard_size": 25, "shard_max_bytes": 600_000, "seed": 11, "strict": False,
        "max_error_rate": 0.5, "adapter_options": {},
    }
    assert manifest["holdout"]["classes"] and len(manifest["splits"]["train"]["shards"]) > 1

    # From another folder, with a different runtime knob: neither changes a byte.
    again = run("build", "--config", str(tmp_path / "first" / "manifest.json"), "--out", str(tmp_path / "again"),
                "--workers", "1", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    first_files, again_files = files_of(tmp_path / "first"), files_of(tmp_path / "again")
    assert sorted(first_files) == sorted(again_files)
    assert any(name.endswith(".tar") for name in first_files) and "train/sizes.json" in first_files
    for name in first_files:
        assert first_files[name] == again_files[name], name
    assert read_json(tmp_path / "again" / "manifest.json") == manifest


@pytest.mark.slow
def test_the_documented_build_toml_sets_every_option(tmp_path):
    assert set(load_config_text(tmp_path, DOC_TOML, "build.toml")) == set(KEYS)
    # The example, as written, builds (paths relative to the folder the command runs in).
    (tmp_path / "build.toml").write_text(DOC_TOML, encoding="utf-8")
    result = run("build", "--config", str(tmp_path / "build.toml"), "--out", str(tmp_path / "out"), cwd=REPO)
    assert result.returncode == 0, result.stderr
    config = read_json(tmp_path / "out" / "manifest.json")["config"]
    assert config == {
        "adapter": "inat2021", "root": "examples/inat2021_mini", "splits": ["train", "val"],
        "templates": ["taxonomic_common", "scientific"], "template_mix": {"scientific": 0.3, "common": 0.3, "taxonomic": 0.4},
        "all_templates": False, "zeroshot_prompts": "simple", "holdout_classes": 0.25, "min_per_class": 2, "max_per_class": 500,
        "dedup": False, "dedup_against": [], "dedup_threshold": 8, "resize": 256,
        "resize_mode": "shorter", "image_format": "auto", "quality": 95, "image_codec": CODEC, "upscale": False,
        "max_image_bytes": 256 << 20,
        "max_image_pixels": 178_956_970, "shard_size": 1000,
        "shard_max_bytes": 1 << 30, "seed": 0, "strict": False, "max_error_rate": 0.001, "adapter_options": {},
    }
    assert not (REPO / "shards").exists()  # --out overrode the file's out


def load_config_text(tmp_path: Path, text: str, name: str) -> dict:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return load_config(str(path))


def test_the_command_line_overrides_the_file(tmp_path):
    (tmp_path / "build.toml").write_text(
        f'adapter = "inat2021"\nroot = "{EXAMPLE.as_posix()}"\nout = "{(tmp_path / "from-file").as_posix()}"\n'
        'split = "val"\ntemplate = "scientific"\nseed = 3\nshard-size = 10\nquality = 70\n'
        'resize = 32\n[option]\nspill_dir = "a"\n', encoding="utf-8")
    (tmp_path / "spill").mkdir()
    result = run("build", "--config", str(tmp_path / "build.toml"), "--out", str(tmp_path / "out"),
                 "--seed", "0", "--template", "common", "--option", "spill_dir=" + str(tmp_path / "spill"))
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "from-file").exists()
    config = read_json(tmp_path / "out" / "manifest.json")["config"]
    assert (config["seed"], config["templates"], config["adapter_options"]) == (0, ["common"], {"spill_dir": str(tmp_path / "spill")})
    assert (config["splits"], config["shard_size"], config["quality"], config["resize"]) == (["val"], 10, 70, 32)


def test_json_config_with_command_line_spellings(tmp_path):
    options = load_config_text(tmp_path, json.dumps({
        "adapter": "inat2021", "root": "r", "split": ["val"], "template": "scientific", "format": "webp",
        "shard-max-bytes": "2MiB", "template-mix": "scientific=1,common=3", "holdout-classes": None, "option": {"n": 1},
    }), "build.json")
    assert options == {"adapter": "inat2021", "root": "r", "splits": ["val"], "templates": ["scientific"], "image_format": "webp",
                       "shard_max_bytes": 2 << 20, "template_mix": {"scientific": 1.0, "common": 3.0}, "adapter_options": {"n": 1}}


@pytest.mark.parametrize(("text", "message"), [
    ('adapter = "inat2021"\nshard_count = 3\n', "unknown option 'shard_count'"),
    ('shard_size = "many"\n', "option 'shard_size': expected an integer, got a string \"many\""),
    ("splits = [1, 2]\n", "option 'splits': item 1: expected a non-empty string, got an integer 1"),
    ("upscale = 1\n", "option 'upscale': expected true or false"),
    ('resize_mode = "squash"\n', "option 'resize_mode': expected one of shorter, longer, center_crop, none"),
    ("quality = 0\n", "option 'quality': must be between 1 and 100, got 0"),
    ('shard_max_bytes = "lots"\n', "option 'shard_max_bytes': 'lots' is not a size"),
    ("max_error_rate = 2\n", "option 'max_error_rate': must be a fraction between 0 and 1"),
    ('template_mix = { scientific = -1 }\n', "option 'template_mix': scientific: needs a template name and a positive"),
    ("adapter_options = 3\n", "option 'adapter_options': expected a table"),
    ("seed = 1\nseed = 2\n", "not valid TOML"),
    ('split = "val"\nsplits = ["train"]\n', "'split' and 'splits' give the same option twice"),
])
def test_bad_options_are_one_line_errors_naming_key_and_file(tmp_path, text, message):
    path = tmp_path / "build.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(VLConvertError) as caught:
        load_config(str(path))
    assert str(caught.value).startswith(f"--config {path}: ") and message in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.slow
def test_config_errors_through_the_command(tmp_path):
    path = tmp_path / "build.toml"
    path.write_text('adapter = "inat2021"\nshard_count = 3\n', encoding="utf-8")
    result = run("build", "--config", str(path), "--root", str(EXAMPLE), "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: --config {path}: unknown option 'shard_count'; known: {', '.join(KEYS)}"]
    path.write_text('adapter = "inat2021"\nseed = "seven"\n', encoding="utf-8")
    result = run("build", "--config", str(path), "--root", str(EXAMPLE), "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: --config {path}: option 'seed': expected an integer, got a string \"seven\""
    result = run("build", "--config", str(tmp_path / "missing.toml"), "--out", str(tmp_path / "out"))
    assert result.returncode == 2 and result.stderr.strip() == f"error: --config {tmp_path / 'missing.toml'}: no such file"
    assert not (tmp_path / "out").exists()


def test_a_manifest_needs_out_and_an_old_one_is_refused(tmp_path):
    vlconvert.build("inat2021", str(EXAMPLE), str(tmp_path / "out"), splits=["val"], shard_size=20)
    result = run("build", "--config", str(tmp_path / "out" / "manifest.json"))
    assert result.returncode == 2 and "Missing option '--out'" in result.stderr
    manifest = read_json(tmp_path / "out" / "manifest.json")
    assert load_config(str(tmp_path / "out" / "manifest.json")) == {
        k: v for k, v in manifest["config"].items() if v is not None}
    del manifest["config"]
    (tmp_path / "old.json").write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(VLConvertError, match="has no \"config\" entry"):
        load_config(str(tmp_path / "old.json"))


def test_the_python_api_records_the_config_and_stays_deterministic(tmp_path):
    for name in ("a", "b"):
        vlconvert.build("inat2021", str(EXAMPLE), str(tmp_path / name), splits="val", templates="scientific", seed=4,
                        holdout_classes=0.2, workers=1 if name == "a" else 2)
    assert files_of(tmp_path / "a") == files_of(tmp_path / "b")
    config = read_json(tmp_path / "a" / "manifest.json")["config"]
    assert (config["splits"], config["templates"], config["holdout_classes"], config["seed"]) == (["val"], ["scientific"], 0.2, 4)
    assert not set(config) & {"out", "overwrite", "workers", "executor", "ray_address"}
