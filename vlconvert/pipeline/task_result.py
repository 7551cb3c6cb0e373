"""What one shard task produced: its parts, its rejected records, its class counts.

Its own module because the task (``shard_task``) makes it and the ledger
(``ledger``) stores and reloads it, and the task commits through the ledger.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from vlconvert.pipeline.tar_writer import ShardInfo
from vlconvert.records import Rejected


@dataclass
class ShardResult:
    split: str
    index: int
    shards: list[ShardInfo]
    rejected: list[Rejected] = field(default_factory=list)
    class_counts: Counter = field(default_factory=Counter)
    inputs: str = ""  # digest of the task's records: a resumed task is kept only if its inputs are unchanged
    image_members: Counter = field(default_factory=Counter)  # samples per image member (jpg, png, webp)

    @property
    def records(self) -> int:
        return sum(s.samples for s in self.shards) + len(self.rejected)

    def to_json(self) -> dict:
        return {
            "split": self.split,
            "index": self.index,
            "shards": [vars(s) for s in self.shards],
            "rejected": [r.as_json() for r in self.rejected],
            "class_counts": {str(label): n for label, n in sorted(self.class_counts.items())},
            "inputs": self.inputs,
            "image_members": dict(sorted(self.image_members.items())),
        }

    @classmethod
    def from_json(cls, data: dict) -> ShardResult:
        return cls(
            data["split"],
            data["index"],
            [ShardInfo(**s) for s in data["shards"]],
            [Rejected(r["split"], r["key"], r["source"], r["reason"], r["stage"]) for r in data["rejected"]],
            Counter({int(label): n for label, n in data["class_counts"].items()}),
            data["inputs"],
            Counter(data.get("image_members", {})),
        )
