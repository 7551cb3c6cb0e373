"""Renders a class and a record into caption text with sandboxed Jinja templates.

The context of a template is the class's fields (``name``, ``common_name``,
``label``, every taxonomy rank by name, every extra field the adapter gives,
``taxonomy`` as an ordered rank → value mapping, ``has_common_name``) plus the
record's metadata as ``meta``.  An unknown field is an error, never an empty
string, so a typo cannot silently produce captions without the species name.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from .records import ClassInfo, Record, VLConvertError

DEFAULT_TEMPLATE = "taxonomic_common"
ZEROSHOT_TEMPLATES_FILE = "zeroshot_classification_templates.txt"
_NAME_RE = re.compile(r"^[A-Za-z0-9_\-]+$")


@dataclass(frozen=True)
class Template:
    name: str  # becomes the tar member KEY.<name>.txt
    source: str  # the template text
    origin: str  # "built-in" or the file it came from


def builtin_template_names() -> list[str]:
    folder = resources.files("vlconvert.templates")
    return sorted(p.name[: -len(".j2")] for p in folder.iterdir() if p.name.endswith(".j2"))


def builtin_resource(filename: str) -> str:
    return resources.files("vlconvert.templates").joinpath(filename).read_text(encoding="utf-8")


def load_template(spec: str) -> Template:
    """A built-in template by name, or a ``.j2`` file by path."""
    if spec in builtin_template_names():
        return Template(spec, builtin_resource(f"{spec}.j2"), "built-in")
    path = Path(spec)
    if spec.endswith(".j2") or path.exists():
        if not path.is_file():
            raise VLConvertError(f"template file {spec} does not exist")
        name = path.name[: -len(".j2")] if path.name.endswith(".j2") else path.stem
        if not _NAME_RE.match(name):
            raise VLConvertError(
                f"template file {spec}: its name {name!r} becomes the tar member KEY.{name}.txt, "
                "so it may hold only letters, digits, '_' and '-'"
            )
        return Template(name, path.read_text(encoding="utf-8"), str(path))
    raise VLConvertError(
        f"unknown template {spec!r}: give a built-in name ({', '.join(builtin_template_names())}) "
        "or a path to a .j2 file"
    )


def load_templates(specs: Sequence[str]) -> list[Template]:
    templates = [load_template(s) for s in (specs or [DEFAULT_TEMPLATE])]
    seen: set[str] = set()
    for t in templates:
        if t.name in seen:
            raise VLConvertError(f"template {t.name!r} is given twice; each becomes its own tar member")
        seen.add(t.name)
    return templates


def join_ranks(taxonomy: Mapping[str, str]) -> str:
    return " ".join(v for v in taxonomy.values() if v)


def class_context(cls: ClassInfo) -> dict[str, Any]:
    common = (cls.common_name or "").strip()
    return {
        **cls.ranks,
        **cls.extra,
        "label": cls.label,
        "name": cls.name,
        "common_name": common,
        "has_common_name": bool(common) and common.casefold() != cls.name.casefold(),
        "taxonomy": cls.ranks,
    }


class CaptionRenderer:
    """Compiles the templates once; renders each record into one caption per template."""

    def __init__(self, templates: Sequence[Template], classes: Sequence[ClassInfo]):
        env = SandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False, finalize=_refuse_null)
        env.filters["join_ranks"] = join_ranks
        self.templates = list(templates)
        self._compiled = []
        for t in self.templates:
            try:
                self._compiled.append(env.from_string(t.source))
            except jinja2.TemplateSyntaxError as exc:
                raise VLConvertError(f"template {t.name} ({t.origin}), line {exc.lineno}: {exc.message}") from exc
        self._contexts = [class_context(c) for c in classes]
        self._classes = classes

    def render(self, record: Record) -> list[str]:
        """One caption per template, whitespace collapsed; raises ``CaptionError``."""
        context = {**self._contexts[record.label], "meta": record.metadata}
        return [self._render_one(i, context) for i in range(len(self._compiled))]

    def check_classes(self, metadata: Mapping[str, Any] | None = None) -> None:
        """Render every class once, so a template naming a missing field fails before the build."""
        for context in self._contexts:
            for i in range(len(self._compiled)):
                try:
                    self._render_one(i, {**context, "meta": metadata or {}})
                except CaptionError as exc:
                    raise VLConvertError(f"{exc} (class {context['label']} {context['name']!r})") from exc

    def _render_one(self, index: int, context: dict[str, Any]) -> str:
        try:
            text = " ".join(self._compiled[index].render(context).split())
        except Exception as exc:  # noqa: BLE001 - a template can raise anything (1/0, a bad format spec)
            t = self.templates[index]
            raise CaptionError(f"template {t.name} ({t.origin}): {str(exc) or type(exc).__name__}") from exc
        if not text:
            raise CaptionError(f"template {self.templates[index].name} rendered an empty caption")
        return text


def _refuse_null(value: Any) -> Any:
    # StrictUndefined catches missing fields, but a present-and-null one (an iNat
    # image without latitude) would print "None" into the caption.
    if value is None:
        raise ValueError("a field printed by the template is null here; guard it with {% if … is not none %}")
    return value


class CaptionError(ValueError):
    """A record whose caption could not be rendered; it goes to the error report."""
