"""Tiny IDX files for tests: real file format, made-up pixels, label counts under the test's control."""

import gzip
import hashlib
import shutil
from pathlib import Path

import torch

NAMES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def idx_bytes(data: torch.Tensor, magic: int) -> bytes:
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in data.shape)
    return header + data.to(torch.uint8).contiguous().numpy().tobytes()


def tiny_split(n: int, seed: int, value: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """n images (n, 28, 28) uint8 and labels 0..9 cycling (so each class count is about n / 10).

    ``value`` gives every image a constant 4x4 block of that value in a random place instead of noise.
    """
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 10
    if value is None:
        images = torch.randint(0, 256, (n, 28, 28), generator=g, dtype=torch.uint8)
    else:
        images = torch.full((n, 28, 28), value, dtype=torch.uint8)
    return images, labels


def write_split(raw: Path, split: str, images: torch.Tensor, labels: torch.Tensor) -> None:
    raw.mkdir(parents=True, exist_ok=True)
    img_name, lbl_name = NAMES[split]
    (raw / img_name).write_bytes(idx_bytes(images, 2051))
    (raw / lbl_name).write_bytes(idx_bytes(labels, 2049))


def write_tiny(raw: Path, n_train: int = 200, n_test: int = 50, train_value=None, test_value=None) -> dict:
    """Write the four files into ``raw``; return their {name: (bytes, sha256)} table."""
    write_split(raw, "train", *tiny_split(n_train, 0, train_value))
    write_split(raw, "test", *tiny_split(n_test, 1, test_value))
    return table_of(raw)


def table_of(folder: Path) -> dict[str, tuple[int, str]]:
    names = [n for pair in NAMES.values() for n in pair]
    return {n: (len(b := (folder / n).read_bytes()), hashlib.sha256(b).hexdigest()) for n in names}


def copy_files(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for n in table_of(src):
        shutil.copy2(src / n, dst / n)


def gzip_files(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for n in table_of(src):
        with (src / n).open("rb") as f, gzip.open(dst / f"{n}.gz", "wb") as g:
            shutil.copyfileobj(f, g)
