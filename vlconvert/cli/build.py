"""``vlconvert build``: its options are made from :data:`vlconvert.options.OPTIONS`, then it prints what happened."""

from __future__ import annotations

import json
import re
import warnings
from collections import Counter

import click
from click.core import ParameterSource

import vlconvert.options as build_options
from vlconvert.cli.progress import ProgressLine
from vlconvert.config import load_config
from vlconvert.errors import BuildFailed, TooManyRejected
from vlconvert.format import ERRORS
from vlconvert.option_kinds import Choice, Flag, Fraction, Integer, KeyValues, Texts
from vlconvert.options import Option
from vlconvert.pipeline.build import BuildSummary, PlanSummary, build
from vlconvert.pipeline.dataset_card import image_members_note
from vlconvert.storage import filesystem
from vlconvert.terminal import printable

MAX_IGNORED_LISTED = 50
EPILOG = ("Exit codes: 0 built (see OUT/errors.jsonl for rejected records), 1 failed while running, 2 bad input, layout or "
          "options, 3 more records rejected than --strict / --max-error-rate allow, or every record rejected, 130 "
          "interrupted (rerun the same command to resume).")
TOP_REASONS = 3
# What varies between rejections of one kind (paths, quoted names, numbers), so those group as one reason.
_QUOTED = re.compile(r"(?<!\w)'[^']*'(?!\w)|\"[^\"]*\"")
_PATHLIKE = re.compile(r"[^\s()]*/[^\s()]*")
_NUMBER = re.compile(r"\b\d+(?:[,.x]\d+)*\b")


class ParsedBy(click.ParamType):
    """A command-line value read by the option's own kind, so it is refused for the same reason a config file's is."""

    def __init__(self, kind):
        self.kind = kind
        self.name = kind.metavar or "TEXT"

    def convert(self, value, param, ctx):
        if not isinstance(value, str):
            return value
        try:
            return self.kind.parse(value)
        except (TypeError, ValueError) as exc:
            self.fail(str(exc), param, ctx)


def click_option(o: Option):
    kind = o.kind
    settings: dict = {"help": o.help, "metavar": o.metavar}
    if isinstance(kind, Flag):
        # A flag turns an option away from its default: on for False, off (--no-…, inverted) for True.
        if o.default is not kind.inverted:
            raise ValueError(f"option {o.name}: a flag defaulting to {o.default} needs inverted={not kind.inverted}")
        settings = {"help": o.help, "is_flag": True}
    elif isinstance(kind, Integer):
        settings["type"] = click.IntRange(kind.low, kind.high) if kind.low is not None or kind.high is not None else int
    elif isinstance(kind, Choice):
        settings["type"] = click.Choice(kind.choices)
    elif isinstance(kind, Fraction):
        settings["type"] = click.FloatRange(0, 1)
    else:
        settings["type"] = ParsedBy(kind)
    if isinstance(kind, (Texts, KeyValues)):
        settings["multiple"] = True
    if o.default is not None and not isinstance(kind, (Flag, Texts, KeyValues)):
        settings["default"] = kind.show(o.default)
        settings["show_default"] = True
    return click.option(*o.cli_flags, o.name, **settings)


def make_build_command() -> click.Command:
    """The command, made from the options declared now (a test adds one and finds it in --help)."""
    def command(ctx, config_file, **given):
        run_build(ctx, config_file, given)

    command.__doc__ = run_build.__doc__
    for o in reversed(build_options.OPTIONS):
        command = click_option(o)(command)
    command = click.option("--config", "config_file", metavar="FILE",
                           help="Read the build options from a TOML or JSON file (keys as in docs/configuration.md), or "
                                "from a build's manifest.json to repeat that build; options given on the command line "
                                "override the file's.")(command)
    return click.command("build", epilog=EPILOG)(click.pass_context(command))


def run_build(ctx: click.Context, config_file: str | None, given: dict) -> None:
    """Convert a dataset into webdataset tar shards with captions.

    \b
    Writes OUT/<split>/<split>-NNNNNN.tar, each split's sizes.json, and
    OUT/manifest.json, classnames.txt, zeroshot_classification_templates.txt
    and errors.jsonl.

    \b
    Example:
      vlconvert build --adapter inat2021 --root data/inat2021 --out shards/ \\
          --split train --split val --resize 256 --workers 8
    """
    options = _from_command_line(given)
    if config_file:
        _apply_config(ctx, config_file, options)
    for o in build_options.OPTIONS:
        if o.required and not options.get(o.name):
            raise click.UsageError(f"Missing option '{o.cli_flags[0]}' (give it here or as {o.name} in a --config file).", ctx)
    adapter, root, out = options.pop("adapter"), options.pop("root"), options.pop("out")
    click.echo(f"reading {adapter} dataset at {root}", err=True)
    with ProgressLine("writing shards", stage="build") as progress, warnings.catch_warnings():
        warnings.showwarning = _show_warning
        try:
            summary = build(adapter, root, out, progress=progress, **options)
        except TooManyRejected as exc:
            if exc.summary is not None:
                print_summary(exc.summary)
                _fail_if_nothing_written(exc.summary)
            raise
        except OSError as exc:  # a full disk, a lost mount: the user's to fix, and nothing finished is lost
            where = f": {exc.filename}" if exc.filename else ""
            raise BuildFailed(f"{exc.strerror or exc}{where}; shards finished so far are kept: "
                              "fix this and rerun the same command to resume") from exc
    if isinstance(summary, PlanSummary):
        print_plan(summary)
        return
    print_summary(summary)
    _fail_if_nothing_written(summary)
    if summary.duplicate_classnames:
        click.echo(f"warning: classnames.txt repeats {summary.duplicate_classnames} names (compared as CLIP's tokenizer sees them); "
                   "zero-shot evaluation cannot tell those classes apart", err=True)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """An adapter's advice (``warnings.warn``) as one line, like the build's own warnings, not Python's two with a path."""
    click.echo(f"warning: {printable(message)}", err=True)


def _fail_if_nothing_written(summary: BuildSummary) -> None:
    """A build that rejected every record is no success, whatever --max-error-rate allows: its shards are empty."""
    if summary.written or not summary.errored:
        return
    errors = f"{summary.out.rstrip('/')}/{ERRORS}"
    top = top_reasons(errors)
    reasons = "; ".join(f"{reason} ({n:,})" for reason, n in top) if top else "unknown"
    read = sum(s.read for s in summary.splits.values())
    raise TooManyRejected(f"nothing was written: {summary.errored:,} of {read:,} records were rejected; top reasons: {reasons}; "
                          f"each rejection is listed in {errors}", summary)


def top_reasons(errors_url: str, count: int = TOP_REASONS) -> list[tuple[str, int]]:
    """The commonest reasons in an errors.jsonl, a path or number in them shown as …, so one cause counts once."""
    reasons: Counter[str] = Counter()
    try:
        fs, path = filesystem(errors_url, "--out")
        with fs.open(path, "rt", encoding="utf-8") as lines:
            for line in lines:
                reasons[reason_kind(json.loads(line).get("reason", ""))] += 1
    except (OSError, ValueError):  # the error line still says where to look
        return []
    return reasons.most_common(count)


def reason_kind(reason: str) -> str:
    return _NUMBER.sub("N", _PATHLIKE.sub("…", _QUOTED.sub("'…'", reason)))


def _from_command_line(given: dict) -> dict:
    """click's values as build()'s: a repeated flag given no times is unset, a flag like --no-resume sets False."""
    options = {}
    for o in build_options.OPTIONS:
        value = given[o.name]
        if isinstance(o.kind, Flag) and o.kind.inverted:
            value = not value
        elif isinstance(o.kind, KeyValues):
            value = dict(value)
        elif isinstance(o.kind, Texts):
            value = list(value) or None
        options[o.name] = value
    return options


def _apply_config(ctx: click.Context, path: str, options: dict) -> None:
    """Fill ``options`` from the file, except where the command line gave an option explicitly."""
    explicit = {name: value for name, value in options.items()
                if ctx.get_parameter_source(name) not in (None, ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP)}
    options.update(load_config(path, **explicit))


def print_plan(plan: PlanSummary) -> None:
    click.echo(f"dry run: nothing read or written; {plan.classes} classes; planned in {plan.seconds:.1f} s")
    click.echo(f"{'split':12} {'records':>10} {'rejected':>9} {'held out':>9} {'capped':>8} {'shards':>8} {'ignored':>8}")
    for name, s in plan.splits.items():
        click.echo(f"{name:12} {s.records:>10,} {s.rejected:>9,} {s.held_out:>9,} {s.capped:>8,} {s.tasks:>8,} {len(s.ignored):>8,}")
    for line in balance_lines(plan.balance):
        click.echo(line)
    ignored = [path for s in plan.splits.values() for path in s.ignored]
    if ignored:
        click.echo(f"ignored: {len(ignored):,} hidden files and folders (names starting with '.'), left out by convention:")
        for path in ignored[:MAX_IGNORED_LISTED]:
            click.echo(f"  {printable(path)}")
        if len(ignored) > MAX_IGNORED_LISTED:
            click.echo(f"  … and {len(ignored) - MAX_IGNORED_LISTED:,} more")
    click.echo(f"shards hold at most {plan.shard_size} samples; more are cut where --shard-max-bytes is reached")


def print_summary(summary: BuildSummary) -> None:
    per_split = ", ".join(f"{name}: {s.written} in {len(s.shards)} shard{'s' * (len(s.shards) != 1)}" for name, s in summary.splits.items())
    if summary.resumed_tasks:
        click.echo(f"resumed an interrupted build: {summary.resumed_tasks} shard tasks were already done")
    click.echo(f"wrote {summary.written} samples in {summary.shards} shard{'s' * (summary.shards != 1)} to {summary.out} ({per_split})")
    for line in balance_lines(summary.balance):
        click.echo(line)
    deduplicated = {name: s.deduplicated for name, s in summary.splits.items() if s.deduplicated}
    if deduplicated:
        each = ", ".join(f"{name}: {n:,}" for name, n in deduplicated.items())
        click.echo(f"deduplicated: left out {sum(deduplicated.values()):,} training duplicates ({each}); "
                   f"{summary.out.rstrip('/')}/duplicates.jsonl lists each with its twin")
    for name, s in summary.splits.items():
        note = image_members_note(s.image_members)
        if note:
            click.echo(f"warning: split {name}: {note}", err=True)
    ignored = sum(s.ignored for s in summary.splits.values())
    if ignored:
        click.echo(f"ignored {ignored} hidden files and folders (names starting with '.'); --dry-run lists them")
    held_out = {name: s.held_out for name, s in summary.splits.items() if s.held_out}
    if held_out:
        each = ", ".join(f"{name}: {n:,}" for name, n in held_out.items())
        click.echo(f"held out {sum(held_out.values()):,} records of the --holdout-classes classes from training ({each}); "
                   f"{summary.out.rstrip('/')}/manifest.json lists the classes")
    if summary.errored:
        stages = ", ".join(f"{stage}: {n}" for stage, n in summary.errors_by_stage.items())
        click.echo(f"rejected {summary.errored} records ({stages}); reasons in {summary.out.rstrip('/')}/errors.jsonl")
        read = sum(s.read for s in summary.splits.values())
        if summary.written:  # else the build fails with an error line that says more
            click.echo(f"warning: {summary.errored} of {read} records ({summary.errored / read:.2%}) were rejected and are not in the "
                       f"shards; see {summary.out.rstrip('/')}/errors.jsonl (--strict or --max-error-rate make this an error)", err=True)
    else:
        click.echo("errors: 0")
    click.echo(f"{summary.images_per_second:.1f} images/s ({summary.seconds:.1f} s)")


def balance_lines(balance: dict | None) -> list[str]:
    """What --min-per-class and --max-per-class left out, one line per training split."""
    lines = []
    for split, b in (balance or {}).get("splits", {}).items():
        parts = []
        if balance["max_per_class"] is not None:
            parts.append(f"capped {b['capped_records']:,} records of {b['capped_classes']:,} classes at {balance['max_per_class']:,}")
        if balance["min_per_class"] is not None:
            parts.append(f"dropped {len(b['dropped_classes']):,} classes under {balance['min_per_class']:,} images "
                         f"({b['dropped_records']:,} records)")
        lines.append(f"balanced {split}: " + "; ".join(parts))
    return lines
