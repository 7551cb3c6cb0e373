"""Jinja filters for caption templates: articles, binomials, rank joins, dates, places.

Each one takes what a template has at hand (a name, the ``taxonomy`` mapping,
``meta``) and returns text, or "" when the input is missing, so templates can
write ``{{ taxonomy | binomial or name }}``.
"""

from __future__ import annotations

import calendar
import math
import re
import unicodedata
from collections.abc import Iterable, Mapping
from typing import Any

# Words that start with a vowel letter but a consonant sound, and the reverse.
_CONSONANT_SOUND = re.compile(r"^(uni(?![nmv])|use|usu|uti|uta|ute|uk|eu|ewe|one|once|ubi|ura|uro|uvu)", re.IGNORECASE)
_VOWEL_SOUND = re.compile(r"^(hour|honest|honou?r|heir|8|11|18|80|800)", re.IGNORECASE)


def article(text: str) -> str:
    """'a Black-billed Magpie', 'an English oak', 'a Utah juniper', 'an Ōhiʻa', 'an 8-spotted'."""
    text = (text or "").strip()
    if not text:
        return ""
    plain = unicodedata.normalize("NFD", text)  # "Ōhiʻa" starts with an O
    vowel = plain[0].lower() in "aeiou"
    if (vowel and not _CONSONANT_SOUND.match(plain)) or _VOWEL_SOUND.match(plain):
        return f"an {text}"
    return f"a {text}"


def join_ranks(taxonomy: Mapping[str, str], upto: str | None = None, tagged: bool = False) -> str:
    """The non-empty ranks from the broadest down to ``upto`` (inclusive), optionally as 'rank value'."""
    if upto is not None and upto not in taxonomy:
        if not taxonomy:
            return ""  # a class without ranks (CUB, a plain folder): let the template fall back to the name
        raise ValueError(f"join_ranks(upto={upto!r}): no such rank here (ranks: {', '.join(taxonomy)})")
    words = []
    for rank, value in taxonomy.items():
        if value and str(value).strip():  # a blank cell of a taxonomy table is no rank
            words.append(f"{rank} {value}" if tagged else value)
        if rank == upto:
            break
    return " ".join(words)


def binomial(taxonomy: Mapping[str, str]) -> str:
    """'Pica hudsonia' from the genus and species ranks; '' when either is missing."""
    genus, epithet = taxonomy.get("genus"), taxonomy.get("species")
    return f"{genus} {epithet}" if genus and epithet else ""


def capfirst(text: str) -> str:
    """Upper-cases the first letter only (Jinja's ``capitalize`` lower-cases the rest)."""
    return text[:1].upper() + text[1:] if text else ""


def month_name(date: Any) -> str:
    """'July' from '2019-07-15 10:00:00+00:00'; '' when the date is missing or unreadable."""
    match = re.match(r"^\d{4}-(\d{2})", str(date or ""))
    month = int(match.group(1)) if match else 0
    return calendar.month_name[month] if 1 <= month <= 12 else ""


def year(date: Any) -> str:
    match = re.match(r"^(\d{4})-", str(date or ""))
    return match.group(1) if match else ""


def place(meta: Mapping[str, Any], digits: int = 1) -> str:
    """'35.5°N 139.2°E' from ``latitude`` and ``longitude``; '' when either is missing or impossible."""
    lat, lon = meta.get("latitude"), meta.get("longitude")
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in (lat, lon))
    if not numbers or abs(lat) > 90 or abs(lon) > 180:
        return ""
    digits = max(0, min(int(digits), 6))
    return f"{abs(lat):.{digits}f}°{'N' if lat >= 0 else 'S'} {abs(lon):.{digits}f}°{'E' if lon >= 0 else 'W'}"


def join_and(items: Iterable[Any]) -> str:
    """'a, b and c'."""
    if isinstance(items, str):
        items = [items]
    words = [str(i) for i in items if i not in (None, "")]
    return ", ".join(words[:-1]) + " and " + words[-1] if len(words) > 1 else "".join(words)


FILTERS = {
    "article": article,
    "join_ranks": join_ranks,
    "binomial": binomial,
    "capfirst": capfirst,
    "month_name": month_name,
    "year": year,
    "place": place,
    "join_and": join_and,
}
