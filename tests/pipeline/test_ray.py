"""``--executor ray`` on a real local Ray cluster writes the same bytes as the local executor."""

import os
import socket
import subprocess
from pathlib import Path

import pytest
from command import VLCONVERT, run
from inat_layout import make_inat_root, read_json
from optional import require
from test_build import tree_digest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    require("ray")
    ray_cli = str(Path(VLCONVERT).with_name("ray"))
    port = free_port()
    # A home of its own: a Ray instance started earlier on this machine (say by `vlconvert build --executor ray`)
    # leaves ~/.ray/auth_token, which the client then presents to this cluster and is refused.
    home = os.environ.get("HOME")
    os.environ["HOME"] = str(tmp_path_factory.mktemp("ray-home"))
    start = subprocess.run(
        [ray_cli, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port), "--num-cpus", "2",
         "--object-store-memory", str(100 * 1024 * 1024), "--include-dashboard", "false", "--disable-usage-stats"],
        capture_output=True, text=True, timeout=180,
    )
    try:
        assert start.returncode == 0, start.stdout + start.stderr
        yield f"127.0.0.1:{port}"
        subprocess.run([ray_cli, "stop", "--force"], capture_output=True, timeout=120)
    finally:
        if home is None:
            os.environ.pop("HOME", None)
        else:
            os.environ["HOME"] = home


@pytest.mark.slow
def test_ray_executor_matches_local_bytes(tmp_path, ray_cluster):
    root = make_inat_root(tmp_path / "inat", per_class={"train": 3, "val": 2})
    next(root.rglob("*.jpg")).write_bytes(b"truncated")  # a rejection travels back from a Ray worker too
    common = ["build", "--adapter", "inat2021", "--root", str(root), "--shard-size", "4", "--resize", "32", "--seed", "3"]
    local = run(*common, "--out", str(tmp_path / "local"), "--workers", "2")
    assert local.returncode == 0, local.stderr
    # Relative paths, from a folder that is not the cluster's: workers must not resolve them in their own folder.
    relative = [a if a != str(root) else "inat" for a in common]
    on_ray = run(*relative, "--out", "ray", "--executor", "ray", "--ray-address", ray_cluster, cwd=tmp_path)
    assert on_ray.returncode == 0, on_ray.stderr
    assert "rejected 1 records" in on_ray.stdout
    on_local, on_cluster = tree_digest(tmp_path / "local"), tree_digest(tmp_path / "ray")
    assert on_cluster.pop("manifest.json") != on_local.pop("manifest.json")  # it records --root as given
    assert on_cluster == on_local
    manifests = [read_json(tmp_path / name / "manifest.json") for name in ("local", "ray")]
    for manifest in manifests:
        manifest["adapter"].pop("root")
        manifest["config"].pop("root")
    assert manifests[0] == manifests[1]


def test_unreachable_ray_cluster_is_a_one_line_error(tmp_path):
    require("ray")
    root = make_inat_root(tmp_path / "inat", per_class={"val": 1})
    result = run("build", "--adapter", "inat2021", "--root", str(root), "--out", str(tmp_path / "out"),
                 "--executor", "ray", "--ray-address", f"127.0.0.1:{free_port()}")
    assert result.returncode == 2, result.stderr
    assert "cannot reach the Ray cluster at 127.0.0.1" in result.stderr and "Traceback" not in result.stderr
