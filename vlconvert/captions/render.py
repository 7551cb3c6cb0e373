"""Renders a class and a record into caption text with sandboxed Jinja templates.

The context of a template is the class's fields (``name``, ``common_name``,
``label``, every taxonomy rank by name, every extra field the adapter gives,
``taxonomy`` as an ordered rank → value mapping, ``has_common_name``,
``common_or_scientific``) plus the record's metadata as ``meta``.  An unknown
field is an error, never an empty string, so a typo cannot silently produce
captions without the species name.  The filters are in ``caption_filters``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
import jinja2.meta
from jinja2.sandbox import SecurityError

from vlconvert.captions.filters import FILTERS
from vlconvert.captions.sandbox import CaptionSandbox, TemplateLimit
from vlconvert.errors import VLConvertError
from vlconvert.option_kinds import TemplateMix
from vlconvert.records import ClassInfo, Record, is_valid_key, key_rule

DEFAULT_TEMPLATE = "taxonomic_common"
MAX_TEMPLATE_BYTES = 1 << 20  # built-in templates are under 1 KB; a megabyte is no caption template


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


def template_summary(template: Template) -> str:
    """The template's leading ``{# … #}`` comment on one line, without its name."""
    header = re.match(r"\s*\{#-?(.*?)-?#\}", template.source, re.DOTALL)
    text = " ".join(header.group(1).split()) if header else ""
    return text.removeprefix(f"{template.name}:").strip()


def load_template(spec: str) -> Template:
    """A built-in template by name, or a ``.j2`` file by path."""
    if spec in builtin_template_names():
        return Template(spec, builtin_resource(f"{spec}.j2"), "built-in")
    path = Path(spec)
    if spec.endswith(".j2"):
        if not path.is_file():
            builtin = path.name[: -len(".j2")]
            hint = f"; the built-in template is named plain {builtin!r}" if builtin in builtin_template_names() else ""
            raise VLConvertError(f"template file {spec} does not exist{hint}")
        name = path.name[: -len(".j2")]
        if not is_valid_key(name):  # fullmatch: "x\n" is no member name
            raise VLConvertError(
                f"template file {spec}: its name {name!r} becomes the tar member KEY.{name}.txt, "
                f"so it follows the key rule {key_rule(name)}"
            )
        return Template(name, read_utf8(path, "template file"), str(path))
    raise VLConvertError(
        f"unknown template {spec!r}: give a built-in name ({', '.join(builtin_template_names())}) "
        "or a path to a .j2 file"
    )


def read_utf8(path: Path, what: str) -> str:
    try:
        if path.stat().st_size > MAX_TEMPLATE_BYTES:
            raise VLConvertError(f"{what} {path}: larger than {MAX_TEMPLATE_BYTES >> 20} MB; this is not a template")
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise VLConvertError(f"{what} {path}: not UTF-8 text (byte {exc.start})") from None


def load_templates(specs: Sequence[str]) -> list[Template]:
    templates = [load_template(s) for s in (specs or [DEFAULT_TEMPLATE])]
    _check_unique(templates)
    return templates


def _check_unique(templates: Sequence[Template]) -> None:
    seen: dict[str, Template] = {}
    for t in templates:
        if t.name == "template":  # its caption_<name> key would be the JSON's caption_template, which names the template used
            raise VLConvertError(f"{t.origin}: a template may not be named 'template' (its caption would overwrite the sample "
                                 "JSON's caption_template field); rename the file")
        if t.name in seen:
            raise VLConvertError(f"template {t.name!r} is given twice; each becomes its own tar member")
        seen[t.name] = t


@dataclass(frozen=True)
class CaptionSpec:
    """Which template fills ``KEY.txt`` (one, or a weighted mix) and which fill ``KEY.<name>.txt``."""

    primary: tuple[tuple[Template, float], ...]  # weights sum to 1
    named: tuple[Template, ...] = ()
    seed: int = 0

    @property
    def templates(self) -> list[Template]:
        unique: dict[str, Template] = {}
        for t in [t for t, _ in self.primary] + list(self.named):
            unique.setdefault(t.name, t)
        return list(unique.values())

    @property
    def is_mix(self) -> bool:
        return len(self.primary) > 1

    def choose(self, key: str) -> Template:
        """The ``KEY.txt`` template of one sample: a pure function of (seed, key)."""
        if not self.is_mix:
            return self.primary[0][0]
        digest = hashlib.blake2b(f"{self.seed}:{key}".encode(), digest_size=8).digest()
        point = int.from_bytes(digest, "big") / 2**64
        cumulative = 0.0
        for template, weight in self.primary:
            cumulative += weight
            if point < cumulative:
                return template
        return self.primary[-1][0]


def caption_spec(
    templates: Sequence[str] = (),
    mix: Mapping[str, float] | None = None,
    all_templates: bool = False,
    seed: int = 0,
) -> CaptionSpec:
    """``templates``: the first fills KEY.txt unless ``mix`` does; the rest, and with
    ``all_templates`` every built-in, fill KEY.<name>.txt."""
    given = [load_template(s) for s in templates]
    _check_unique(given)
    if mix:
        try:  # the check every build option gets; a build has run it already, a caller of this function may not have
            weights = TemplateMix().check(mix)
        except (TypeError, ValueError) as exc:
            raise VLConvertError(f"--template-mix: {exc}") from None
        total = sum(weights.values())
        primary = tuple((load_template(spec), w / total) for spec, w in weights.items())
        _check_unique([t for t, _ in primary])
        named = given
    else:
        first = given[0] if given else load_template(DEFAULT_TEMPLATE)
        primary, named = ((first, 1.0),), given[1:]
    if all_templates:
        named = named + [load_template(n) for n in builtin_template_names() if n not in {t.name for t in named}]
    by_name = {t.name: t for t, _ in primary}
    for t in named:
        if by_name.setdefault(t.name, t) != t:
            raise VLConvertError(f"two different templates are named {t.name!r}; rename one of the files")
    return CaptionSpec(primary, tuple(named), seed)


def class_context(cls: ClassInfo) -> dict[str, Any]:
    name, common = cls.name.strip(), (cls.common_name or "").strip()
    has_common = bool(common) and common.casefold() != name.casefold()
    return {
        **cls.ranks,
        **cls.extra,
        "label": cls.label,
        "name": name,
        "common_name": common,
        "has_common_name": has_common,
        "common_or_scientific": common if has_common else name,
        "taxonomy": cls.ranks,
    }


class _AnyMeta(dict):
    """Metadata in which every field exists (as text), for telling class-level from record-level failures."""

    def __missing__(self, key):
        return "x"

    def get(self, key, default=None):
        value = super().get(key)
        return "x" if value is None else value


class CaptionError(ValueError):
    """A record whose caption could not be rendered; it goes to the error report."""


class CaptionLimitError(CaptionError):
    """A render passed one of the sandbox's limits: a template problem, which stops the build at the pre-render."""


class CaptionRenderer:
    """Compiles templates once; renders classes and records through them."""

    def __init__(self, templates: Sequence[Template], classes: Sequence[ClassInfo]):
        env = CaptionSandbox(FILTERS)
        self.environment = env
        self.templates = list(templates)
        self._compiled: dict[str, jinja2.Template] = {}
        for t in self.templates:
            try:
                self._compiled[t.name] = env.from_string(t.source)
            except jinja2.TemplateSyntaxError as exc:
                raise VLConvertError(f"template {t.name} ({t.origin}), line {exc.lineno}: {exc.message}") from exc
            except (RecursionError, MemoryError) as exc:
                raise VLConvertError(f"template {t.name} ({t.origin}): nested too deeply to compile") from exc
        self._by_name = {t.name: t for t in self.templates}
        self.contexts = [class_context(c) for c in classes]
        # A template that never names ``meta`` gives every record of a class the same caption (the sandbox is
        # deterministic): it is rendered once per class, not once per record (2-3% of a resizing build).
        self._per_class = {t.name for t in self.templates
                           if "meta" not in jinja2.meta.find_undeclared_variables(env.parse(t.source))}
        self._rendered: dict[tuple[str, int], str] = {}

    def render(self, template: Template | str, record: Record) -> str:
        """The caption of ``record`` under one template; raises ``CaptionError``."""
        name = template if isinstance(template, str) else template.name
        if name not in self._per_class:
            return self.render_class(name, record.label, record.metadata)
        key = (name, record.label)
        text = self._rendered.get(key)
        if text is None:
            text = self._rendered[key] = self.render_class(name, record.label, record.metadata)
        return text

    def render_class(self, name: str, label: int, metadata: Mapping[str, Any] | None = None) -> str:
        try:
            text = " ".join(self.environment.render(self._compiled[name], {**self.contexts[label], "meta": metadata or {}}).split())
        except TemplateLimit as exc:
            raise CaptionLimitError(f"template {self._describe(name)} was refused by the sandbox: {exc}") from exc
        except SecurityError as exc:
            raise CaptionError(f"template {self._describe(name)} was refused by the sandbox: {exc}") from exc
        except Exception as exc:  # noqa: BLE001 - a template can raise anything (1/0, a bad format spec)
            raise CaptionError(f"template {self._describe(name)}: {str(exc) or type(exc).__name__}") from exc
        if not text:
            raise CaptionError(f"template {self._describe(name)} rendered an empty caption")
        return text

    def check_classes(self, metadata: Mapping[str, Any] | None = None) -> None:
        """Render every class once, so a template naming a missing class field fails before the build.

        ``metadata`` is one real record's; when a class fails only with it (a null
        there), the class is tried again with metadata that has every field, and
        only a failure then (a class-level mistake) stops the build.  A sandbox limit stops
        it at once: a template that passes one on some records would pass it on others."""
        for name in self._compiled:
            for context in self.contexts:
                try:
                    self.render_class(name, context["label"], metadata)
                except CaptionLimitError as exc:
                    raise VLConvertError(f"{exc} (class {context['label']} {context['name']!r})") from exc
                except CaptionError as exc:
                    try:
                        present = {k: v for k, v in (metadata or {}).items() if v is not None}
                        self.render_class(name, context["label"], _AnyMeta(present))
                    except CaptionError:
                        raise VLConvertError(f"{exc} (class {context['label']} {context['name']!r})") from exc

    def _describe(self, name: str) -> str:
        return f"{name} ({self._by_name[name].origin})"
