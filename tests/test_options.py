"""One entry in vlconvert.options is one option everywhere: --help, config files, build() and the manifest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import vlconvert
import vlconvert.options as build_options
from vlconvert.cli.build import make_build_command
from vlconvert.config import config_keys, load_config
from vlconvert.option_kinds import Integer, Text
from vlconvert.options import Option

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "inat2021_mini"


@pytest.fixture
def with_new_option(monkeypatch):
    new = Option("caption_note", Text(), "A note kept with the build's options.", recorded=True, decides_bytes=False,
                 metavar="NOTE")
    monkeypatch.setattr(build_options, "OPTIONS", (*build_options.OPTIONS, new))
    return new


def test_a_new_option_appears_in_help_config_files_and_the_manifest(with_new_option, tmp_path):
    command = make_build_command()
    help_text = CliRunner().invoke(command, ["--help"], terminal_width=200).output
    assert "--caption-note NOTE" in help_text and "A note kept with the build's options." in help_text

    assert "caption_note" in config_keys()
    config = tmp_path / "build.toml"
    config.write_text(f'adapter = "inat2021"\nroot = "{EXAMPLE}"\ncaption_note = "from the file"\nsplits = ["val"]\n')
    assert load_config(str(config))["caption_note"] == "from the file"

    result = CliRunner().invoke(command, ["--config", str(config), "--out", str(tmp_path / "cli"), "--caption-note", "given"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "cli" / "manifest.json").read_text())["config"]["caption_note"] == "given"

    vlconvert.build("inat2021", str(EXAMPLE), str(tmp_path / "api"), splits=["val"], caption_note="from python")
    manifest = json.loads((tmp_path / "api" / "manifest.json").read_text())
    assert manifest["config"]["caption_note"] == "from python"
    assert load_config(str(tmp_path / "api" / "manifest.json"))["caption_note"] == "from python"


def test_a_new_option_is_checked_the_same_way_everywhere(monkeypatch, tmp_path):
    monkeypatch.setattr(build_options, "OPTIONS", (*build_options.OPTIONS, Option("copies", Integer(1, 3), "Copies.", default=1)))
    with pytest.raises(vlconvert.VLConvertError, match="copies: must be between 1 and 3, got 9"):
        vlconvert.build("inat2021", str(EXAMPLE), str(tmp_path / "out"), copies=9)
    (tmp_path / "c.toml").write_text("copies = 9\n")
    with pytest.raises(vlconvert.VLConvertError, match="option 'copies': must be between 1 and 3, got 9"):
        load_config(str(tmp_path / "c.toml"))
    result = CliRunner().invoke(make_build_command(), ["-a", "inat2021", "-r", str(EXAMPLE), "-o", str(tmp_path / "o"), "--copies", "9"])
    assert result.exit_code == 2 and "--copies" in result.output


def test_the_python_api_takes_paths_numpy_numbers_and_whole_floats(tmp_path):
    numpy = pytest.importorskip("numpy")
    templates = tmp_path / "mine.j2"
    templates.write_text("a photo of {{ name }}.")
    summary = vlconvert.build("inat2021", EXAMPLE, tmp_path / "out", splits="val", templates=[templates], shard_size=numpy.int64(10),
                              shard_max_bytes=1e6, seed=numpy.int32(3), holdout_classes=numpy.float64(0.0),
                              adapter_options={"spill_dir": tmp_path})
    assert summary.out == str(tmp_path / "out") and summary.written == 36
    config = json.loads((tmp_path / "out" / "manifest.json").read_text())["config"]
    assert config["shard_size"] == 10 and config["shard_max_bytes"] == 1_000_000 and config["templates"] == [str(templates)]
    assert load_config(tmp_path / "out" / "manifest.json")["seed"] == 3  # a Path, as everywhere else


def test_a_path_out_still_reports_too_many_rejected(tmp_path):
    root = tmp_path / "inat"
    from inat_layout import make_inat_root

    make_inat_root(root, per_class={"val": 1})
    first = next((root / "val").rglob("*.jpg"))
    first.write_bytes(b"not a jpeg")
    with pytest.raises(vlconvert.TooManyRejected) as raised:
        vlconvert.build("inat2021", root, tmp_path / "out", strict=True)
    assert raised.value.summary.out == str(tmp_path / "out") and raised.value.summary.errored == 1


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"root": None}, "root: required"),
    ({"out": None}, "out: required"),
    ({"splits": ["val", ""]}, "splits: item 2: expected a non-empty string"),
    ({"adapter_options": {"x": [1]}}, "adapter_options: x: expected a string, number or boolean"),
])
def test_the_python_api_names_the_option_of_a_wrong_value(tmp_path, kwargs, message):
    arguments = {"root": str(EXAMPLE), "out": str(tmp_path / "out"), **kwargs}
    with pytest.raises(vlconvert.VLConvertError, match=message):
        vlconvert.build("inat2021", arguments.pop("root"), arguments.pop("out"), **arguments)


def test_empty_values_on_the_command_line_mean_missing_or_unset(tmp_path):
    runner = CliRunner()
    missing = runner.invoke(make_build_command(), ["-a", "inat2021", "-r", "", "-o", str(tmp_path / "o")])
    assert missing.exit_code == 2 and "Missing option '--root'" in missing.output
    unset = runner.invoke(make_build_command(), ["-a", "inat2021", "-r", str(EXAMPLE), "-o", str(tmp_path / "o"), "--split", "val",
                                                 "--template-mix", "", "--holdout-classes", ""])
    assert unset.exit_code == 0, unset.output
    config = json.loads((tmp_path / "o" / "manifest.json").read_text())["config"]
    assert config["template_mix"] is None and config["holdout_classes"] is None


def test_a_flag_on_by_default_must_be_declared_inverted(monkeypatch):
    from vlconvert.option_kinds import Flag

    monkeypatch.setattr(build_options, "OPTIONS", (*build_options.OPTIONS, Option("verify", Flag(), "Verify.", default=True)))
    with pytest.raises(ValueError, match="a flag defaulting to True needs inverted=True"):
        make_build_command()


def test_help_shows_every_option_of_build_with_its_default():
    import inspect

    signature = inspect.signature(vlconvert.build)
    assert signature.parameters["shard_size"].default == build_options.DEFAULT_SHARD_SIZE
    assert {o.name for o in build_options.OPTIONS} <= set(signature.parameters)


def test_build_refuses_an_unknown_keyword_as_python_does(tmp_path):
    with pytest.raises(TypeError, match="unexpected keyword argument 'shard_count'"):
        vlconvert.build("inat2021", str(EXAMPLE), str(tmp_path / "out"), shard_count=3)


def test_every_option_has_help_and_a_click_flag_and_recorded_ones_come_in_manifest_order():
    names = [o.name for o in build_options.OPTIONS]
    assert len(names) == len(set(names))
    flags = [f for o in build_options.OPTIONS for f in o.cli_flags]
    assert len(flags) == len(set(flags))
    assert all(o.help.strip() for o in build_options.OPTIONS)
    help_text = CliRunner().invoke(make_build_command(), ["--help"], terminal_width=200).output
    assert all(o.cli_flags[0] in help_text for o in build_options.OPTIONS)
