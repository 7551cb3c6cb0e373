"""Red team, issue 16: the Parquet shard tables, read_tables/reshard, dedup (the command and --dedup), class
balancing, the dataset card and wids index, and the caption_<template> JSON keys, attacked as a careless or
hostile user would.

Each test that fails names a hole; each that passes is an attack that held.  Kills are simulated in process
(an exception raised at the exact step a kill -9 would interrupt), so the state left behind is the same as
a real kill's and the test is deterministic.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from command import run
from inat_layout import make_inat_root, read_json

sys.path.insert(0, str(Path(__file__).resolve().parent / "pipeline"))
from test_dedup import field, planted_root  # noqa: E402  (tests/pipeline is not on the path for this file)

import vlconvert  # noqa: E402
from vlconvert import VLConvertError  # noqa: E402
from vlconvert.pipeline import dedup_parts, ledger  # noqa: E402
from vlconvert.pipeline.near_duplicates import duplicates_to_drop, matches_in  # noqa: E402
from vlconvert.readback.validate import validate  # noqa: E402
from vlconvert.records import ClassInfo, Record, Rejected  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def tree(out: Path) -> dict[str, str]:
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.rglob("*")) if p.is_file()}


def differing(a: Path, b: Path) -> list[str]:
    ta, tb = tree(a), tree(b)
    return sorted(k for k in set(ta) | set(tb) if ta.get(k) != tb.get(k))


def one_line_exit_2(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    # `vlconvert build` prints its progress on stderr too; the error itself is one line
    errors = [line for line in result.stderr.splitlines() if line.lower().startswith("error")]
    assert len(errors) == 1 and result.stderr.rstrip().splitlines()[-1] == errors[0], result.stderr


def field_root(path: Path, per_class=None) -> Path:
    root = make_inat_root(path, per_class=per_class or {"train": 3, "val": 1})
    for n, image in enumerate(sorted(root.rglob("*.jpg"))):
        field(n).save(image, quality=90)
    return root


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    """A complete build of distinct images (36 train, 12 val, shards of 10) and its dataset root."""
    base = tmp_path_factory.mktemp("rt16-plain")
    root = field_root(base / "inat")
    vlconvert.build("inat2021", str(root), str(base / "out"), shard_size=10)
    vlconvert.build("inat2021", str(root), str(base / "eval"), splits=["val"])
    return root, base / "out", base / "eval"


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """Four planted copies of val images in train, and the uninterrupted --dedup build of it (shards of 5)."""
    base = tmp_path_factory.mktemp("rt16-planted")
    root, copies = planted_root(base / "inat")
    vlconvert.build("inat2021", str(root), str(base / "reference"), dedup=True, shard_size=5)
    return root, copies, base / "reference"


def copy_of(out: Path, to: Path) -> Path:
    shutil.copytree(out, to, symlinks=True)
    return to


# ====================================================================== holes: resuming a --dedup build


def test_a_dedup_build_killed_after_a_rewritten_task_committed_resumes_to_the_same_bytes(planted, tmp_path, monkeypatch):
    """kill -9 in the rewrite step, after the first rewritten task's ledger entry was committed again.
    The rerun lists that task's drops (from the ledger) after the ones it finds anew, so duplicates.jsonl and the
    manifest differ from an uninterrupted build's (dedup_parts.py: ``found.findings += ...`` appends them)."""
    root, _, reference = planted
    out = tmp_path / "out"
    real_commit = ledger.commit
    commits = []

    def commit_then_die(fs, out_path, result):
        real_commit(fs, out_path, result)
        commits.append(result.index)
        raise KeyboardInterrupt  # the process dies right after the first rewritten task is committed

    monkeypatch.setattr(ledger, "commit", commit_then_die)  # only dedup_parts calls it through the module
    with pytest.raises(KeyboardInterrupt):
        vlconvert.build("inat2021", str(root), str(out), dedup=True, shard_size=5)
    monkeypatch.undo()
    assert commits and read_json(out / "manifest.json")["status"] == "in_progress"

    vlconvert.build("inat2021", str(root), str(out), dedup=True, shard_size=5)
    assert differing(out, reference) == []


def test_a_dedup_build_killed_while_naming_its_shards_resumes(planted, tmp_path, monkeypatch):
    """kill -9 after the train parts got their final names (the ledger still there): the rerun's dedup step opens
    the parts' ``_done-`` tables, which are gone, and fails with FileNotFoundError on every rerun, so the build can
    never be finished (dedup_parts.py _split_table reads ledger.table_path(info.path); finish_split had renamed it).
    A build without --dedup resumes from the same state (tests/pipeline/test_resume.py)."""
    root, _, reference = planted
    out = tmp_path / "out"
    import vlconvert.format as output_format

    def die(*args, **kwargs):
        raise KeyboardInterrupt  # after finish_split("train") renamed every train part

    monkeypatch.setattr(output_format, "write_wids_index", die)
    with pytest.raises(KeyboardInterrupt):
        vlconvert.build("inat2021", str(root), str(out), dedup=True, shard_size=5)
    monkeypatch.undo()
    assert (out / "train" / "train-000000.tar").exists() and (out / "_progress").exists()

    vlconvert.build("inat2021", str(root), str(out), dedup=True, shard_size=5)  # FileNotFoundError, on every rerun
    assert differing(out, reference) == []


def test_a_dedup_build_killed_in_its_first_rewrite_resumes_to_the_same_bytes(planted, tmp_path, monkeypatch):
    """Held: killed between moving the first rewritten tar over its part and moving its table, before any
    ledger entry changed: the part's size no longer matches the ledger, the task is done again."""
    root, _, reference = planted
    out = tmp_path / "out"
    real = dedup_parts._rewrite_part

    class DiesMovingTheTable:
        def __init__(self, fs):
            self.fs = fs

        def __getattr__(self, name):
            return getattr(self.fs, name)

        def mv(self, source, target):
            if target.endswith(ledger.TABLE_SUFFIX):
                raise KeyboardInterrupt
            self.fs.mv(source, target)

    monkeypatch.setattr(dedup_parts, "_rewrite_part", lambda fs, *args: real(DiesMovingTheTable(fs), *args))
    with pytest.raises(KeyboardInterrupt):
        vlconvert.build("inat2021", str(root), str(out), dedup=True, shard_size=5)
    monkeypatch.undo()
    vlconvert.build("inat2021", str(root), str(out), dedup=True, shard_size=5)
    assert differing(out, reference) == []


@pytest.mark.slow
def test_a_wrong_dedup_against_is_refused_before_any_image_is_converted(plain, tmp_path):
    """--dedup-against is first read in finish(), after every shard was converted: a typo costs the whole
    conversion, and since the path is in the resume key, the corrected command cannot resume it either
    (finish.py calls drop_duplicates -> read_tables(other); nothing checks it in build.check())."""
    root, _, evaluation = plain
    out = tmp_path / "out"
    typo = run("build", "--adapter", "inat2021", "--root", str(root), "--out", str(out), "--dedup-against", str(tmp_path / "evl"))
    one_line_exit_2(typo)
    converted = list(out.rglob("*.part")) + list(out.rglob("*.tar")) if out.exists() else []
    assert converted == [], f"{len(converted)} parts converted before the typo was noticed"
    fixed = run("build", "--adapter", "inat2021", "--root", str(root), "--out", str(out), "--dedup-against", str(evaluation))
    assert fixed.returncode == 0, fixed.stderr


def test_dedup_against_the_build_being_written_is_refused_up_front(plain, tmp_path):
    root, _, _ = plain
    out = tmp_path / "out"
    result = run("build", "--adapter", "inat2021", "--root", str(root), "--out", str(out), "--dedup-against", str(out))
    one_line_exit_2(result)
    assert not list(out.rglob("*.part")), "every image was converted before --dedup-against was looked at"


# ====================================================================== holes: vlconvert dedup / reshard


def test_dedup_report_never_overwrites_the_build_it_reads(plain, tmp_path):
    """`vlconvert dedup OUT --report OUT/manifest.json` replaces the build's manifest with the (empty) report:
    OUT is no longer a build, and --overwrite then refuses to delete it (cli/dedup.py opens --report blindly)."""
    _, out, _ = plain
    victim = copy_of(out, tmp_path / "victim")
    before = (victim / "manifest.json").read_bytes()
    result = run("dedup", str(victim), "--report", str(victim / "manifest.json"))
    assert (victim / "manifest.json").read_bytes() == before, "the build's manifest was overwritten by the report"
    one_line_exit_2(result)


def test_an_unwritable_report_is_a_one_line_exit_2_before_the_copy_is_written(plain, tmp_path):
    """--report into a missing folder: exit 1, raw errno, and only after NEW_OUT was written in full
    (cli/dedup.py opens the report after dedup() returns)."""
    _, out, _ = plain
    result = run("dedup", str(out), "--out", str(tmp_path / "clean"), "--report", str(tmp_path / "no" / "such" / "r.jsonl"))
    one_line_exit_2(result)
    assert not (tmp_path / "clean").exists()


def test_into_the_against_build_is_refused_even_with_overwrite(plain, tmp_path):
    """`vlconvert dedup TRAIN --against EVAL --into EVAL --overwrite` replaces the evaluation set it was asked to
    protect with a copy of TRAIN (reshard checks NEW_OUT only against OUT, not against --against)."""
    _, out, evaluation = plain
    protected = copy_of(evaluation, tmp_path / "eval")
    before = tree(protected)
    result = run("dedup", str(out), "--against", str(protected), "--out", str(protected), "--overwrite")
    assert tree(protected) == before, "the --against evaluation build was deleted and replaced"
    one_line_exit_2(result)


@pytest.mark.parametrize("mutation", ["reorder", "caption", "duplicate-row"])
def test_a_table_changed_since_the_build_is_refused_not_copied(plain, tmp_path, mutation):
    """read_tables() never compares a table with the manifest's sha256 (build_tables.py read_table), so dedup and
    reshard work from a tampered table and launder it: the new build records the tampered table's sha256 and
    `vlconvert validate` then passes it, though validate of the source flags the table."""
    _, out, _ = plain
    source = copy_of(out, tmp_path / "source")
    table_path = source / "train" / "train-000000.parquet"
    table = pq.read_table(table_path)
    if mutation == "reorder":
        table = table.take(list(range(table.num_rows))[::-1])
    elif mutation == "caption":
        table = table.set_column(table.schema.get_field_index("caption"), "caption", pa.array(["EVIL"] * table.num_rows))
    else:
        table = pa.concat_tables([table, table.slice(0, 1)])
    pq.write_table(table, table_path)
    assert not validate(str(source)).ok  # the source's own check sees it
    result = run("dedup", str(source), "--out", str(tmp_path / "clean"))
    one_line_exit_2(result)
    assert "train-000000.parquet" in result.stderr


@pytest.mark.parametrize("mutation", ["key-as-int", "phash-not-hex", "phash-null"])
def test_a_table_with_wrong_column_types_is_one_line_not_a_traceback(plain, tmp_path, mutation):
    """A table whose key column is int64, or whose phash is not 16 hex digits: pyarrow's ArrowTypeError in
    concat_tables (build_tables.py) or int(..., 16) in image_hashes.from_hex: exit 1 with a traceback."""
    _, out, _ = plain
    source = copy_of(out, tmp_path / "source")
    table_path = source / "train" / "train-000000.parquet"
    table = pq.read_table(table_path)
    if mutation == "key-as-int":
        table = table.set_column(0, "key", pa.array(range(table.num_rows)))
    else:
        values = ["xyz"] * table.num_rows if mutation == "phash-not-hex" else pa.array([None] * table.num_rows, pa.string())
        table = table.set_column(table.schema.get_field_index("phash"), "phash", pa.array(values, pa.string()))
    pq.write_table(table, table_path)
    one_line_exit_2(run("dedup", str(source), "--out", str(tmp_path / "clean")))


def test_a_reshard_of_a_dedup_build_keeps_the_list_of_its_duplicates(planted, tmp_path):
    """The --dedup build's manifest says 4 deduplicated and names duplicates.jsonl; reshard copies neither the
    file (reshard.py _COPIED lacks DUPLICATES) yet keeps the count and the manifest's dedup entry naming it."""
    _, copies, reference = planted
    new = tmp_path / "copy"
    vlconvert.reshard(str(reference), vlconvert.read_tables(str(reference)), str(new))
    manifest = read_json(new / "manifest.json")
    assert manifest["splits"]["train"]["deduplicated"] == len(copies)
    assert (new / manifest["dedup"]["file"]).exists(), "the manifest's dedup entry names a file the build lacks"


def test_dedup_into_of_a_dedup_build_still_lists_every_deduplicated_sample(planted, tmp_path):
    """`vlconvert dedup` of a --dedup build writes a new duplicates.jsonl listing only what it found now (nothing),
    while the split still counts the build's 4 deduplicated samples: they are no longer listed anywhere."""
    _, copies, reference = planted
    new = tmp_path / "clean"
    assert run("dedup", str(reference), "--out", str(new)).returncode == 0
    manifest = read_json(new / "manifest.json")
    listed = [json.loads(line) for line in (new / "duplicates.jsonl").read_text().splitlines()]
    dropped = sum(1 for entry in listed if entry["dropped"])
    assert dropped == sum(a["deduplicated"] for a in manifest["splits"].values()) == len(copies)


def test_a_derived_build_has_its_dataset_card_and_wids_indexes(plain, tmp_path):
    """Every build gets README.md (the Hub card) and <split>/<split>.wids.json; reshard and dedup --into write
    neither, so the derived build does not load with datasets.load_dataset(NEW) by its card or with wids."""
    _, out, _ = plain
    new = tmp_path / "copy"
    vlconvert.reshard(str(out), vlconvert.read_tables(str(out)), str(new))
    manifest = read_json(new / "manifest.json")
    assert (new / "README.md").exists() and "README.md" in manifest["files"]
    assert (new / "train" / "train.wids.json").exists() and "train/train.wids.json" in manifest["files"]


def test_a_derived_build_counts_the_image_members_it_holds(plain, tmp_path):
    """reshard keeps the source split's image_members ({**account, ...} in reshard.py): 5 samples written,
    image_members says {"jpg": 36}."""
    _, out, _ = plain
    new = tmp_path / "copy"
    rows = vlconvert.read_tables(str(out), ["train"]).slice(0, 5)
    manifest = vlconvert.reshard(str(out), rows, str(new))
    for split, account in manifest["splits"].items():
        assert sum(account.get("image_members", {}).values()) == account["written"], (split, account["image_members"])


def test_read_tables_of_an_empty_split_has_the_same_columns_and_types(plain, tmp_path):
    """read_tables() of a split without shards returns only key and split, as strings (build_tables.py), so a
    filter on label, or the shard/position columns documented for every result, fails only when a split is empty
    (every training image deduplicated, say)."""
    _, out, _ = plain
    empty = tmp_path / "empty"
    vlconvert.reshard(str(out), {}, str(empty))
    full = vlconvert.read_tables(str(out), ["train"])
    none = vlconvert.read_tables(str(empty), ["train"])
    assert none.num_rows == 0
    assert none.schema == full.schema
    typed = vlconvert.read_tables(str(empty), ["train"], columns=["label"])
    assert typed.schema.field("label").type == pa.int32()


@pytest.mark.parametrize("selection", ["list-of-keys", "chunked-array", "pandas-none-key"])
def test_a_selection_of_another_shape_is_a_one_line_error_or_works(plain, tmp_path, selection):
    """A list of keys: pyarrow's ValueError; {split: table.column("key")}: every key refused as
    '<pyarrow.StringScalar ...>'; a pandas frame with a missing key: TypeError from sorted() (reshard.py)."""
    import pandas as pd

    _, out, _ = plain
    rows = vlconvert.read_tables(str(out), ["train"]).slice(0, 3)
    if selection == "list-of-keys":
        chosen = rows.column("key").to_pylist()
    elif selection == "chunked-array":
        chosen = {"train": rows.column("key")}
    else:
        chosen = pd.DataFrame({"split": ["train", "train"], "key": ["no-such-key", None]})
    try:
        manifest = vlconvert.reshard(str(out), chosen, str(tmp_path / "new"))
    except VLConvertError as exc:
        assert "\n" not in str(exc)
        assert "StringScalar" not in str(exc)
        return
    assert manifest["splits"]["train"]["written"] == 3


def test_read_tables_blames_a_wrong_column_name_not_the_table(plain):
    """A typo in columns= is reported as '<table>: cannot read this table (No match for FieldRef...)' over many
    lines, as if the build were damaged (build_tables.py read_table)."""
    _, out, _ = plain
    with pytest.raises(VLConvertError) as caught:
        vlconvert.read_tables(str(out), columns=["lable"])
    message = str(caught.value)
    assert "lable" in message and "cannot read this table" not in message and "\n" not in message


def test_an_interrupted_dedup_into_says_how_to_finish_it(plain, tmp_path, monkeypatch):
    """A `vlconvert dedup --into` killed mid-copy leaves NEW_OUT claimed; the rerun says 'rerun without --no-resume
    to finish it', an option dedup does not have (and rerunning says it again): only --overwrite works."""
    _, out, _ = plain
    import vlconvert.readback.reshard as reshard_module

    def die(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(reshard_module, "_copy_split", die)
    with pytest.raises(KeyboardInterrupt):
        vlconvert.reshard(str(out), vlconvert.read_tables(str(out)), str(tmp_path / "clean"))
    monkeypatch.undo()
    again = run("dedup", str(out), "--out", str(tmp_path / "clean"))
    if again.returncode == 0:
        return  # resumed or redone: fine
    one_line_exit_2(again)
    assert "--no-resume" not in again.stderr


@pytest.mark.parametrize("where", ["source", "inside", "parent"])
def test_into_errors_name_into_not_out(plain, where):
    """The refusal says '--out ... is the dataset folder ...' (output_folder.check_apart's build wording): the
    user typed --into, and OUT is a build, not a dataset."""
    _, out, _ = plain
    into = {"source": out, "inside": out / "train" / "x", "parent": out.parent}[where]
    result = run("dedup", str(out), "--out", str(into))
    one_line_exit_2(result)
    assert "--out" in result.stderr and "dataset folder" not in result.stderr


def test_two_dedups_into_the_same_folder_at_once_leave_one_owner(plain, tmp_path, monkeypatch):
    """Both runs see an empty NEW_OUT before either claims it.  Before the claim was exclusive both went on to write
    the same _tmp- parts (with two real processes, about one start in six ended in exit 1, '[Errno 2] No such file
    or directory: .../_tmp-000000-000.part').  Here the two claims are made to meet, so the race is certain."""
    _, out, _ = plain
    import vlconvert.pipeline.output_folder as output_folder

    real_claim = output_folder.write_exclusive
    meet = threading.Barrier(2, timeout=10)

    def claim(fs, path, data):
        try:
            meet.wait()  # both have found the folder empty; now both claim it
        except threading.BrokenBarrierError:
            pass
        return real_claim(fs, path, data)

    monkeypatch.setattr(output_folder, "write_exclusive", claim)
    rows = vlconvert.read_tables(str(out))
    outcomes: list[object] = [None, None]

    def one(i):
        try:
            vlconvert.reshard(str(out), rows, str(tmp_path / "clean"))
            outcomes[i] = "ok"
        except Exception as exc:  # noqa: BLE001
            outcomes[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    monkeypatch.undo()
    assert sorted(map(type, outcomes), key=str) == sorted([str, VLConvertError], key=str), outcomes
    assert validate(str(tmp_path / "clean")).ok


def test_overwrite_keeps_a_readme_the_manifest_does_not_list(plain, tmp_path):
    """README.md is now a name a build writes (output_folder._OWN_FILES), so --overwrite deletes any README.md in a
    build folder, also a user's notes in a build from before cards, whose manifest lists no README.md."""
    root, out, _ = plain
    old = copy_of(out, tmp_path / "old")
    manifest = read_json(old / "manifest.json")
    for name in ("README.md", "errors.parquet"):
        manifest["files"].pop(name)
    (old / "manifest.json").write_text(json.dumps(manifest, indent=2))
    (old / "README.md").write_text("# my notes on this run\n")
    assert validate(str(old)).ok
    result = run("build", "--adapter", "inat2021", "--root", str(root), "--out", str(old), "--shard-size", "10", "--overwrite")
    if result.returncode == 0:
        assert (old / "README.md").read_text() == "# my notes on this run\n", "--overwrite deleted the user's README.md"
    else:
        one_line_exit_2(result)
        assert (old / "README.md").read_text() == "# my notes on this run\n"


def test_the_dedup_method_page_the_help_points_to_exists():
    """`vlconvert build --help`, `vlconvert dedup --help`, README.md, output-format.md and python-api.md all send the
    reader to docs/dedup.md, which does not exist."""
    assert (REPO / "docs" / "dedup.md").is_file()


def test_json_text_key_caption_template_is_refused(plain):
    """caption_template holds the template's name ("taxonomic_common"), not a caption; check_keys accepts any
    string key, so `lit-train --json-text-key caption_template` trains every sample on the template name
    (caption_keys.py: is_caption_key knows it is no caption, check_keys does not use that)."""
    from vlconvert.lit.caption_keys import caption_choice, check_keys

    _, out, _ = plain
    with pytest.raises(VLConvertError, match="caption_template"):
        check_keys(str(out), "train", caption_choice(json_text_key="caption_template"))


# ====================================================================== attacks that held


@pytest.mark.slow
@pytest.mark.parametrize("where", ["source", "inside", "parent", "link", "dataset", "file"])
def test_held_into_a_place_it_may_not_write_is_refused_and_the_source_is_untouched(plain, tmp_path, where):
    root, out, _ = plain
    before = tree(out)
    link = tmp_path / "link"
    link.symlink_to(out)
    stray = tmp_path / "notes.txt"
    stray.write_text("x")
    into = {"source": out, "inside": out / "train", "parent": out.parent, "link": link, "dataset": root, "file": stray}[where]
    for overwrite in ((), ("--overwrite",)):
        one_line_exit_2(run("dedup", str(out), "--out", str(into), *overwrite))
    assert tree(out) == before and stray.read_text() == "x"
    assert (root / "train.json").exists()


@pytest.mark.slow
@pytest.mark.parametrize("against", ["missing", "not-a-build", "in-progress", "no-tables", "a-file"])
def test_held_against_what_is_not_a_usable_build_is_one_line(plain, tmp_path, against):
    root, out, evaluation = plain
    if against == "missing":
        other = tmp_path / "nowhere"
    elif against == "not-a-build":
        other = root
    elif against == "a-file":
        other = root / "val.json"
    elif against == "in-progress":
        other = copy_of(evaluation, tmp_path / "other")
        (other / "manifest.json").write_text(json.dumps({**read_json(other / "manifest.json"), "status": "in_progress",
                                                         "resume_key": "0" * 64}))
    else:
        other = copy_of(evaluation, tmp_path / "other")
        manifest = read_json(other / "manifest.json")
        for account in manifest["splits"].values():
            for shard in account["shards"]:
                shard.pop("table")
        (other / "manifest.json").write_text(json.dumps(manifest))
    result = run("dedup", str(out), "--against", str(other), "--out", str(tmp_path / "clean"))
    one_line_exit_2(result)
    assert not (tmp_path / "clean").exists()


@pytest.mark.slow
def test_held_against_itself_drops_every_training_sample_and_the_copy_validates(plain, tmp_path):
    _, out, _ = plain
    result = run("dedup", str(out), "--against", str(out), "--threshold", "0", "--out", str(tmp_path / "clean"))
    assert result.returncode == 0, result.stderr
    manifest = read_json(tmp_path / "clean" / "manifest.json")
    train = manifest["splits"]["train"]
    assert train["written"] == 0 and train["deduplicated"] == train["read"] == 36 and train["shards"] == []
    assert validate(str(tmp_path / "clean")).ok
    inspected = run("inspect", str(tmp_path / "clean"))
    assert inspected.returncode == 0 and "Traceback" not in inspected.stderr


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["truncated", "fifo", "dev-zero-link", "folder", "missing", "no-key-column"])
def test_held_a_damaged_table_is_one_line_and_never_blocks(plain, tmp_path, damage):
    _, out, _ = plain
    source = copy_of(out, tmp_path / "source")
    table = source / "val" / "val-000000.parquet"
    if damage == "truncated":
        table.write_bytes(table.read_bytes()[:200])
    elif damage == "no-key-column":
        pq.write_table(pq.read_table(table).drop_columns(["key"]), table)
    else:
        table.unlink()
        if damage == "fifo":
            os.mkfifo(table)
        elif damage == "dev-zero-link":
            table.symlink_to("/dev/zero")
        elif damage == "folder":
            table.mkdir()
    result = run("dedup", str(source), "--out", str(tmp_path / "clean"))
    one_line_exit_2(result)
    assert "val-000000.parquet" in result.stderr
    if damage != "no-key-column":  # that one is a hole: test_read_tables_of_a_table_without_a_column_is_refused
        with pytest.raises(VLConvertError):
            vlconvert.read_tables(str(source))


def test_read_tables_of_a_table_without_a_column_is_refused(plain, tmp_path):
    """A table that lost its key column (or any other) is read as nulls: concat_tables(promote_options="default")
    in build_tables.py fills the missing column, and no sha256 is compared, so read_tables() returns val rows with
    key None, which reshard then reports as 'no written sample with key None'."""
    _, out, _ = plain
    source = copy_of(out, tmp_path / "source")
    table = source / "val" / "val-000000.parquet"
    pq.write_table(pq.read_table(table).drop_columns(["key", "label"]), table)
    try:
        rows = vlconvert.read_tables(str(source))
    except VLConvertError as exc:
        assert "val-000000.parquet" in str(exc)
        return
    assert rows.column("key").null_count == 0 and rows.column("label").null_count == 0


def test_held_a_table_key_the_tar_lacks_fails_before_a_wrong_copy(plain, tmp_path):
    _, out, _ = plain
    source = copy_of(out, tmp_path / "source")
    path = source / "train" / "train-000000.parquet"
    table = pq.read_table(path)
    keys = table.column("key").to_pylist()
    keys[0] = "not_in_the_tar"
    pq.write_table(table.set_column(0, "key", pa.array(keys)), path)
    result = run("dedup", str(source), "--out", str(tmp_path / "clean"))
    one_line_exit_2(result)
    clean = tmp_path / "clean" / "manifest.json"  # never a complete build with a sample missing
    assert not clean.exists() or read_json(clean)["status"] != "complete"


@pytest.mark.parametrize("selection", ["wrong-columns", "unknown-key", "other-split-key", "unknown-split"])
def test_held_a_wrong_selection_is_one_line_and_claims_nothing(plain, tmp_path, selection):
    _, out, _ = plain
    rows = vlconvert.read_tables(str(out))
    val_key = rows.filter(pc.equal(rows["split"], "val"))["key"][0].as_py()
    chosen = {"wrong-columns": pa.table({"id": ["1"]}), "unknown-key": {"train": ["nope"]},
              "other-split-key": {"train": [val_key]}, "unknown-split": {"test": ["x"]}}[selection]
    with pytest.raises(VLConvertError) as caught:
        vlconvert.reshard(str(out), chosen, str(tmp_path / "new"))
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("selection", ["empty-dict", "empty-table", "pandas", "pandas-query"])
def test_held_empty_and_pandas_selections_make_valid_builds_whose_counts_reconcile(plain, tmp_path, selection):
    _, out, _ = plain
    rows = vlconvert.read_tables(str(out))
    chosen = {"empty-dict": {}, "empty-table": rows.slice(0, 0), "pandas": rows.to_pandas().head(7),
              "pandas-query": rows.to_pandas().query("label == 3")}[selection]
    manifest = vlconvert.reshard(str(out), chosen, str(tmp_path / "new"), shard_size=3)
    for account in manifest["splits"].values():
        assert account["read"] == account["written"] + account["errored"] + account["held_out"] + account["capped"] \
            + account["deduplicated"] + account["filtered"]
        assert all(s["samples"] <= 3 for s in account["shards"])
    assert validate(str(tmp_path / "new")).ok


@pytest.mark.slow
def test_held_thresholds_0_and_32_and_out_of_range_values(plain, tmp_path):
    _, out, _ = plain
    for threshold in ("0", "32"):
        result = run("dedup", str(out), "--threshold", threshold, "--out", str(tmp_path / threshold))
        assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
        assert validate(str(tmp_path / threshold)).ok
    for bad in ("-1", "33", "99999999999999999999999", "8.5"):
        result = run("dedup", str(out), "--threshold", bad)
        assert result.returncode == 2 and "Traceback" not in result.stderr
    root = plain[0]
    result = run("build", "--adapter", "inat2021", "--root", str(root), "--out", str(tmp_path / "b"), "--dedup",
                 "--dedup-threshold", "4294967296")
    assert result.returncode == 2 and "Traceback" not in result.stderr and not (tmp_path / "b").exists()
    with pytest.raises(VLConvertError):
        vlconvert.build("inat2021", str(root), str(tmp_path / "c"), dedup=True, dedup_threshold=10**30)


@pytest.mark.parametrize("threshold", [0, 1, 8, 20, 32, 63, 64])
def test_held_the_near_duplicate_search_equals_brute_force(threshold):
    rng = np.random.default_rng(threshold)
    centres = rng.integers(0, 2**63, size=6, dtype=np.uint64) * np.uint64(2) + rng.integers(0, 2, 6, dtype=np.uint64)

    def hashes(n):
        out = centres[rng.integers(0, 6, size=n)].copy()
        for i in range(n):
            for bit in rng.choice(64, size=int(rng.integers(0, 36)), replace=False):
                out[i] ^= np.uint64(1) << np.uint64(bit)
        return out

    h, q = hashes(150), hashes(90)
    d = np.bitwise_count(h[:, None] ^ h[None, :])
    expected = {}
    for i in range(len(h)):
        earlier = [j for j in range(i) if d[i, j] <= threshold]
        if earlier:
            expected[i] = (earlier[0], int(d[i, earlier[0]]))
    drop, twin, dist = duplicates_to_drop(h, threshold)
    assert {int(i): (int(j), int(x)) for i, j, x in zip(drop, twin, dist)} == expected
    dq = np.bitwise_count(q[:, None] ^ h[None, :])
    expected_matches = {}
    for i in range(len(q)):
        within = [j for j in range(len(h)) if dq[i, j] <= threshold]
        if within:
            best = min(within, key=lambda j: (dq[i, j], j))
            expected_matches[i] = (best, int(dq[i, best]))
    qi, bj, dist = matches_in(q, h, threshold)
    assert {int(i): (int(j), int(x)) for i, j, x in zip(qi, bj, dist)} == expected_matches


@pytest.mark.slow
def test_held_a_build_whose_every_training_image_is_a_duplicate(tmp_path):
    root = field_root(tmp_path / "inat", {"train": 1, "val": 1})
    for train, val in zip(sorted(root.rglob("train-*.jpg")), sorted(root.rglob("val-*.jpg"))):
        train.write_bytes(val.read_bytes())
    out = tmp_path / "out"
    result = run("build", "--adapter", "inat2021", "--root", str(root), "--out", str(out), "--dedup")
    assert result.returncode == 0, result.stderr
    manifest = read_json(out / "manifest.json")
    train = manifest["splits"]["train"]
    assert train["written"] == 0 and train["deduplicated"] == train["read"] == 12 and train["shards"] == []
    assert not list((out / "train").glob("*.tar")) and not (out / "train" / "train.wids.json").exists()
    assert "train/*.tar" not in (out / "README.md").read_text()
    assert validate(str(out)).ok
    for command in (("validate", str(out)), ("inspect", str(out)), ("dedup", str(out), "--out", str(tmp_path / "again"))):
        result = run(*command)
        assert result.returncode == 0 and "Traceback" not in result.stderr, (command, result.stderr)
    assert vlconvert.read_tables(str(out), ["train"]).num_rows == 0


@pytest.mark.slow
def test_held_dedup_with_holdout_and_balance_reconciles_and_is_deterministic(planted, tmp_path):
    root, _, _ = planted
    options = dict(dedup=True, holdout_classes="0.25", max_per_class=3, shard_size=4)
    vlconvert.build("inat2021", str(root), str(tmp_path / "one"), workers=1, **options)
    vlconvert.build("inat2021", str(root), str(tmp_path / "two"), workers=2, **options)
    assert differing(tmp_path / "one", tmp_path / "two") == []
    manifest = read_json(tmp_path / "one" / "manifest.json")
    for account in manifest["splits"].values():
        assert account["read"] == account["written"] + account["errored"] + account["held_out"] + account["capped"] \
            + account["deduplicated"]
    assert manifest["splits"]["train"]["held_out"] and manifest["splits"]["train"]["capped"]
    assert validate(str(tmp_path / "one")).ok


@pytest.mark.slow
def test_held_validate_passes_resharded_and_deduplicated_builds(planted, plain, tmp_path):
    _, copies, reference = planted
    assert validate(str(reference)).ok
    _, out, evaluation = plain
    assert run("dedup", str(out), "--against", str(evaluation), "--out", str(tmp_path / "clean")).returncode == 0
    assert validate(str(tmp_path / "clean")).ok
    assert run("validate", str(tmp_path / "clean")).returncode == 0


@pytest.mark.slow
@pytest.mark.parametrize("name", ["template", "my template", "ünïcode", "a.b", "..", " "])
def test_held_odd_template_file_names_are_one_line(plain, tmp_path, name):
    root, _, _ = plain
    template = tmp_path / f"{name}.j2"
    template.write_text("{{ name }}")
    result = run("build", "--adapter", "inat2021", "--root", str(root), "--out", str(tmp_path / "out"),
                 "--template", "taxonomic_common", "--template", str(template))
    one_line_exit_2(result)
    assert not (tmp_path / "out").exists()


class SurrogateAdapter:
    """Names that were not UTF-8 (a lone surrogate, as Python decodes them) in sources, classes and rejections."""

    name = "surrogates"
    description = "lone surrogates"

    @staticmethod
    def jpeg(seed: int) -> bytes:
        data = io.BytesIO()
        field(seed).save(data, "JPEG", quality=90)
        return data.getvalue()

    def classes(self):
        return [ClassInfo(0, "Genus spe\udcffcies", "comm\udcfeon"), ClassInfo(1, "Other one")]

    def splits(self):
        return ["train", "val"]

    def records(self, split):
        if split == "val":
            return [Record(f"v{i}", self.jpeg(i), i % 2, "val", {"note": "m\udcff"}, source=f"val/\udcff{i}.jpg") for i in range(4)]
        return [*(Record(f"t{i}", self.jpeg(100 + i), i % 2, "train", source=f"train/\udcfe{i}.jpg") for i in range(6)),
                Record("tdup", self.jpeg(0), 0, "train", source="train/dup\udcfd.jpg"),
                Record("tbad", b"junk", 0, "train", source="train/bad\udcfc.jpg")]

    def rejected(self, split):
        return [Rejected(split, "r1", "rej\udcfb", "bad row \udcfa")]


def test_held_lone_surrogates_reach_the_tables_escaped(tmp_path):
    out = tmp_path / "out"
    summary = vlconvert.build(SurrogateAdapter(), "", str(out), dedup=True)
    assert summary.splits["train"].deduplicated == 1 and summary.splits["train"].errored == 2
    rows = vlconvert.read_tables(str(out))
    assert "Genus spe\\udcffcies" in rows.column("class_name").to_pylist()
    errors = pq.read_table(out / "errors.parquet").to_pylist()
    assert {"rej\\udcfb", "train/bad\\udcfc.jpg"} <= {e["source"] for e in errors}
    (out / "duplicates.jsonl").read_text(encoding="utf-8")
    assert validate(str(out)).ok
    vlconvert.reshard(str(out), rows, str(tmp_path / "copy"))
    assert validate(str(tmp_path / "copy")).ok
    result = run("dedup", str(out), "--against", str(out), "--out", str(tmp_path / "clean"), "--report", str(tmp_path / "r.jsonl"))
    assert result.returncode == 0, result.stderr
    assert validate(str(tmp_path / "clean")).ok


@pytest.mark.slow
def test_held_dedup_of_builds_with_no_shards(plain, tmp_path):
    _, out, _ = plain
    empty = tmp_path / "empty"
    vlconvert.reshard(str(out), {}, str(empty))
    for command in (("dedup", str(empty)), ("dedup", str(out), "--against", str(empty), "--out", str(tmp_path / "a")),
                    ("dedup", str(empty), "--against", str(out), "--out", str(tmp_path / "b"))):
        result = run(*command)
        assert result.returncode == 0 and "Traceback" not in result.stderr, (command, result.stderr)
    assert validate(str(tmp_path / "b")).ok


def test_held_a_second_dedup_into_a_claimed_folder_is_refused(plain, tmp_path, monkeypatch):
    """Started after the first has claimed NEW_OUT (the common case of 'two at once'): exit 2, and the first
    finishes a valid build."""
    _, out, _ = plain
    import vlconvert.readback.reshard as reshard_module

    real = reshard_module._copy_split
    second: list[subprocess.CompletedProcess] = []

    def copy_split(*args, **kwargs):
        if not second:
            second.append(run("dedup", str(out), "--out", str(tmp_path / "clean")))
        return real(*args, **kwargs)

    monkeypatch.setattr(reshard_module, "_copy_split", copy_split)
    vlconvert.reshard(str(out), vlconvert.read_tables(str(out)), str(tmp_path / "clean"))
    one_line_exit_2(second[0])
    assert validate(str(tmp_path / "clean")).ok
