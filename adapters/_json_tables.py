"""Streams the top-level lists of a COCO-style JSON file (images, annotations, categories) into Arrow.

iNat-2021's train.json is about 1 GB with 2.7M images: loaded with ``json.load``
it would become several GB of Python dicts.  Items are packed, ``CHUNK_ROWS`` at
a time, into Arrow columns written to an Arrow IPC file in a spill folder, then
memory-mapped back.  Planning touches only the id and label columns, so the
process keeps a few hundred MB resident however large the file is, and the page
cache holds the rest.

Two readers fill the chunks.  ``read_lists`` reads every wanted list in one pass,
decoding blocks of items with msgspec (``_json_lists.py``), about 8x faster than
ijson; whatever that reader is not sure of goes to ``read_list``, which parses
with ijson's C backend through a ``NestingGuard`` (``_json_guard.py``: ijson keeps
a prefix string per level, and a 100 KB file of ``[[[[…`` would cost gigabytes).
Its tables, and its error messages, are the ones that count.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import contextmanager
from typing import Any

import ijson
import pyarrow as pa

from vlconvert.errors import VLConvertError

from ._json_guard import NestingGuard
from ._json_lists import NotPlain
from ._json_lists import read_lists as fast_read_lists

CHUNK_ROWS = 20_000
_READ_BUFFER = 1 << 20


class ListChunks:
    """The items of one list, packed ``chunk_rows`` at a time into Arrow tables (spilled to
    ``spill_dir`` when given), each passed through ``annotate`` while still in memory."""

    def __init__(self, path: str, section: str, spill_dir: str | None = None, chunk_rows: int = CHUNK_ROWS,
                 annotate: Callable[[pa.Table], pa.Table] | None = None):
        self.path, self.section, self.spill_dir, self.chunk_rows, self.annotate = path, section, spill_dir, chunk_rows, annotate
        self.chunks: list[pa.Table] = []
        self.starts: list[int] = []  # index in the list of each chunk's first item, for error messages
        self.count = 0  # items stored in chunks
        self.blocks: list[pa.Table] = []  # tables of items not yet in a chunk
        self.blocked = 0  # their rows
        self.pending: list[dict] = []  # items given one at a time, not yet a table

    def add(self, items: list[dict]) -> None:
        """A block of items, made a table at once so that no Python object outlives its block."""
        self.blocks.append(_to_table(items, self.path, self.section, self.count + self.blocked))
        self.blocked += len(items)
        while self.blocked >= self.chunk_rows:
            joined = pa.concat_tables(self.blocks, promote_options="permissive")
            self.blocked -= self.chunk_rows
            self.blocks = [joined.slice(self.chunk_rows)] if self.blocked else []  # an empty rest would still carry its types
            self._store(joined.slice(0, self.chunk_rows).combine_chunks())

    def add_one(self, item: dict) -> None:
        self.pending.append(item)
        if len(self.pending) == self.chunk_rows:
            self.add(self.pending)
            self.pending = []

    def _store(self, table: pa.Table) -> None:
        self.starts.append(self.count)
        self.count += len(table)
        if self.annotate:
            table = self.annotate(table)
        spill = self.spill_dir and os.path.join(self.spill_dir, f"{self.section}-{len(self.chunks):05d}.arrow")
        self.chunks.append(_spill(table, spill) if spill else table)

    def table(self) -> pa.Table | None:
        """Every item as one table; None when the list held none."""
        if self.pending:
            self.add(self.pending)
            self.pending = []
        if self.blocked:
            self._store(pa.concat_tables(self.blocks, promote_options="permissive").combine_chunks())
            self.blocks, self.blocked = [], 0
        if not self.chunks:
            return None
        try:
            return pa.concat_tables(self.chunks, promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            conflict = _conflict_between_chunks(self.chunks, self.starts, self.path, self.section)
            raise VLConvertError(conflict or f"{self.path}: {self.section}: {exc}") from exc


def read_lists(fs, path: str, sections: dict[str, dict], open_file: Callable[[str], Any] | None = None) -> dict[str, pa.Table]:
    """:func:`read_list` for several top-level lists of one file (``sections``: name → its keyword
    arguments), read in one pass by the fast reader (``_json_lists.py``) when it is sure of the file,
    else by ``read_list`` one list at a time, whose tables, or errors, are the ones that count."""
    opener = _opener(fs, open_file)
    try:
        collectors = {name: ListChunks(path, name, **options) for name, options in sections.items()}
        with opener(path) as raw:
            # Through the same guard as the careful reader: its depth and value-size limits hold on both paths.
            lists = fast_read_lists(NestingGuard(raw, path), {name: c.add for name, c in collectors.items()})
        tables = {name: collector.table() for name, collector in collectors.items()}
        if lists == set(sections):
            return {name: table if table is not None else pa.table({}) for name, table in tables.items()}
    except (NotPlain, VLConvertError, pa.ArrowException, OSError, ValueError, TypeError, OverflowError, RecursionError):
        pass  # the careful reader reads it again and says what is wrong, if anything is
    careful = {name: {**options, "spill_dir": options.get("spill_dir") and os.path.join(options["spill_dir"], "careful")}
               for name, options in sections.items()}
    for options in careful.values():
        if options["spill_dir"]:
            os.makedirs(options["spill_dir"], exist_ok=True)
    # The first pass reads the whole file through the nesting guard: the others need no guard.
    return {name: read_list(fs, path, name, open_file=open_file, guard=not i, **options)
            for i, (name, options) in enumerate(careful.items())}


def read_list(
    fs, path: str, section: str, spill_dir: str | None = None, chunk_rows: int = CHUNK_ROWS,
    annotate: Callable[[pa.Table], pa.Table] | None = None, open_file: Callable[[str], Any] | None = None,
    guard: bool = True,
) -> pa.Table:
    """Every item of the top-level list ``section`` as one table; missing fields are null.

    With ``spill_dir`` the columns live in memory-mapped files there, not on the heap.
    ``open_file(path)`` opens it (default ``fs.open``): a release's own, under the read policy.
    ``guard=False`` skips the nesting guard, for a second pass over a file a guarded pass read whole.
    ``annotate`` may add derived columns to each chunk while it is still in memory:
    a check over a whole spilled column would page all of it back in.
    """
    collector = ListChunks(path, section, spill_dir, chunk_rows, annotate)
    opener = _opener(fs, open_file)
    with _parse_errors(path), opener(path) as raw:
        stream = NestingGuard(raw, path) if guard else raw
        # An empty section means the document itself is the list (iNat-2018's categories.json).
        for item in ijson.items(stream, f"{section}.item" if section else "item", use_float=True, buf_size=_READ_BUFFER):
            if not isinstance(item, dict):
                raise VLConvertError(f"{path}: every entry of {section!r} must be an object, found {item!r}")
            collector.add_one(item)
    table = collector.table()
    if table is None:
        if section:
            _require_section(opener, path, section)
        return pa.table({})
    return table


def _opener(fs, open_file: Callable[[str], Any] | None) -> Callable[[str], Any]:
    return open_file or (lambda p: fs.open(p, "rb"))


@contextmanager
def _parse_errors(path: str):
    """What ijson's parser refuses, as the one-line error that names the file."""
    try:
        yield
    except ijson.JSONError as exc:
        # yajl's message draws the spot on further lines; the first one says what is wrong.
        raise VLConvertError(f"{path}: not valid JSON ({str(exc).strip().splitlines()[0].strip()})") from exc
    except UnicodeDecodeError as exc:  # yajl passes overlong or surrogate UTF-8 sequences to Python's decoder
        raise VLConvertError(f"{path}: not valid JSON (a string is not valid UTF-8: {exc.reason} at byte {exc.start})") from exc


_EVENT_KINDS = {"start_map": "an object", "string": "a string", "number": "a number", "boolean": "a boolean", "null": "null"}


def _require_section(opener, path: str, section: str) -> None:
    # Only reached when the list yielded nothing: tell "empty" from "absent" from "not a list".
    with _parse_errors(path), opener(path) as raw:
        for position, (prefix, event, _) in enumerate(ijson.parse(NestingGuard(raw, path), buf_size=_READ_BUFFER)):
            if prefix == section and event != "map_key":
                if event == "start_array":
                    return  # an empty list
                raise VLConvertError(f"{path}: {section!r} must be a list, but it is {_EVENT_KINDS.get(event, event)}")
            # Only the first event is the document's own: a value under the key "" has the prefix "" too.
            if position == 0 and event in ("start_array", "string", "number", "boolean", "null"):
                raise VLConvertError(f"{path}: the file is {_EVENT_KINDS.get(event, 'a list')}, not an object "
                                     f"holding the {section!r} list; is this a COCO-style annotation file?")
    raise VLConvertError(f"{path}: has no {section!r} list; is this a COCO-style annotation file?")


def _to_table(items: list[dict], path: str, section: str, start: int) -> pa.Table:
    try:
        return pa.Table.from_struct_array(pa.array(items))
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        for field in dict.fromkeys(k for item in items for k in item):
            values = [item.get(field) for item in items]
            kinds = [_kind(v) for v in values if v is not None]
            for i, value in enumerate(values):
                if value is not None and kinds and _kind(value) != kinds[0]:
                    raise VLConvertError(
                        f"{path}: {section}[{start + i}].{field} is {value!r}, but earlier entries hold {kinds[0]} values"
                    ) from exc
        raise VLConvertError(f"{path}: {section}[{start}:{start + len(items)}] cannot be read: {exc}") from exc


def _kind(value) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return {str: "string", dict: "object", list: "list"}.get(type(value), type(value).__name__)


def _conflict_between_chunks(chunks: list[pa.Table], starts: list[int], path: str, section: str) -> str | None:
    seen: dict[str, tuple[pa.DataType, int]] = {}
    for chunk, start in zip(chunks, starts):
        for column in chunk.schema:
            if pa.types.is_null(column.type):
                continue
            first_type, first_start = seen.setdefault(column.name, (column.type, start))
            if first_type != column.type and not (_numeric(first_type) and _numeric(column.type)):
                return (
                    f"{path}: {section}.{column.name} holds {first_type} values from {section}[{first_start}] "
                    f"but {column.type} values from {section}[{start}] on"
                )
    return None


def _numeric(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t)


def _spill(table: pa.Table, path: str) -> pa.Table:
    with pa.ipc.new_file(path, table.schema) as writer:
        writer.write_table(table)
    return pa.ipc.open_file(pa.memory_map(path)).read_all()
