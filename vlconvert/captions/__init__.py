"""Captions: templates, the sandbox they render in, the filters they use, zero-shot prompts and the linter.

``vlconvert.captions`` is the Python API of captions (docs/python-api.md): it renders
the same captions a build writes, without building.
"""

from vlconvert.captions.render import (
    DEFAULT_TEMPLATE,
    CaptionError,
    CaptionLimitError,
    CaptionRenderer,
    CaptionSpec,
    Template,
    builtin_template_names,
    caption_spec,
    class_context,
    load_template,
    load_templates,
)

__all__ = [
    "DEFAULT_TEMPLATE",
    "CaptionError",
    "CaptionLimitError",
    "CaptionRenderer",
    "CaptionSpec",
    "Template",
    "builtin_template_names",
    "caption_spec",
    "class_context",
    "load_template",
    "load_templates",
]
