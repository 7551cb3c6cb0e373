"""Parses and plans a full-size iNat-2021 train.json without touching any image.

Prints the record count, shard count and the seconds each stage took; run it
under /usr/bin/time -v to read the peak memory ("Maximum resident set size"):

    python benchmarks/make_inat2021_train_json.py --categories ../shared/data/inat2021_categories.json --out /tmp/inat-full
    /usr/bin/time -v python benchmarks/plan_full_scale.py /tmp/inat-full
"""

import sys
import time

from vlconvert import create_adapter
from vlconvert.plan import plan_split

root = sys.argv[1]
started = time.perf_counter()
adapter = create_adapter("inat2021", root)
classes = adapter.classes()
t_classes = time.perf_counter()
records = adapter.records("train")
rejected = adapter.rejected("train")
t_records = time.perf_counter()
tasks = plan_split("train", len(records), seed=0, shard_size=1000)
t_plan = time.perf_counter()
first = records.take(tasks[0].positions[:3])
print(f"classes: {len(classes)} in {t_classes - started:.1f} s")
print(f"records: {len(records)} (+{len(rejected)} rejected) in {t_records - t_classes:.1f} s")
print(f"plan: {len(tasks)} shards in {t_plan - t_records:.1f} s")
print(f"total: {t_plan - started:.1f} s; first records: {[r.key for r in first]}")
