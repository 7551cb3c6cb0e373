"""The Parquet table beside every shard: one row per sample, in the tar's order.

``<split>-NNNNNN.parquet`` lets a user filter, count and re-shard a build with pyarrow,
duckdb or pandas instead of reading tars, as img2dataset's and DataComp's tables do;
``vlconvert dedup`` reads its hashes from here.  The schema is documented in
docs/output-format.md; the caption columns are one per rendered template
(``caption_<name>``), the same keys as the sample's JSON member.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from vlconvert.pipeline.image_hashes import phashes, to_hex

CAPTION_PREFIX = "caption_"


def caption_key(template_name: str) -> str:
    """Where a template's caption sits in the sample's JSON and in the table (open_clip's ``--json-text-key``)."""
    return CAPTION_PREFIX + template_name


def schema(template_names: list[str]) -> pa.Schema:
    text, count = pa.string(), pa.int32()
    return pa.schema(
        [("key", text), ("split", text), ("label", count), ("class_name", text), ("caption", text)]
        + [(caption_key(name), text) for name in template_names]
        + [("caption_template", text), ("source", text), ("source_width", count), ("source_height", count),
           ("width", count), ("height", count), ("image_format", text), ("source_bytes", pa.int64()),
           ("image_bytes", pa.int64()), ("sample_bytes", pa.int64()), ("image_sha256", text), ("phash", text)]
    )


@dataclass
class PartRows:
    """The rows of one tar part while it is written; the perceptual hashes are computed together at the end."""

    rows: list[dict] = field(default_factory=list)
    thumbnails: list[np.ndarray] = field(default_factory=list)

    def add(self, row: dict, thumbnail: np.ndarray) -> None:
        self.rows.append(row)
        self.thumbnails.append(thumbnail)


def sample_row(record_key: str, split: str, label: int, class_name: str, captions: dict[str, str], primary: str,
               source: str, source_bytes: bytes, image, members: list[tuple[str, bytes]]) -> dict:
    """Everything of one sample but its perceptual hash.  ``image`` is the PreparedImage written.  Only the stored
    bytes are hashed: the same source under the same options gives the same bytes, and a source file is often ten
    times the stored image (hashing it cost more than the rest of the table)."""
    return {
        "key": record_key, "split": split, "label": label, "class_name": class_name, "caption": captions[primary],
        **{caption_key(name): text for name, text in captions.items()},
        "caption_template": primary, "source": source,
        "source_width": image.source_size[0], "source_height": image.source_size[1], "width": image.width,
        "height": image.height, "image_format": image.extension, "source_bytes": len(source_bytes),
        "image_bytes": len(image.data), "sample_bytes": sum(len(data) for _, data in members),
        "image_sha256": hashlib.sha256(image.data).hexdigest(),
    }


def encode(part: PartRows, table_schema: pa.Schema) -> bytes:
    """The Parquet file of one part: deterministic bytes for the same rows (no timestamps in Parquet's footer)."""
    hashes = phashes(np.stack(part.thumbnails)) if part.thumbnails else np.zeros(0, dtype=np.uint64)
    columns = {name: [row[name] for row in part.rows] for name in table_schema.names if name != "phash"}
    columns["phash"] = [to_hex(h) for h in hashes]
    return _parquet(columns, table_schema)


def _parquet(columns: dict[str, list], table_schema: pa.Schema) -> bytes:
    arrays = [_column(columns[f.name], f.type) for f in table_schema]
    out = io.BytesIO()
    pq.write_table(pa.Table.from_arrays(arrays, schema=table_schema), out, compression="zstd")
    return out.getvalue()


def _column(values: list, kind: pa.DataType) -> pa.Array:
    """An Arrow array made from its buffers: ``pa.array`` imports pandas on its first call (0.2-0.4 s in every
    worker), to check whether it was handed a pandas object."""
    if kind == pa.string():
        # A lone surrogate (a file name that was not UTF-8) cannot be UTF-8: written as its escape, as in the JSON files.
        encoded = [value.encode("utf-8", "backslashreplace") for value in values]
        offsets = np.zeros(len(encoded) + 1, dtype=np.int32)
        np.cumsum([len(e) for e in encoded], out=offsets[1:])
        return pa.Array.from_buffers(kind, len(encoded), [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))])
    return pa.Array.from_buffers(kind, len(values), [None, pa.py_buffer(np.asarray(values, dtype=kind.to_pandas_dtype()))])


def write(fs, path: str, data: bytes) -> tuple[int, str]:
    with fs.open(path, "wb") as f:
        f.write(data)
    return len(data), hashlib.sha256(data).hexdigest()


REJECTIONS = pa.schema([("split", pa.string()), ("key", pa.string()), ("source", pa.string()), ("stage", pa.string()),
                        ("reason", pa.string())])


def rejections(rejected) -> bytes:
    """``errors.parquet``: the rows of ``errors.jsonl``, in its order, for the same queries as the shard tables."""
    rows = [r.as_json() for r in rejected]
    return _parquet({name: [str(row[name]) for row in rows] for name in REJECTIONS.names}, REJECTIONS)
