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

METRICS = "metrics.json"  # the first model's metrics at the top, every model's under "models"; "data": the build
REPORT = "report.md"  # the Markdown table `vlconvert zeroshot` also prints


@dataclass
class ZeroshotReport:
    folder: str
    document: str  # report.md, or metrics.json when there is no Markdown
    acc1: float | None  # the first model's top-1
    model: str | None = None  # the first model, as the report names it
    models: int = 1  # how many models the report compares


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
        found.append(ZeroshotReport(folder, os.path.join(folder, document), *_first_model(metrics or {})))
    return found


def _first_model(metrics: dict) -> tuple[float | None, str | None, int]:
    """(top-1, name, model count).  Reports written before metrics.json had one shape kept a comparison's
    models only under "models", a mapping of name to metrics, with nothing at the top level."""
    models = metrics.get("models")
    if isinstance(models, dict):
        models = [{"model": name, **m} for name, m in models.items() if isinstance(m, dict)]
    models = [m for m in models if isinstance(m, dict)] if isinstance(models, list) else []
    first = metrics if "acc1" in metrics or not models else models[0]
    acc1, name = first.get("acc1"), first.get("model")
    return (acc1 if isinstance(acc1, (int, float)) and not isinstance(acc1, bool) else None,
            name if isinstance(name, str) else None, max(1, len(models)))


def _metrics(path: str) -> dict | None:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None
