"""The tar writer: the byte bound is exact (PAX headers of long member names included), parts are never left open,
and sample keys have a documented maximum length."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import random
import re
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

import vlconvert
from vlconvert.pipeline.tar_writer import RollingTarWriter, TarPart, closed_size, member_header, sample_bytes
from vlconvert.records import KEY_PATTERN, MAX_KEY_LENGTH, InvalidRecordError, Record, is_valid_key, key_problem

KEY_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"


def write_parts(folder: Path, samples, max_bytes: int, max_samples: int = 10**6):
    folder.mkdir(parents=True, exist_ok=True)

    def open_part(n: int) -> TarPart:
        path = folder / f"part-{n:03d}.tar"
        return TarPart(open(path, "wb"), str(path))

    with RollingTarWriter(open_part, max_samples, max_bytes) as writer:
        for key, members in samples:
            writer.write(key, members)
        return writer.close()


def read_back(path: str) -> list[tuple[str, bytes]]:
    with tarfile.open(path) as tar:
        return [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()]


def random_samples(rng: random.Random, count: int) -> list[tuple[str, list[tuple[str, bytes]]]]:
    """Samples whose member names run from short ustar names to ones far past ustar's 100 bytes."""
    named = ["".join(rng.choices(KEY_CHARS, k=rng.randint(1, MAX_KEY_LENGTH))) + ".txt" for _ in range(rng.randint(0, 3))]
    samples = []
    for n in range(count):
        key = f"{n:04d}" + "".join(rng.choices(KEY_CHARS, k=rng.randint(0, MAX_KEY_LENGTH - 4)))
        members = [("jpg", rng.randbytes(rng.randint(0, 4000))), ("txt", b"a photo of " + key.encode())]
        members += [(member, rng.randbytes(rng.randint(0, 700))) for member in named]
        members += [("json", json.dumps({"key": key}).encode()), ("cls", b"3")]
        samples.append((key, members))
    return samples


@pytest.mark.parametrize("key_length", [1, 50, 95, 96, 97, MAX_KEY_LENGTH])
@pytest.mark.parametrize("member", ["cls", "json", "x.txt", "t" * 40 + ".txt", "t" * MAX_KEY_LENGTH + ".txt"])
@pytest.mark.parametrize("size", [0, 1, 511, 512, 513])
def test_sample_bytes_is_what_tarfile_writes(key_length, member, size):
    key = "k" * key_length
    part = TarPart(io.BytesIO(), "mem")
    part.write(key, [(member, b"\x01" * size)])
    assert part.bytes == sample_bytes(key, [(member, b"\x01" * size)])
    assert part.close().bytes == closed_size(sample_bytes(key, [(member, b"\x01" * size)]))


def test_a_long_member_name_costs_a_pax_header():
    short, long = sample_bytes("k", [("txt", b"")]), sample_bytes("k" * MAX_KEY_LENGTH, [("t" * 60 + ".txt", b"")])
    assert short == 512 and long > 512  # a bound that counts one 512-byte header per member is too small here


@pytest.mark.parametrize("seed", range(8))
def test_no_part_on_disk_exceeds_the_byte_bound(tmp_path, seed):
    rng = random.Random(seed)
    samples = random_samples(rng, 40)
    max_bytes = rng.choice([10_240, 20_480, 30_720, 61_440])
    infos = write_parts(tmp_path, samples, max_bytes)
    assert len(infos) > 1 and sum(i.samples for i in infos) == len(samples)
    written = []
    for info in infos:
        data = Path(info.path).read_bytes()
        assert len(data) == info.bytes and hashlib.sha256(data).hexdigest() == info.sha256
        assert len(data) <= max_bytes or info.samples == 1  # only a sample larger than the bound gets a larger part
        written += read_back(info.path)
    assert written == [(f"{key}.{member}", data) for key, members in samples for member, data in members]
    # The bound is tight too: the sample that opened each next part would not have fitted in the one before.
    start = 0
    for info in infos[:-1]:
        trial = TarPart(io.BytesIO(), "trial")
        for key, members in samples[start:start + info.samples + 1]:
            trial.write(key, members)
        assert trial.close().bytes > max_bytes
        start += info.samples


def test_a_sample_larger_than_the_bound_gets_a_part_of_its_own(tmp_path):
    samples = [("a", [("jpg", b"x" * 100)]), ("big", [("jpg", b"y" * 50_000)]), ("c", [("jpg", b"z" * 100)])]
    infos = write_parts(tmp_path, samples, 20_480)
    assert [i.samples for i in infos] == [1, 1, 1] and infos[1].bytes > 20_480 >= max(infos[0].bytes, infos[2].bytes)


class FailingFile(io.BytesIO):
    """A file on a disk that fills up after ``room`` bytes."""

    def __init__(self, room: int):
        super().__init__()
        self.room = room

    def write(self, data) -> int:
        if self.tell() + len(data) > self.room:
            raise OSError(28, "No space left on device")
        return super().write(data)


def test_a_failing_write_leaves_no_part_open():
    opened = []

    def open_part(n: int) -> TarPart:
        opened.append(FailingFile(room=5_000))
        return TarPart(opened[-1], f"part-{n}")

    with pytest.raises(OSError, match="No space left"):
        with RollingTarWriter(open_part, 10, 1 << 20) as writer:
            for n in range(10):
                writer.write(f"k{n}", [("jpg", b"x" * 1_000)])
    assert opened and all(f.closed for f in opened)


def test_a_failing_end_of_archive_still_closes_the_file():
    raw = FailingFile(room=1_024)  # the member fits; the two end blocks and padding do not
    part = TarPart(raw, "part")
    part.write("k", [("cls", b"1")])
    with pytest.raises(OSError):
        part.close()
    assert raw.closed


def test_a_part_used_as_a_context_manager_is_closed_either_way(tmp_path):
    with TarPart(open(tmp_path / "ok.tar", "wb"), "ok") as part:
        part.write("k", [("cls", b"1")])
    assert read_back(str(tmp_path / "ok.tar")) == [("k.cls", b"1")]
    raw = open(tmp_path / "bad.tar", "wb")
    with pytest.raises(RuntimeError), TarPart(raw, "bad") as part:
        part.write("k", [("cls", b"1")])
        raise RuntimeError("the task failed")
    assert raw.closed


# --------------------------------------------------------------------------- keys


def test_keys_have_a_maximum_length():
    Record(key="k" * MAX_KEY_LENGTH, image=b"", label=0, split="train")
    assert is_valid_key("k" * MAX_KEY_LENGTH) and not is_valid_key("k" * (MAX_KEY_LENGTH + 1))
    with pytest.raises(InvalidRecordError, match=f"is {MAX_KEY_LENGTH + 1} characters long; a key may have at most {MAX_KEY_LENGTH}"):
        Record(key="k" * (MAX_KEY_LENGTH + 1), image=b"", label=0, split="train")
    assert key_problem("a.b") and "letters, digits" in key_problem("a.b") and key_problem("ok") is None


def test_key_pattern_agrees_with_is_valid_key_in_python_and_arrow():
    keys = ["k", "k" * MAX_KEY_LENGTH, "k" * (MAX_KEY_LENGTH + 1), "", "a.b", "abc\n", "a b", "A-z_9"]
    expected = [is_valid_key(k) for k in keys]
    assert expected == [True, True, False, False, False, False, False, True]
    assert [bool(re.fullmatch(KEY_PATTERN, k)) for k in keys] == expected
    assert pc.match_substring_regex(pa.array(keys), KEY_PATTERN).to_pylist() == expected  # the COCO adapter's check


def write_table_release(folder: Path, keys: list[str]) -> Path:
    rng = random.Random(0)
    rows = []
    for n, key in enumerate(keys):
        image = Image.frombytes("RGB", (8, 8 + n % 8), rng.randbytes(8 * (8 + n % 8) * 3))
        image.save(folder / f"{n}.png")
        rows.append({"file_name": f"{n}.png", "label": f"class {n % 3}", "key": key})
    with open(folder / "metadata.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["file_name", "label", "key"])
        writer.writeheader()
        writer.writerows(rows)
    return folder


def test_a_build_with_long_keys_and_long_template_names_keeps_the_byte_bound(tmp_path):
    root = tmp_path / "release"
    root.mkdir()
    keys = [f"{n:03d}" + "k" * (MAX_KEY_LENGTH - 3) for n in range(30)]
    write_table_release(root, keys + ["x" * (MAX_KEY_LENGTH + 1)])
    long_template = tmp_path / ("t" * 100 + ".j2")
    long_template.write_text("a photo of {{ name }}.\n")
    out = tmp_path / "out"
    summary = vlconvert.build("table", str(root), str(out), templates=["scientific", str(long_template)],
                              shard_max_bytes=30_720, max_error_rate=0.5)
    assert summary.written == 30 and summary.errored == 1
    (rejected,) = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert rejected["key"] == "x" * (MAX_KEY_LENGTH + 1) and "sample key" in rejected["reason"]
    shards = summary.splits["train"].shards
    assert len(shards) > 2
    for shard in shards:
        path = out / shard["name"]
        assert shard["bytes"] == path.stat().st_size
        assert path.stat().st_size <= 30_720 or shard["samples"] == 1
        with tarfile.open(path) as tar:
            names = tar.getnames()
        assert any(name.endswith("." + "t" * 100 + ".txt") and len(name) > 100 for name in names)


@settings(max_examples=400, deadline=None)
@given(name=st.text(alphabet=st.sampled_from("abcXYZ019_-.é"), min_size=1, max_size=130),
       size=st.one_of(st.integers(0, 10**10), st.sampled_from([0, 511, 512, 513, 8**11 - 1, 8**11, 10**13])))
def test_member_headers_are_the_ones_tarfile_writes(name, size):
    """The writer builds plain headers itself; they must be tarfile's to the byte, PAX extended headers included."""
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, 0, 0o444
    info.uname = info.gname = ""
    assert member_header(name, size) == info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
