"""``vlconvert captions lint``: what a template will do to a dataset, before a long build.

It reports the fields a template uses that the adapter does not provide, the
classes whose captions collide (different classes, identical text: training
cannot tell them apart, and iNat-2021 common names are not unique), and the
caption lengths under CLIP's 77-token context.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from jinja2 import meta as jinja_meta
from jinja2 import nodes

from vlconvert.captions.lengths import over_context, token_lengths
from vlconvert.captions.render import CaptionError, CaptionRenderer, Template
from vlconvert.records import ClassInfo, Record, take_records
from vlconvert.shuffle import shuffled_order

__all__ = ["LintReport", "lint", "sample_records"]


@dataclass
class LintReport:
    template: str
    classes: int
    records: int
    undefined: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    collisions: list[tuple[str, list[str]]] = field(default_factory=list)
    char_lengths: list[int] = field(default_factory=list)
    token_lengths: list[int] | None = None
    tokenizer_note: str = ""

    @property
    def ok(self) -> bool:
        return not self.undefined and not self.failures

    @property
    def truncated(self) -> int:
        return over_context(self.token_lengths)


def sample_records(records: Sequence[Record], n: int, seed: int, split: str) -> list[Record]:
    """``n`` records drawn with the build's shuffle, so the same seed shows the same ones."""
    if not isinstance(records, Sequence):
        records = list(records)
    return take_records(records, shuffled_order(len(records), seed, split)[:n])


def lint(template: Template, classes: Sequence[ClassInfo], sample: Sequence[Record]) -> LintReport:
    renderer = CaptionRenderer([template], classes)
    report = LintReport(template.name, len(classes), len(sample))
    report.undefined = _undefined_fields(template, renderer, sample)

    # A class the sample missed is rendered with another record's metadata, as it would be in a build.
    class_meta: dict[int, dict] = {}
    for record in sample:
        class_meta.setdefault(record.label, dict(record.metadata))
    fallback = dict(sample[0].metadata) if sample else {}
    by_text: dict[str, list[str]] = defaultdict(list)
    captions = []
    for cls in classes:
        try:
            caption = renderer.render_class(template.name, cls.label, class_meta.get(cls.label, fallback))
        except CaptionError as exc:
            report.failures.append(f"class {cls.label} {cls.name!r}: {exc}")
            continue
        captions.append(caption)
        # CLIP's tokenizer lower-cases and splits on whitespace: these texts are one to the model.
        by_text[" ".join(caption.casefold().split())].append(cls.name)
    report.collisions = sorted((text, names) for text, names in by_text.items() if len(names) > 1)

    for record in sample:
        try:
            captions.append(renderer.render(template, record))
        except CaptionError as exc:
            report.failures.append(f"record {record.key} ({record.source or 'no source'}): {exc}")
    report.char_lengths = [len(c) for c in captions]
    report.token_lengths, report.tokenizer_note = token_lengths(captions)
    return report


def _undefined_fields(template: Template, renderer: CaptionRenderer, sample: Sequence[Record]) -> list[str]:
    """Names the template reads without a guard that neither the classes nor the sampled records provide.

    Guards: ``x is defined``, ``x | default(…)``, ``'x' in meta`` and ``meta.get('x')``."""
    env = renderer.environment
    tree = env.parse(template.source)
    guarded = _guarded(tree)
    provided = set(env.globals) | {"meta"} | {k for ctx in renderer.contexts for k in ctx}
    missing = sorted(n for n in jinja_meta.find_undeclared_variables(tree) if n not in provided and n not in guarded)
    meta_keys = {k for record in sample for k in record.metadata}
    used = {_meta_field(n) for n in tree.find_all((nodes.Getattr, nodes.Getitem))} - {None, "get", "items", "keys", "values"}
    missing += sorted(f"meta.{name}" for name in used - meta_keys - guarded)
    return missing


def _guarded(tree) -> set[str]:
    names = set()
    for node in tree.find_all((nodes.Test, nodes.Filter)):
        if (isinstance(node, nodes.Test) and node.name in ("defined", "undefined")) or \
                (isinstance(node, nodes.Filter) and node.name in ("default", "d")):
            names.add(node.node.name if isinstance(node.node, nodes.Name) else _meta_field(node.node))
    for node in tree.find_all(nodes.Call):  # meta.get("x")
        if isinstance(node.node, nodes.Getattr) and node.node.attr == "get" and _is_meta(node.node.node) \
                and node.args and isinstance(node.args[0], nodes.Const):
            names.add(str(node.args[0].value))
    for node in tree.find_all(nodes.Compare):  # "x" in meta
        if isinstance(node.expr, nodes.Const) and any(op.op == "in" and _is_meta(op.expr) for op in node.ops):
            names.add(str(node.expr.value))
    return names - {None}


def _is_meta(node) -> bool:
    return isinstance(node, nodes.Name) and node.name == "meta"


def _meta_field(node) -> str | None:
    if isinstance(node, nodes.Getattr) and _is_meta(node.node):
        return node.attr
    if isinstance(node, nodes.Getitem) and _is_meta(node.node) and isinstance(node.arg, nodes.Const):
        return str(node.arg.value)
    return None
