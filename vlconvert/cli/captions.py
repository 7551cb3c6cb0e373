"""``vlconvert captions``: list, preview and lint caption templates on a real dataset."""

from __future__ import annotations

import click

from vlconvert.captions.lengths import CONTEXT_LENGTH, percentiles
from vlconvert.captions.lint import lint, sample_records
from vlconvert.captions.render import CaptionError, CaptionRenderer, builtin_template_names, load_template, template_summary
from vlconvert.errors import VLConvertError
from vlconvert.registry import create_adapter
from vlconvert.terminal import printable

_dataset_options = [
    click.option("--adapter", "-a", required=True, help="Dataset reader, e.g. inat2021."),
    click.option("--root", "-r", required=True, help="The dataset's folder (or fsspec URL)."),
    click.option("--split", "-s", default=None, help="Split to sample records from. Default: the adapter's first."),
    click.option("--template", "-t", "template", default="taxonomic_common", show_default=True, metavar="NAME|FILE.j2",
                 help="A built-in template or a .j2 file."),
    click.option("--seed", type=int, default=0, show_default=True, help="Which records are sampled."),
]


def dataset_options(command):
    for option in reversed(_dataset_options):
        command = option(command)
    return command


def _open(adapter_name: str, root: str, split: str | None):
    adapter = create_adapter(adapter_name, root)
    splits = list(adapter.splits())
    split = split or splits[0]
    if split not in splits:
        raise VLConvertError(f"split {split!r} not found; {adapter_name} has: {', '.join(splits)}")
    return adapter, split


@click.group("captions")
def captions_group() -> None:
    """Caption templates: list the built-ins, preview them on a dataset, lint them."""


@captions_group.command("list")
def list_command() -> None:
    """List the built-in caption templates with an example of each."""
    for name in builtin_template_names():
        click.echo(f"{name:18} {template_summary(load_template(name))}")


@captions_group.command("preview")
@dataset_options
@click.option("--samples", "-n", "count", type=click.IntRange(min=1), default=10, show_default=True, help="How many records to show.")
def preview_command(adapter, root, split, template, seed, count) -> None:
    """Print the captions of sampled records, each beside its class.

    \b
    Example:
      vlconvert captions preview -a inat2021 -r examples/inat2021_mini -t scientific_common -n 5
    """
    source, split = _open(adapter, root, split)
    chosen = load_template(template)
    classes = source.classes()
    renderer = CaptionRenderer([chosen], classes)
    failed = 0
    for record in sample_records(source.records(split), count, seed, split):
        cls = classes[record.label]
        common = f" ({cls.common_name})" if cls.common_name and cls.common_name != cls.name else ""
        try:
            caption = renderer.render(chosen, record)
        except CaptionError as exc:
            caption, failed = f"ERROR: {exc}", failed + 1
        click.echo(printable(f"[{record.label}] {cls.name}{common}  ·  {split}/{record.key}") + "\n    " + printable(caption))
    if failed:
        click.echo(f"{failed} of the sampled captions failed to render", err=True)
        raise SystemExit(1)


@captions_group.command("lint")
@dataset_options
@click.option("--samples", "-n", "count", type=click.IntRange(min=1), default=2000, show_default=True,
              help="How many records to render besides one caption per class.")
def lint_command(adapter, root, split, template, seed, count) -> None:
    """Check a template against a dataset: undefined fields, colliding classes, caption lengths.

    Exits 1 when the template uses fields the dataset does not provide or fails to render.
    """
    source, split = _open(adapter, root, split)
    report = lint(load_template(template), source.classes(), sample_records(source.records(split), count, seed, split))
    click.echo(printable(f"template {report.template}: {report.classes} classes, {report.records} sampled {split} records"))
    for name in report.undefined:
        click.echo(printable(f"  undefined field: {name}"))
    for failure in report.failures[:10]:
        click.echo(printable(f"  fails: {failure}"))
    if len(report.failures) > 10:
        click.echo(f"  … and {len(report.failures) - 10} more failures")
    click.echo(f"  colliding captions: {len(report.collisions)} (classes that share one caption text)")
    for text, names in report.collisions[:10]:
        click.echo(printable(f"    {text!r}: {', '.join(names)}"))
    chars = percentiles(report.char_lengths)
    click.echo("  characters: " + " ".join(f"{k}={v}" for k, v in chars.items()))
    if report.token_lengths is None:
        click.echo(f"  tokens: not counted; {report.tokenizer_note}")
    else:
        tokens = " ".join(f"{k}={v}" for k, v in percentiles(report.token_lengths).items())
        click.echo(f"  tokens ({report.tokenizer_note}): {tokens}; truncated at the {CONTEXT_LENGTH}-token context: "
                   f"{report.truncated} of {len(report.token_lengths)}")
    if not report.ok:
        click.echo(f"lint failed: {len(report.undefined)} undefined fields, {len(report.failures)} captions that fail to render",
                   err=True)
        raise SystemExit(1)
    click.echo("lint passed")
