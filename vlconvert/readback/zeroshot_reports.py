"""Zero-shot reports of a build, found for ``inspect`` to link: the files ``vlconvert zeroshot --report DIR`` writes.

Found cheaply and only on a local disk: OUT/zeroshot*/, or a folder beside OUT
whose metrics.json names OUT as its ``--data``.
"""

from __future__ import annotations

import glob
import json
import os
from dataclasses import dataclass

from vlconvert.errors import VLConvertError

METRICS = "metrics.json"  # every model's metrics; its "data" is the build evaluated
REPORT = "report.md"  # the Markdown table `vlconvert zeroshot` also prints


@dataclass
class ZeroshotReport:
    folder: str
    document: str  # report.md, or metrics.json when there is no Markdown
    acc1: float | None


def find_zeroshot_reports(out: str, explicit: str | None = None) -> list[ZeroshotReport]:
    """The zero-shot report given (``explicit``, a report folder), else ones found cheaply beside a local build:
    OUT/zeroshot*/, or a sibling folder whose metrics.json names this build as its --data."""
    if explicit:
        candidates = [explicit]
    elif "://" in out:
        return []  # listing a bucket's parent to guess would cost more than the rest of inspect
    else:
        inside = sorted(filter(os.path.isdir, glob.glob(os.path.join(out, "zeroshot*"))))
        candidates = inside + sorted(glob.glob(os.path.join(os.path.dirname(os.path.abspath(out)), "*", METRICS)))
    found = []
    for candidate in candidates:
        folder = os.path.dirname(candidate) if candidate.endswith(METRICS) else candidate
        metrics = _metrics(os.path.join(folder, METRICS))
        if candidate is not explicit and candidate.endswith(METRICS):
            data = metrics.get("data") if metrics else None
            if not data or os.path.abspath(data) != os.path.abspath(out):
                continue
        document = next((d for d in (REPORT, METRICS) if os.path.exists(os.path.join(folder, d))), None)
        if document is None:
            if explicit:
                raise VLConvertError(f"--zeroshot-report {explicit}: holds no {REPORT} or {METRICS}")
            continue
        acc1 = metrics.get("acc1") if metrics else None
        found.append(ZeroshotReport(folder, os.path.join(folder, document), acc1 if isinstance(acc1, (int, float)) else None))
    return found


def _metrics(path: str) -> dict | None:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None
