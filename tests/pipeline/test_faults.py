"""Faults while writing: a disk that fills up, an S3 endpoint that goes away.

No fault may publish a corrupt shard (a final name holding a partial tar), and rerunning
the same command once the fault is gone must repair the output, byte for byte.
"""

import errno
import json
import subprocess
import tarfile
from pathlib import Path

import fsspec
import pyarrow.parquet as pq
import pytest
from command import VLCONVERT
from fsspec.implementations.local import LocalFileSystem
from inat_layout import make_inat_root, read_json
from PIL import Image
from test_build import tree_digest
from test_resume import StopAfter
from test_s3 import bucket, s3_endpoint  # noqa: F401  (fixtures)

import vlconvert


def noisy_root(path: Path) -> Path:
    root = make_inat_root(path, per_class={"val": 3})
    for n, image in enumerate(sorted(root.rglob("*.jpg"))):
        Image.effect_noise((96, 72), 30 + n).convert("RGB").save(image, quality=95)  # ~10 KB each, incompressible
    return root


def assert_nothing_corrupt_published(out: Path) -> None:
    assert read_json(out / "manifest.json")["status"] == "in_progress"
    assert not list(out.rglob("val-*.tar")), "a final shard name exists before the build finished"
    shards = [p for entry in out.rglob("_progress/*/*.json") for p in json.loads(entry.read_text())["shards"]]
    ledger = {Path(p["path"]).name: p["bytes"] for p in shards}
    ledger |= {Path(p["path"]).name.replace(".part", ".parquet.part"): p["table_bytes"] for p in shards}
    for part in out.rglob("_done-*.part"):
        assert ledger.get(part.name) == part.stat().st_size, f"{part.name} was published without being whole"
        if part.name.endswith(".parquet.part"):
            assert pq.read_table(part).num_rows
        else:
            with tarfile.open(part) as tar:
                assert tar.getmembers()


@pytest.fixture
def small_tmpfs(tmp_path):
    """A real 64 KiB filesystem; mounting needs root, as on CI's machines."""
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({made.stderr.strip()}); test_writer_that_fails covers the same path")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


@pytest.mark.slow
def test_full_disk_fails_cleanly_and_a_rerun_repairs(tmp_path, small_tmpfs):
    root = noisy_root(tmp_path / "inat")
    out = small_tmpfs / "out"
    command = [VLCONVERT, "build", "--adapter", "inat2021", "--root", str(root), "--out", str(out), "--shard-size", "2"]
    full = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert full.returncode == 1, full.stderr
    assert "No space left on device" in full.stderr and "rerun the same command to resume" in full.stderr
    assert "Traceback" not in full.stderr
    assert_nothing_corrupt_published(out)

    subprocess.run(["mount", "-o", "remount,size=16m", str(small_tmpfs)], check=True)
    repaired = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert repaired.returncode == 0, repaired.stderr
    vlconvert.build("inat2021", str(root), str(tmp_path / "reference"), shard_size=2)
    assert tree_digest(out) == tree_digest(tmp_path / "reference")


class FillingFileSystem(LocalFileSystem):
    """The local filesystem with a byte budget: writes past it fail with ENOSPC, as a full disk does."""

    protocol = "fillingfs"
    budget = 0

    def _open(self, path, mode="rb", **kwargs):
        opened = super()._open(path, mode, **kwargs)
        if "w" in mode:
            write = opened.write

            def limited(data):
                if FillingFileSystem.budget < len(data):
                    raise OSError(errno.ENOSPC, "No space left on device", path)
                FillingFileSystem.budget -= len(data)
                return write(data)

            opened.write = limited
        return opened


def test_writer_that_fails(tmp_path):
    fsspec.register_implementation("fillingfs", FillingFileSystem, clobber=True)
    root = noisy_root(tmp_path / "inat")
    out = tmp_path / "out"
    FillingFileSystem.budget = 60_000
    with pytest.raises(OSError, match="No space left"):
        vlconvert.build("inat2021", str(root), f"fillingfs://{out}", shard_size=2)
    assert_nothing_corrupt_published(out)
    FillingFileSystem.budget = 10**9
    summary = vlconvert.build("inat2021", str(root), f"fillingfs://{out}", shard_size=2)
    assert summary.resumed_tasks > 0
    vlconvert.build("inat2021", str(root), str(tmp_path / "reference"), shard_size=2)
    assert tree_digest(out) == tree_digest(tmp_path / "reference")


@pytest.mark.slow
def test_s3_going_away_mid_build_then_coming_back(tmp_path, bucket, s3_endpoint):  # noqa: F811
    import moto.server

    fs, name = bucket
    root = make_inat_root(tmp_path / "inat", per_class={"train": 2, "val": 1})
    out = f"s3://{name}/flaky"
    server = s3_endpoint["server"]
    stop = StopAfter(3)

    def outage(progress) -> None:
        stop.calls += 1
        if stop.calls == stop.tasks:
            server.stop()  # the endpoint vanishes: every later request fails

    with pytest.raises(vlconvert.BuildFailed, match="S3|connect|endpoint"):
        vlconvert.build("inat2021", str(root), out, shard_size=3, progress=outage)
    restarted = moto.server.ThreadedMotoServer(ip_address="127.0.0.1", port=s3_endpoint["port"], verbose=False)
    restarted.start()
    s3_endpoint["server"] = restarted
    fs.invalidate_cache()
    assert not [p for p in fs.find(f"{name}/flaky") if p.rsplit("/", 1)[-1].startswith(("train-", "val-"))]
    summary = vlconvert.build("inat2021", str(root), out, shard_size=3)
    assert summary.resumed_tasks >= 1
    vlconvert.build("inat2021", str(root), str(tmp_path / "local"), shard_size=3)
    fs.get(f"{name}/flaky", str(tmp_path / "fetched"), recursive=True)
    assert tree_digest(tmp_path / "fetched") == tree_digest(tmp_path / "local")
