"""Every build option, declared once.

An :class:`Option` says everything about one option: its name (``build()``'s keyword),
its kind (how a value is checked, and read from the command line's text), its
default and help, its command-line flags, and whether the manifest records it.
The click options of ``vlconvert build`` (:mod:`vlconvert.cli.build`), the keys a
config file may hold (:mod:`vlconvert.config`), the keyword arguments ``build()``
accepts and the manifest's ``config`` entry are all derived from :data:`OPTIONS`,
so a new option is one entry here (docs/architecture.md, "Where to add things").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vlconvert.errors import VLConvertError
from vlconvert.option_kinds import (
    Choice,
    Flag,
    Fraction,
    Holdout,
    Integer,
    KeyValues,
    Kind,
    Size,
    TemplateMix,
    Text,
    Texts,
    parse_size,
)

__all__ = ["OPTIONS", "BuildOptions", "Option", "option", "parse_size", "resolve"]

RESIZE_MODES = ("shorter", "longer", "center_crop", "none")
OUTPUT_FORMATS = ("auto", "jpg", "webp")
IMAGE_CODECS = ("auto", "pillow", "opencv")
EXECUTORS = ("local", "ray")
DEFAULT_PROMPT_SET = "simple"
DEFAULT_SHARD_SIZE = 1000
DEFAULT_SHARD_MAX_BYTES = 1 << 30
DEFAULT_MAX_IMAGE_BYTES = 256 << 20  # a 100-megapixel JPEG is ~50 MB; an uncompressed 48-megapixel TIFF ~150 MB
# Pillow's own decompression-bomb limit (2 × 89,478,485): larger images are refused, not just warned about.
DEFAULT_MAX_IMAGE_PIXELS = 178_956_970


@dataclass(frozen=True)
class Option:
    name: str  # build()'s keyword, and the config file's key
    kind: Kind
    help: str
    default: Any = None  # None: not set (build() decides, e.g. every split)
    flags: tuple[str, ...] = ()  # the command line's spellings; default: --name-with-dashes
    metavar: str | None = None
    recorded: bool = False  # the manifest's "config" records it: it decides what the build writes
    decides_bytes: bool = True  # of a recorded option: a resumed build must have the same value
    in_config: bool = True  # a config file may set it
    required: bool = False  # the command line or the config file must give it

    @property
    def cli_flags(self) -> tuple[str, ...]:
        return self.flags or ("--" + self.name.replace("_", "-"),)

    def check(self, value: Any) -> Any:
        """The value checked and normalised; None stays None (the default)."""
        return None if value is None else self.kind.check(value)


def _recorded(name, kind, help, **more) -> Option:
    return Option(name, kind, help, recorded=True, **more)


OPTIONS: tuple[Option, ...] = (
    _recorded("adapter", Text(), "Dataset reader, e.g. inat2021 (see `vlconvert adapters`). Required, here or in --config.",
              flags=("--adapter", "-a"), required=True),
    # May be empty: an adapter object passed to build() has read its dataset already, and its root is only recorded.
    _recorded("root", Text(empty=True), "The dataset's folder (or fsspec URL), in its official release layout. Required, here or "
              "in --config.", flags=("--root", "-r"), required=True),
    Option("out", Text(), "Output folder (or fsspec URL) for shards and side files. Required, here or in --config.",
           flags=("--out", "-o"), required=True),
    _recorded("splits", Texts(), "Split to convert; repeat for several. Default: every split found.", flags=("--split", "-s")),
    _recorded("templates", Texts(), "Caption template: a built-in name or a .j2 file. The first fills KEY.txt, each further one "
              "KEY.<name>.txt. Default: taxonomic_common. See `vlconvert captions list`.",
              flags=("--template", "-t"), metavar="NAME|FILE.j2", default=()),
    _recorded("template_mix", TemplateMix(), "Fill KEY.txt from one of several templates per sample, drawn by weight from the seed, "
              "e.g. scientific=0.3,common=0.3,taxonomic=0.4. --template then only adds KEY.<name>.txt members.", metavar="NAME=W,..."),
    _recorded("all_templates", Flag(), "Also write every built-in template as KEY.<name>.txt.", default=False),
    _recorded("zeroshot_prompts", Text(), "What classnames.txt and zeroshot_classification_templates.txt hold: simple, openai_imagenet "
              "(CLIP's 80), same_as_training (each class's training caption), or a file of {c} templates.",
              default=DEFAULT_PROMPT_SET, metavar="SET|FILE"),
    _recorded("holdout_classes", Holdout(), "Keep these classes out of the training splits (a seeded fraction, or a file of class "
              "names) but in the evaluation splits, for zero-shot transfer to unseen species.", metavar="FRACTION|FILE"),
    _recorded("min_per_class", Integer(1), "Drop classes with fewer than N records from the training splits (they stay in "
              "classnames.txt and the evaluation splits); counted after --holdout-classes.", metavar="N"),
    _recorded("max_per_class", Integer(1), "Keep at most N records of each class in the training splits, chosen by --seed from "
              "the records' keys; the rest are left out.", metavar="N"),
    _recorded("dedup", Flag(), "Leave out of the training splits every image that duplicates an evaluation image or an earlier "
              "training image (the same source bytes, or a pHash within --dedup-threshold); each is listed in duplicates.jsonl "
              "with its twin. See docs/dedup.md.", default=False),
    _recorded("dedup_against", Texts(), "Also leave out training images found in this vlconvert build (an external evaluation set "
              "converted with vlconvert); repeat for several. Implies --dedup.", metavar="BUILD", default=()),
    _recorded("dedup_threshold", Integer(0, 32), "Most pHash bits (of 64) two images may differ in to count as near duplicates; "
              "0: identical hashes only.", default=8, metavar="BITS"),
    _recorded("resize", Integer(1), "Resize so the side chosen by --resize-mode is N pixels (never enlarged without --upscale). "
              "Default: original bytes pass through.", metavar="N"),
    _recorded("resize_mode", Choice(RESIZE_MODES), "shorter: shorter side N; longer: longer side N; center_crop: shorter side N, "
              "then the centre NxN; none: keep the size.", default="shorter"),
    _recorded("image_format", Choice(OUTPUT_FORMATS), "auto: original bytes when nothing changes, else JPEG; jpg or webp: always "
              "that format.", default="auto", flags=("--format",)),
    _recorded("quality", Integer(1, 100), "JPEG/WebP quality when re-encoding.", default=95),
    _recorded("image_codec", Choice(IMAGE_CODECS), "How a JPEG is shrunk: opencv (M/8 decode, bicubic; builds 2x as fast, needs "
              "pip install 'vlconvert[fast]'), pillow (Lanczos), or auto: opencv when installed. The manifest names the path.",
              default="auto"),
    _recorded("upscale", Flag(), "Enlarge images smaller than --resize (default: keep them as they are).", default=False),
    _recorded("max_image_bytes", Size(), "Reject an image file larger than this, without reading it.", default=DEFAULT_MAX_IMAGE_BYTES),
    _recorded("max_image_pixels", Integer(1, DEFAULT_MAX_IMAGE_PIXELS), "Reject an image with more pixels than this, from its "
              "header, before decoding it (a JPEG also by its pixels times its scans; see docs/security.md).",
              default=DEFAULT_MAX_IMAGE_PIXELS),
    _recorded("shard_size", Integer(1), "Most samples per shard.", default=DEFAULT_SHARD_SIZE),
    _recorded("shard_max_bytes", Size(), "Most bytes per shard, e.g. 500MB.", default=DEFAULT_SHARD_MAX_BYTES),
    Option("workers", Integer(1), "Processes writing shards in parallel. Default: 1 locally, every CPU of the cluster with "
           "--executor ray.", flags=("--workers", "-w")),
    Option("executor", Choice(EXECUTORS), "Where shard tasks run: local processes, or a Ray cluster (pip install 'vlconvert[ray]').",
           default="local"),
    Option("ray_address", Text(), "The Ray cluster to join, e.g. 10.0.0.1:6379 or auto. Default: RAY_ADDRESS, else a new local "
           "instance.", metavar="ADDRESS"),
    _recorded("seed", Integer(), "Seed of the global shuffle; same inputs and seed give identical shards.", default=0),
    Option("overwrite", Flag(), "Replace an earlier vlconvert build in OUT. (An unfinished build of the same command is resumed "
           "instead.)", default=False),
    Option("resume", Flag(inverted=True), "With --overwrite, start an unfinished build of the same command over.", default=True,
           flags=("--no-resume",), in_config=False),
    _recorded("strict", Flag(), "Exit 3 if any record is rejected (the build still completes, or fails before any image is read "
              "when the metadata already rejects records).", default=False, decides_bytes=False),
    _recorded("max_error_rate", Fraction(), "Exit 3 if more than this fraction of the records read is rejected, e.g. 0.001.",
              metavar="FRACTION", decides_bytes=False),
    Option("dry_run", Flag(), "Read the metadata and plan the shards; print what would be built, touch no image or file.",
           default=False, in_config=False),
    _recorded("adapter_options", KeyValues(), "An option passed to the adapter; repeat for several.", flags=("--option",),
              metavar="KEY=VALUE", default=()),
)


def option(name: str) -> Option:
    return next(o for o in OPTIONS if o.name == name)


class BuildOptions:
    """Checked values of every option, read as attributes (``options.shard_size``); unset ones hold their default."""

    def __init__(self, values: Mapping[str, Any]):
        self._values = dict(values)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["_values"][name]
        except KeyError:
            raise AttributeError(name) from None

    def replace(self, **changes: Any) -> BuildOptions:
        return BuildOptions({**self._values, **changes})

    def recorded(self) -> dict[str, Any]:
        """The manifest's ``config`` entry: every recorded option, as ``vlconvert build --config`` reads it back."""
        return {o.name: o.kind.record(self._values[o.name]) for o in OPTIONS if o.recorded}

    def decisive(self) -> dict[str, Any]:
        """The recorded options a resumed build must share with the run it finishes."""
        return {o.name: o.kind.key(self._values[o.name]) for o in OPTIONS if o.recorded and o.decides_bytes}


def resolve(given: Mapping[str, Any]) -> BuildOptions:
    """``build()``'s keyword arguments, checked: a wrong value is a :class:`VLConvertError` naming the option."""
    known = {o.name: o for o in OPTIONS}
    unknown = sorted(set(given) - set(known))
    if unknown:  # as Python itself says it for a function's keywords
        raise TypeError(f"build() got an unexpected keyword argument {unknown[0]!r}")
    values = {}
    for name, o in known.items():
        if o.required and given.get(name) is None:
            raise VLConvertError(f"{name}: required")
        try:
            value = o.check(given.get(name))
        except (TypeError, ValueError) as exc:
            raise VLConvertError(f"{name}: {exc}") from None
        values[name] = o.kind.normalise(o.default if value is None else value)
    return BuildOptions(values)
