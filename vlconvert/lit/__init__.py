"""The LiT recipe: train a text tower against a locked image tower on vlconvert shards, and evaluate zero-shot.

Needs the ``lit`` extra (torch, open_clip).  ``vlconvert lit-train`` and
``vlconvert zeroshot`` are the commands; ``train.train`` and :func:`evaluate`
the Python entry points.  Importing this package imports neither torch nor
open_clip: ``evaluate`` loads them when first used.
"""

from __future__ import annotations

__all__ = ["Evaluation", "evaluate"]


def __getattr__(name: str):
    if name in __all__:
        import vlconvert.lit.evaluation as evaluation

        return getattr(evaluation, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
