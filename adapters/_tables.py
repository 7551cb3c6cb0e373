"""Tables for the generic adapters: reading CSV/TSV/Parquet/JSONL with pyarrow, and
the optional taxonomy table that gives a user's own classes ranks and names."""

from __future__ import annotations

import posixpath

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from vlconvert.errors import VLConvertError
from vlconvert.records import ClassInfo
from vlconvert.storage import NotARegularFile, filesystem, open_regular

from ._json_guard import check_json_file

RANKS = ("kingdom", "phylum", "class", "order", "family", "genus", "species")
_ALIASES = {"specific_epithet": "species", "scientific_name": "name"}
FORMATS = {".csv": "csv", ".tsv": "tsv", ".txt": "tsv", ".parquet": "parquet", ".pq": "parquet", ".jsonl": "json", ".json": "json"}


def read_table(fs, path: str, shown: str, text_columns: tuple[str, ...] = (), open_file=None) -> pa.Table:
    """A whole table by its extension.  ``text_columns`` of a CSV/TSV are read as text, so ids
    and labels such as "001" keep their leading zeros.  ``open_file(path)`` opens it (default: a
    regular file through ``fs``)."""
    opener = open_file or (lambda p: open_regular(fs, p))
    kind = FORMATS.get(posixpath.splitext(path)[1].lower())
    if kind is None:
        raise VLConvertError(f"{shown}: unknown table format; use one of {', '.join(sorted(FORMATS))}")
    try:
        with opener(path) as f:
            if kind == "parquet":
                return pq.read_table(f)
            if kind == "json":
                check_json_file(opener, path, shown)  # pyarrow's reader crashes the process on deep nesting
                return pa_json.read_json(f)
            options = pa_csv.ParseOptions(delimiter="\t" if kind == "tsv" else ",")
            convert = pa_csv.ConvertOptions(column_types={c: pa.string() for c in text_columns})
            table = pa_csv.read_csv(f, parse_options=options, convert_options=convert)
        # pyarrow reads a text column that is not UTF-8 as bytes; its values would become "b'...'".
        if any(pa.types.is_binary(t) or pa.types.is_large_binary(t) for t in table.schema.types):
            raise VLConvertError(f"{shown}: {_first_bad_utf8(opener, path)}; save it as UTF-8")
        return table
    except FileNotFoundError:
        raise VLConvertError(f"{shown}: not found") from None
    except (NotARegularFile, IsADirectoryError) as exc:
        raise VLConvertError(f"{shown}: {exc.strerror}; not read") from None
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as exc:
        if "invalid UTF8" in str(exc):
            raise VLConvertError(f"{shown}: {_first_bad_utf8(opener, path)}; save it as UTF-8") from None
        raise VLConvertError(f"{shown}: cannot be read as {kind}: {exc}") from None


def _first_bad_utf8(opener, path: str) -> str:
    """Where a table stops being UTF-8, so the user can find and fix the row."""
    with opener(path) as f:
        for number, line in enumerate(f, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as exc:
                return f"line {number} is not UTF-8 (byte 0x{line[exc.start]:02X} at column {exc.start + 1})"
    return "not UTF-8"


def pick_column(table: pa.Table, wanted: str | None, candidates: tuple[str, ...], option: str, shown: str, required: bool = True):
    if wanted:
        if wanted not in table.column_names:
            columns = ", ".join(table.column_names)
            raise VLConvertError(f"{shown}: has no column {wanted!r} (from --option {option}); its columns: {columns}")
        return wanted
    found = next((c for c in candidates if c in table.column_names), None)
    if found is None and required:
        raise VLConvertError(
            f"{shown}: no {option.removesuffix('_column')} column; name one with --option {option}=NAME "
            f"(looked for {', '.join(candidates)}; found {', '.join(table.column_names)})"
        )
    return found


KEY_COLUMNS = ("folder", "class", "label", "key")


def classes_from_keys(keys: list[str], taxonomy: pa.Table | None, key_column: str | None, shown: str) -> list[ClassInfo]:
    """One class per key (a folder or label value), in the given order, enriched from the taxonomy table."""
    rows: dict[str, dict] = {}
    if taxonomy is not None:
        key_column = pick_column(taxonomy, key_column, KEY_COLUMNS, "taxonomy_key", shown)
        for row in taxonomy.to_pylist():
            rows[str(row.pop(key_column))] = {_ALIASES.get(k, k): v for k, v in row.items() if v not in (None, "")}
    classes = []
    for label, key in enumerate(keys):
        row = dict(rows.get(key, {}))
        name = str(row.pop("name", key))
        common = str(row.pop("common_name", ""))
        taxonomy_pairs = tuple((rank, str(row.pop(rank))) for rank in RANKS if rank in row)
        classes.append(ClassInfo(label, name, common, taxonomy_pairs, {**row, "class_key": key}))
    return classes


def read_taxonomy(path: str | None, key_column: str | None) -> pa.Table | None:
    """The optional taxonomy table of imagefolder and table, its key column read as text."""
    if not path:
        return None
    fs, local = filesystem(path, "--option taxonomy")
    return read_table(fs, local, path, KEY_COLUMNS + ((key_column,) if key_column else ()))
