"""Outcomes a build must not leave silent (issue 17): nothing written, a likely wrong adapter, records held out, and a
long build in a log file that prints nothing until it ends."""

import json

import pytest
from command import run
from inat_layout import example_categories, make_inat_root, read_json, write_image


def stderr_lines(result, start: str) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith(start)]


@pytest.mark.parametrize("limit", [[], ["--max-error-rate", "1"]], ids=["no limit", "every rejection allowed"])
def test_a_build_that_rejects_every_record_exits_3_naming_the_top_reasons(tmp_path, limit):
    data, elsewhere = tmp_path / "data", tmp_path / "elsewhere"
    rows = []
    for n in range(3):  # a table of absolute paths: a common first try, refused as outside the table's folder
        write_image(elsewhere / f"{n}.jpg", (40 * n, 90, 160))
        rows.append(f"{elsewhere / f'{n}.jpg'},gull")
    rows.append("missing.jpg,tern")
    data.mkdir()
    (data / "photos.csv").write_text("file_name,label\n" + "\n".join(rows) + "\n")
    out = tmp_path / "out"
    result = run("build", "-a", "table", "-r", str(data / "photos.csv"), "-o", str(out), *limit)
    assert result.returncode == 3, result.stderr
    assert "wrote 0 samples" in result.stdout
    [error] = stderr_lines(result, "error:")
    assert error.startswith("error: nothing was written: 4 of 4 records were rejected; top reasons: ")
    assert "absolute path '…' points outside the dataset root" in error and "reads them where they are) (3)" in error
    assert "image file not found: … (1)" in error and error.endswith(f"listed in {out}/errors.jsonl")
    assert not stderr_lines(result, "warning:")  # the error says it all, once
    reasons = [json.loads(line)["reason"] for line in (out / "errors.jsonl").read_text().splitlines()]
    assert sum("image paths in a table are relative to the table's folder" in r for r in reasons) == 3


def test_a_build_that_rejects_some_records_still_succeeds(tmp_path):
    data = tmp_path / "data"
    write_image(data / "ok.jpg", (10, 200, 30))
    (data / "photos.csv").write_text("file_name,label\nok.jpg,gull\nmissing.jpg,tern\n")
    result = run("build", "-a", "table", "-r", str(data / "photos.csv"), "-o", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert "wrote 1 samples" in result.stdout and stderr_lines(result, "warning: 1 of 2 records (50.00%) were rejected")


def image_folder(root, names: list[str]) -> None:
    for n, name in enumerate(names):
        for i in range(2):
            write_image(root / name / f"{i}.jpg", (20 * n, 60, 20 * i), size=(24, 16))


def test_imagefolder_on_inat_named_folders_suggests_the_inat2021_adapter(tmp_path):
    image_folder(tmp_path / "data", [c["image_dir_name"] for c in example_categories()[:4]] + ["misc"])
    result = run("build", "-a", "imagefolder", "-r", str(tmp_path / "data"), "-o", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert "wrote 10 samples" in result.stdout  # advice only: the build goes on
    [warning] = stderr_lines(result, "warning:")
    assert "named like iNaturalist 2021's" in warning and "--adapter inat2021" in warning


def test_imagefolder_with_ordinary_names_says_nothing_of_inat(tmp_path):
    image_folder(tmp_path / "data", ["cat", "dog", "00000_Animalia_Annelida"])  # one look-alike of three is no pattern
    result = run("build", "-a", "imagefolder", "-r", str(tmp_path / "data"), "-o", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert "inat2021" not in result.stderr and not stderr_lines(result, "warning:")


def test_the_summary_counts_held_out_records(tmp_path):
    root = make_inat_root(tmp_path / "inat", per_class={"train": 2, "val": 1})
    out = tmp_path / "out"
    result = run("build", "-a", "inat2021", "-r", str(root), "-o", str(out), "--holdout-classes", "0.25")
    assert result.returncode == 0, result.stderr
    held = read_json(out / "manifest.json")["splits"]["train"]["held_out"]
    assert held == 6  # 3 of 12 classes, 2 training images each
    assert f"held out 6 records of the --holdout-classes classes from training (train: 6); {out}/manifest.json" in result.stdout


def progress_lines(result) -> list[dict[str, str]]:
    return [dict(field.split("=", 1) for field in line.split()[1:]) for line in stderr_lines(result, "progress ")]


def test_off_a_terminal_progress_is_a_plain_key_value_line_every_interval(tmp_path, monkeypatch):
    root = make_inat_root(tmp_path / "inat", per_class={"train": 6})  # 36 tasks: well over 0.05 s on any machine
    monkeypatch.setenv("VLCONVERT_PROGRESS_INTERVAL", "0.05")
    result = run("build", "-a", "inat2021", "-r", str(root), "-o", str(tmp_path / "out"), "--shard-size", "2", "--workers", "1")
    assert result.returncode == 0, result.stderr
    assert "\r" not in result.stderr and "\x1b" not in result.stderr
    lines = progress_lines(result)
    assert lines, result.stderr
    for line in lines:
        assert line["stage"] == "build" and int(line["total"]) == 72 and 0 <= int(line["done"]) <= 72
        assert int(line["errors"]) == 0 and float(line["elapsed_s"]) >= 0 and float(line["rate"].removesuffix("/s")) >= 0
    assert [int(line["done"]) for line in lines] == sorted(int(line["done"]) for line in lines)


def test_a_zero_interval_turns_the_plain_lines_off(tmp_path, monkeypatch):
    root = make_inat_root(tmp_path / "inat", per_class={"val": 2})
    monkeypatch.setenv("VLCONVERT_PROGRESS_INTERVAL", "0")
    result = run("build", "-a", "inat2021", "-r", str(root), "-o", str(tmp_path / "out"), "--shard-size", "2", "--workers", "1")
    assert result.returncode == 0, result.stderr
    assert not progress_lines(result) and not stderr_lines(result, "warning:")
