"""Zero-shot prompt sets: what goes into classnames.txt and zeroshot_classification_templates.txt.

CLIP_benchmark builds a classifier from every class name substituted into every
``{c}`` template.  ``simple`` and ``openai_imagenet`` (CLIP's 80 ImageNet
prompts) use the classes' canonical names; ``same_as_training`` writes each
class's training caption as its "name" with the single template ``{c}``, so
evaluation asks exactly what training taught.  A path to a text file gives
your own templates, one per line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vlconvert.captions.render import CaptionError, CaptionRenderer, CaptionSpec, builtin_resource, read_utf8
from vlconvert.errors import VLConvertError
from vlconvert.records import ClassInfo

BUILTIN_PROMPT_SETS = ("simple", "openai_imagenet", "same_as_training")


@dataclass(frozen=True)
class PromptSet:
    name: str
    classnames: list[str]
    templates: list[str]
    classnames_are: str  # "canonical names" or "training captions"

    @property
    def duplicates(self) -> int:
        """Class names that repeat another, compared as CLIP's tokenizer sees them (case and spacing ignored)."""
        return len(self.classnames) - len({" ".join(n.casefold().split()) for n in self.classnames})


def prompt_set(choice: str, classes: list[ClassInfo], spec: CaptionSpec, renderer: CaptionRenderer) -> PromptSet:
    names = [" ".join(c.name.split()) for c in classes]
    if choice == "same_as_training":
        return PromptSet(choice, _training_captions(classes, spec, renderer), ["{c}"], "training captions")
    if choice in BUILTIN_PROMPT_SETS:
        return PromptSet(choice, names, parse_templates(builtin_resource(f"zeroshot/{choice}.txt"), choice), "canonical names")
    path = Path(choice)
    if not path.is_file():
        raise VLConvertError(
            f"unknown zero-shot prompt set {choice!r}: give one of {', '.join(BUILTIN_PROMPT_SETS)} or a text file of templates"
        )
    return PromptSet(str(path), names, parse_templates(read_utf8(path, "zero-shot prompt file"), str(path)), "canonical names")


def parse_templates(text: str, origin: str) -> list[str]:
    lines = [line.strip() for line in text.splitlines()]
    templates = [line for line in lines if line]
    for number, line in enumerate(lines, start=1):
        if not line:
            continue
        try:
            usable = "{c}" in line and line.format(c="x") is not None  # CLIP_benchmark calls .format(c=name)
        except (KeyError, IndexError, ValueError):
            usable = False
        if not usable:
            raise VLConvertError(f"{origin}, line {number}: a zero-shot template needs the placeholder {{c}} "
                                 f"and no other braces: {line!r}")
    if not templates:
        raise VLConvertError(f"{origin}: no zero-shot templates in it")
    return templates


def _training_captions(classes: list[ClassInfo], spec: CaptionSpec, renderer: CaptionRenderer) -> list[str]:
    if spec.is_mix:
        raise VLConvertError(
            "--zeroshot-prompts same_as_training needs one training template, not a --template-mix; "
            "use simple, openai_imagenet or a file of templates"
        )
    template = spec.primary[0][0]
    captions = []
    for cls in classes:
        try:
            captions.append(renderer.render_class(template.name, cls.label, {}))
        except CaptionError as exc:
            raise VLConvertError(
                f"--zeroshot-prompts same_as_training renders {template.name} per class, without image metadata: {exc}"
            ) from exc
    return captions
