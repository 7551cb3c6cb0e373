"""One vocabulary across commands (docs/cli.md's preface): the same spelling for the same idea, defaults shown,
and the old spellings still working with a deprecation line."""

import click
import pytest
from command import run
from inat_layout import EXAMPLE
from optional import require

import vlconvert
from vlconvert.cli.root import cli
from vlconvert.cli.vocabulary import SHORT_FLAGS

UNSET = getattr(click.core, "UNSET", None)  # click 8.2+: an option given no default

READS_A_BUILD = {"validate", "inspect", "dedup", "lit-train", "zeroshot", "export-clip-benchmark"}


def commands(group=cli, prefix=()):
    ctx = click.Context(group, info_name="vlconvert")
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if isinstance(command, click.Group):
            yield from commands(command, (*prefix, name))
        else:
            yield " ".join((*prefix, name)), command


def visible_options(command):
    return [p for p in command.params if isinstance(p, click.Option) and not p.hidden]


@pytest.mark.parametrize("name, command", list(commands()), ids=lambda value: value if isinstance(value, str) else "")
def test_every_command_speaks_the_same_vocabulary(name, command):
    for option in visible_options(command):
        longs = [flag for flag in option.opts if flag.startswith("--")]
        for short in (flag for flag in option.opts + option.secondary_opts if not flag.startswith("--")):
            assert SHORT_FLAGS.get(short) in longs, f"{name}: {short} is {longs}, elsewhere {SHORT_FLAGS.get(short)}"
        if "--split" in longs:
            assert "-s" in option.opts, f"{name}: --split without -s"
        parent = click.Context(cli, info_name="vlconvert", **cli.context_settings)
        ctx = click.Context(command, parent=parent, info_name=name, **command.context_settings)
        if option.get_default(ctx) not in (None, UNSET) and not option.is_flag and not option.multiple:
            record = option.get_help_record(ctx)
            assert "default:" in record[1], f"{name} {longs}: the default is not shown"
        assert "--data" not in longs and "--html" not in longs, f"{name}: an old spelling is visible"
    arguments = [p.human_readable_name for p in command.params if isinstance(p, click.Argument)]
    if name in READS_A_BUILD:
        assert arguments[:1] == ["BUILD"], f"{name}: the build it reads is {arguments}"
    if "--out" in [flag for option in visible_options(command) for flag in option.opts]:
        assert name in {"build", "dedup"}, f"{name}: --out is only ever a build folder written"


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    out = tmp_path_factory.mktemp("vocabulary") / "build"
    vlconvert.build("inat2021", str(EXAMPLE), str(out), shard_size=40)
    return out


@pytest.mark.slow
def test_old_spellings_keep_working_with_a_deprecation_line(build, tmp_path):
    inspected = run("inspect", str(build), "--html", str(tmp_path / "report"), "-n", "0")
    assert inspected.returncode == 0, inspected.stderr
    assert "warning: --html is deprecated and goes in the next release; give --report" in inspected.stderr
    assert (tmp_path / "report" / "index.html").is_file()
    exported = run("export-clip-benchmark", "--data", str(build), "--split", "val", "--out", str(tmp_path / "wds"))
    assert exported.returncode == 0, exported.stderr
    assert "--data is deprecated" in exported.stderr and "--out is deprecated" in exported.stderr
    assert (tmp_path / "wds" / "wds").is_dir() or any((tmp_path / "wds").iterdir())
    deduped = run("dedup", str(build), "--into", str(tmp_path / "clean"), "-t", "4")
    assert deduped.returncode == 0, deduped.stderr
    assert "--into is deprecated" in deduped.stderr and "-t is deprecated" in deduped.stderr
    assert (tmp_path / "clean" / "manifest.json").is_file()


@pytest.mark.slow
def test_new_spellings_work_without_warnings(build, tmp_path):
    checked = run("validate", str(build), "--no-decode")
    assert checked.returncode == 0 and "warning" not in checked.stderr
    exported = run("export-clip-benchmark", str(build), "-s", "val", "--dataset-root", str(tmp_path / "wds"))
    assert exported.returncode == 0 and "warning" not in exported.stderr, exported.stderr
    deduped = run("dedup", str(build), "-o", str(tmp_path / "clean"), "--threshold", "4")
    assert deduped.returncode == 0 and "warning" not in deduped.stderr, deduped.stderr
    both = run("export-clip-benchmark", str(build), "--data", str(tmp_path), "--dataset-root", str(tmp_path / "x"))
    assert both.returncode == 2 and "--data and BUILD (the first argument) both given" in both.stderr
    missing = run("export-clip-benchmark", "--dataset-root", str(tmp_path / "x"))
    assert missing.returncode == 2 and "missing BUILD" in missing.stderr


def test_no_lit_train_option_abbreviates_one_of_torchruns():
    """argparse reads `torchrun … -m vlconvert lit-train BUILD --run X` as an abbreviation of torchrun's --run-path
    and stops; any lit-train option that is a prefix of a torchrun option breaks `torchrun -m vlconvert` so."""
    run_module = require("torch.distributed.run")
    theirs = [flag for flag in run_module.get_args_parser()._option_string_actions if flag.startswith("--")]
    lit_train = dict(commands())["lit-train"]
    ours = [flag for option in lit_train.params if isinstance(option, click.Option) for flag in option.opts + option.secondary_opts]
    clashes = [(mine, flag) for mine in ours if mine.startswith("--") for flag in theirs if flag.startswith(mine)]
    assert not clashes
