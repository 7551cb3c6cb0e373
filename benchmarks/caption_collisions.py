"""Lints every built-in template over the 10,000 real iNat-2021 categories.

Prints, per template, how many caption texts are shared by several species and
the longest caption in CLIP tokens (needs open_clip for tokens):

    python benchmarks/caption_collisions.py ../shared/data/inat2021_categories.json
"""

import json
import sys

from vlconvert.adapters.inat2021 import INat2021Adapter

from vlconvert.captions.lint import lint
from vlconvert.captions.render import builtin_template_names, load_template

categories = sorted(json.load(open(sys.argv[1], encoding="utf-8")), key=lambda c: c["id"])
classes = [INat2021Adapter.class_info(label, dict(c)) for label, c in enumerate(categories)]
print(f"{'template':18} {'collisions':>10} {'species':>8} {'max tokens':>10} {'truncated':>9}")
for name in builtin_template_names():
    report = lint(load_template(name), classes, [])
    species = sum(len(names) for _, names in report.collisions)
    longest = max(report.token_lengths) if report.token_lengths else "n/a"
    print(f"{name:18} {len(report.collisions):>10} {species:>8} {longest:>10} {report.truncated:>9}")
