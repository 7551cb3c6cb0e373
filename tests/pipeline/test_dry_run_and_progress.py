"""``build --dry-run`` plans without images; the progress line shows only on a terminal."""

import os
import pty
import subprocess

from command import VLCONVERT, run
from inat_layout import make_inat_root

import vlconvert
from vlconvert.cli.progress import render
from vlconvert.pipeline.build import Progress


def test_dry_run_plans_without_reading_an_image_or_writing_a_file(tmp_path):
    root = make_inat_root(tmp_path / "inat", per_class={"train": 5, "val": 2})
    for image in root.rglob("*.jpg"):
        image.unlink()  # a dry run that read an image would now fail
    out = tmp_path / "out"
    result = run("build", "--adapter", "inat2021", "--root", str(root), "--out", str(out), "--dry-run", "--shard-size", "25")
    assert result.returncode == 0, result.stderr
    assert "12 classes" in result.stdout
    rows = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines() if line.startswith(("train ", "val "))}
    assert rows == {"train": ["60", "0", "0", "0", "3", "0"], "val": ["24", "0", "0", "0", "1", "0"]}
    assert not out.exists()


def test_dry_run_api_reports_rejections_and_held_out_classes(tmp_path):
    root = make_inat_root(tmp_path / "inat", per_class={"train": 4})
    plan = vlconvert.build("inat2021", str(root), str(tmp_path / "out"), dry_run=True, holdout_classes=0.25, shard_size=10)
    assert isinstance(plan, vlconvert.PlanSummary) and plan.classes == 12
    train = plan.splits["train"]
    assert (train.records, train.held_out, train.tasks) == (36, 12, 4)


def test_progress_shows_rate_eta_and_errors_on_a_terminal(tmp_path):
    root = make_inat_root(tmp_path / "inat", per_class={"val": 2})
    next(root.rglob("*.jpg")).write_bytes(b"not a jpeg")
    primary, replica = pty.openpty()
    process = subprocess.Popen([VLCONVERT, "build", "--adapter", "inat2021", "--root", str(root), "--out", str(tmp_path / "out"),
                                "--shard-size", "4"], stdout=subprocess.PIPE, stderr=replica)
    os.close(replica)
    shown = b""
    while True:
        try:
            chunk = os.read(primary, 4096)
        except OSError:  # the terminal closes when the build exits
            break
        if not chunk:
            break
        shown += chunk
    assert process.wait(timeout=120) == 0
    text = shown.decode()
    assert "\r" in text and "img/s" in text and "ETA" in text
    assert "24/24" in text and "1 errors" in text


def test_progress_is_quiet_when_not_on_a_terminal(tmp_path):
    root = make_inat_root(tmp_path / "inat", per_class={"val": 2})
    result = run("build", "--adapter", "inat2021", "--root", str(root), "--out", str(tmp_path / "out"), "--shard-size", "4")
    assert result.returncode == 0
    assert "img/s" not in result.stderr and "\r" not in result.stderr
    assert "images/s" in result.stdout  # the summary still says how fast it was


def test_rate_and_eta_leave_out_resumed_records():
    line = render(Progress(done=600, total=1000, errors=2, resumed=500), elapsed=10.0, label="writing")
    assert "10.0 img/s" in line and "ETA 0:00:40" in line and "2 errors" in line and "500 resumed" in line
