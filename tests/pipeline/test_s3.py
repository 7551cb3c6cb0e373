"""Reading a dataset from S3 and writing shards to S3, against a real local S3 server (moto)."""

import os
import sys

import pytest
from command import run
from inat_layout import make_inat_root
from optional import require
from test_build import tree_digest
from test_ray import free_port
from test_resume import StopAfter

import vlconvert


@pytest.fixture(scope="module")
def s3_endpoint():
    """moto's S3 server on 127.0.0.1, and the standard AWS variables pointing boto/s3fs at it."""
    s3fs = require("s3fs")
    server_module = require("moto.server")
    # fsspec reuses S3FileSystem instances, and with them another module's (stopped) endpoint.
    s3fs.S3FileSystem.clear_instance_cache()
    port = free_port()
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    settings = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_ENDPOINT_URL": endpoint}
    saved = {k: os.environ.get(k) for k in settings}
    os.environ.update(settings)
    state = {"url": endpoint, "port": port, "server": server}  # a test may stop and restart the server
    yield state
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    state["server"].stop()
    s3fs.S3FileSystem.clear_instance_cache()


@pytest.fixture
def bucket(s3_endpoint, request):
    import s3fs

    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    name = f"vlconvert-{request.node.name.replace('_', '-')[:40].lower()}"
    fs.mkdir(name)
    return fs, name


@pytest.mark.slow
def test_s3_round_trip_matches_a_local_build(tmp_path, bucket):
    fs, name = bucket
    root = make_inat_root(tmp_path / "inat", per_class={"train": 3, "val": 2})
    next(root.rglob("*.jpg")).write_bytes(b"truncated")
    fs.put(str(root), f"{name}/inat", recursive=True)
    options = ["--adapter", "inat2021", "--shard-size", "5", "--resize", "32"]
    local = run("build", *options, "--root", str(root), "--out", str(tmp_path / "local"))
    assert local.returncode == 0, local.stderr
    remote = run("build", *options, "--root", f"s3://{name}/inat", "--out", f"s3://{name}/shards/inat", "--workers", "2")
    assert remote.returncode == 0, remote.stderr
    assert "rejected 1 records" in remote.stdout

    fs.get(f"{name}/shards/inat", str(tmp_path / "fetched"), recursive=True)
    local_files = {k: v for k, v in tree_digest(tmp_path / "local").items() if k != "manifest.json"}
    fetched = tree_digest(tmp_path / "fetched")
    assert {k: v for k, v in fetched.items() if k != "manifest.json"} == local_files
    assert not [p for p in fs.find(f"{name}/shards") if "/_" in p], "temporary or ledger objects were left behind"


def test_shards_on_s3_stream_into_webdataset(tmp_path, bucket, s3_endpoint):
    wds = require("webdataset")
    fs, name = bucket
    root = make_inat_root(tmp_path / "inat", per_class={"val": 1})
    summary = vlconvert.build("inat2021", str(root), f"s3://{name}/out", shard_size=100)
    url = f"s3://{name}/out/val/val-000000.tar"
    # webdataset reads any URL through a pipe; this is how a training job streams shards from S3.
    reader = f"pipe:{sys.executable} -c \"import fsspec,sys; sys.stdout.buffer.write(fsspec.open('{url}','rb').open().read())\""
    keys = [sample["__key__"] for sample in wds.WebDataset(reader, shardshuffle=False)]
    assert len(keys) == summary.written == 12


def test_interrupted_build_on_s3_resumes(tmp_path, bucket):
    fs, name = bucket
    root = make_inat_root(tmp_path / "inat", per_class={"train": 2, "val": 1})
    out = f"s3://{name}/resumed"
    with pytest.raises(KeyboardInterrupt):
        vlconvert.build("inat2021", str(root), out, shard_size=3, progress=StopAfter(3))
    assert fs.find(f"{name}/resumed/_progress"), "committed tasks are recorded on S3"
    summary = vlconvert.build("inat2021", str(root), out, shard_size=3)
    assert summary.resumed_tasks == 3
    vlconvert.build("inat2021", str(root), str(tmp_path / "local"), shard_size=3)
    fs.get(f"{name}/resumed", str(tmp_path / "fetched"), recursive=True)
    assert tree_digest(tmp_path / "fetched") == tree_digest(tmp_path / "local")


def test_a_root_missing_on_s3_is_a_one_line_error(tmp_path, s3_endpoint):
    result = run("build", "--adapter", "inat2021", "--root", "s3://no-such-bucket-here/inat", "--out", str(tmp_path / "out"))
    assert result.returncode == 2, result.stderr
    assert "s3://no-such-bucket-here/inat" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_images_read_from_s3_keep_their_bytes(tmp_path, bucket):
    fs, name = bucket
    root = make_inat_root(tmp_path / "inat", per_class={"val": 1})
    fs.put(str(root), f"{name}/inat", recursive=True)
    vlconvert.build("inat2021", f"s3://{name}/inat", str(tmp_path / "out"))
    first = sorted(root.rglob("*.jpg"))[0].read_bytes()
    shard = (tmp_path / "out" / "val" / "val-000000.tar").read_bytes()
    assert first in shard  # passthrough: the original JPEG, byte for byte


def test_remote_images_are_read_within_the_byte_cap(bucket):
    """One ranged GET of at most the cap: an empty object, a small one and one over the cap."""
    from hostile import jpeg

    from vlconvert.pipeline.image_files import ReadLimits, read_image_bytes
    from vlconvert.pipeline.images import ImageError

    fs, name = bucket
    image = jpeg()
    fs.pipe(f"{name}/empty.jpg", b"")
    fs.pipe(f"{name}/small.jpg", image)
    fs.pipe(f"{name}/large.jpg", image * 4)
    limits = ReadLimits(max_bytes=len(image) * 2)
    assert read_image_bytes(f"s3://{name}/empty.jpg", limits) == b""
    assert read_image_bytes(f"s3://{name}/small.jpg", limits) == image
    with pytest.raises(ImageError, match=r"is 7,\d{3}|over the limit of"):
        read_image_bytes(f"s3://{name}/large.jpg", limits)
    with pytest.raises(ImageError, match="not found or not reachable"):
        read_image_bytes(f"s3://{name}/missing.jpg", limits)
