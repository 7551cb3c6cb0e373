"""docs/cli.md is generated from the click definitions and must not drift from them."""

import importlib.util
import subprocess
import sys

import click
from inat_layout import REPO

SCRIPT = REPO / "docs" / "make_cli_reference.py"


def _generator():
    spec = importlib.util.spec_from_file_location("make_cli_reference", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_docs_cli_md_is_what_the_generator_writes():
    expected = _generator().render()
    current = (REPO / "docs" / "cli.md").read_text(encoding="utf-8")
    assert current == expected, (
        "docs/cli.md is stale: the vlconvert commands or their options changed. "
        "Run `python docs/make_cli_reference.py` and commit docs/cli.md."
    )


def test_every_command_has_a_section():
    from vlconvert.cli.root import cli

    generator = _generator()
    paths = [path for path, _ in generator.walk(cli)]
    assert "vlconvert build" in paths and "vlconvert captions preview" in paths
    text = generator.render(cli)
    for path in paths:
        assert f"\n## {path}\n" in text, path


def test_a_new_command_or_group_appears_without_touching_the_script():
    @click.group(context_settings={"help_option_names": ["-h", "--help"]})
    def root():
        """Root."""

    @root.group("things")
    def things():
        """Things."""

    @things.command("frob", context_settings={"show_default": True})
    @click.option("--level", type=int, default=3, help="How hard.")
    def frob(level):
        """Frob a thing."""

    @root.command("secret", hidden=True)
    def secret():
        """Hidden."""

    text = _generator().render(root)
    assert "## vlconvert things frob" in text
    assert "[default: 3]" in text  # a command's own context settings apply
    assert "  - [`vlconvert things frob`](#vlconvert-things-frob): Frob a thing." in text
    assert "secret" not in text


def test_the_output_does_not_depend_on_the_terminal(monkeypatch):
    generator = _generator()
    monkeypatch.setenv("COLUMNS", "40")
    narrow = generator.render()
    monkeypatch.setenv("COLUMNS", "300")
    assert generator.render() == narrow


def test_check_mode_exits_1_when_stale(tmp_path):
    stale = tmp_path / "cli.md"
    stale.write_text("# an old reference\n", encoding="utf-8")
    result = subprocess.run([sys.executable, str(SCRIPT), "--check", "--output", str(stale)],
                            capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 1
    assert "python docs/make_cli_reference.py" in result.stderr
    result = subprocess.run([sys.executable, str(SCRIPT), "--output", str(stale)], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0
    result = subprocess.run([sys.executable, str(SCRIPT), "--check", "--output", str(stale)],
                            capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
