"""Reads a vlconvert build with whatever webdataset is installed; CI runs it under webdataset 1.x.

open_clip's loader pins webdataset<=0.2.86 (the tests cover that one); this
proves the same shards read under the current webdataset too.

    python .ci/read_with_webdataset.py OUT
"""

import json
import sys
from importlib.metadata import version
from pathlib import Path

import webdataset as wds

out = Path(sys.argv[1])
manifest = json.loads((out / "manifest.json").read_text())
for split, info in manifest["splits"].items():
    urls = [str(out / s["name"]) for s in info["shards"]]
    sizes = json.loads((out / split / "sizes.json").read_text())
    count = 0
    for sample in wds.WebDataset(urls, shardshuffle=False, empty_check=False).decode("pil"):
        assert sample["txt"].startswith("a photo of "), sample["__key__"]
        assert sample["json"]["label"] == sample["cls"], sample["__key__"]
        assert min(sample["jpg"].size) > 0
        count += 1
    assert count == sum(sizes.values()) == info["written"], (split, count, sizes)
    print(f"webdataset {version('webdataset')}: {split}: {count} samples read")
