"""Caption lengths in CLIP tokens, and the nearest-rank percentiles every report states lengths and counts in.

``captions lint`` (before a build) and ``inspect`` (after it) measure captions
with these same functions, so the two agree on one caption set.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

CONTEXT_LENGTH = 77  # CLIP's text context, start and end tokens included
LINT_PERCENTILES = (("p0", 0), ("p50", 50), ("p90", 90), ("p99", 99), ("p100", 100))


def percentiles(values: Iterable[int], points: Sequence[tuple[str, int]] = LINT_PERCENTILES) -> dict[str, int]:
    """Nearest-rank percentiles: ``{name: the value at p percent}`` for each ``(name, p)`` of ``points``; {} for no values."""
    ordered = sorted(values)
    if not ordered:
        return {}
    return {name: ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))] for name, p in points}


def token_lengths(captions: list[str]) -> tuple[list[int] | None, str]:
    """(CLIP tokens of each caption, start and end included; what counted them), or (None, why not) without open_clip."""
    try:
        from open_clip.tokenizer import SimpleTokenizer
    except ImportError:
        return None, "token counts need open_clip: pip install 'vlconvert[lit]'"
    tokenizer = SimpleTokenizer()
    return [len(tokenizer.encode(c)) + 2 for c in captions], "open_clip SimpleTokenizer (CLIP BPE)"


def over_context(lengths: Iterable[int] | None) -> int:
    """How many of the token ``lengths`` exceed CLIP's context: those captions are truncated in training."""
    return sum(n > CONTEXT_LENGTH for n in lengths or [])
