"""Each shard's Parquet table against the manifest and the shard it describes.

The table is what users filter and re-shard from (and what ``vlconvert dedup`` reads), so a
table that no longer matches its tar would silently select the wrong samples: its size and
sha256 are checked against the manifest's ``table`` entry and its ``key`` column against
the keys read from the tar, in order.
"""

from __future__ import annotations

import hashlib
import io
import posixpath
from collections.abc import Callable

import pyarrow as pa
import pyarrow.parquet as pq

from vlconvert.format import is_listed_shard_name
from vlconvert.storage import NotARegularFile, read_bounded

Add = Callable[[str, str], None]  # (where, what)
MAX_TABLE_BYTES = 256 << 20  # a table is a few hundred bytes a sample; 256 MB is no shard's table


def check_table(fs, path: str, add: Add, split: str, entry: dict, keys: list[str]) -> None:
    """``entry`` is the shard's manifest entry, ``keys`` the keys its tar holds, in order."""
    table = entry.get("table")
    if table is None:
        return  # a build from before shards had tables
    name = table.get("name") if isinstance(table, dict) else None
    expected = str(entry.get("name", ""))[: -len(".tar")] + ".parquet"
    if name != expected or not is_listed_shard_name(split, expected[: -len(".parquet")] + ".tar"):
        add(str(entry.get("name")), f"its table is listed as {name!r}, not {expected!r}; not opened")
        return
    try:
        data = read_bounded(fs, posixpath.join(path, name), MAX_TABLE_BYTES)
    except FileNotFoundError:
        add(name, "missing")
        return
    except (NotARegularFile, IsADirectoryError) as exc:
        add(name, f"{exc.strerror}; not read")
        return
    except ValueError:
        add(name, f"over {MAX_TABLE_BYTES:,} bytes, far more than a shard's table; not read")
        return
    found = (len(data), hashlib.sha256(data).hexdigest())
    if found != (table.get("bytes"), table.get("sha256")):
        add(name, f"{found[0]:,} bytes with sha256 {found[1][:16]}…, the manifest says {table.get('bytes')} bytes "
                  f"with sha256 {str(table.get('sha256'))[:16]}…: changed since the build wrote it")
        return
    try:
        column = pq.read_table(io.BytesIO(data), columns=["key"], use_threads=False, pre_buffer=False).column("key").to_pylist()
    except (pa.ArrowException, KeyError) as exc:
        add(name, f"not a readable Parquet table with a key column: {exc}")
        return
    if column != keys:
        first = next((i for i, (a, b) in enumerate(zip(column, keys)) if a != b), min(len(column), len(keys)))
        add(name, f"{len(column)} rows for {len(keys)} samples in the shard; they differ from row {first}")
