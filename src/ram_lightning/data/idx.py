"""Reading MNIST-style IDX files with errors that name the broken file.

An IDX file is a 4-byte magic number (0x0000 08 <ndim>), then <ndim> big-endian uint32 sizes, then
the uint8 payload. torchvision's own reader trusts the header; here a truncated download or a file
of the wrong kind becomes a DataError saying which file and what to do, instead of a reshape error.
"""

import math
from pathlib import Path

import torch

from ram_lightning.errors import DataError

IMAGES_MAGIC = 2051  # uint8 data, 3 dimensions (N, rows, cols)
LABELS_MAGIC = 2049  # uint8 data, 1 dimension (N,)
_FIX = "Delete it and run `python -m ram_lightning data force=true` to fetch it again."


def read_idx(path: str | Path, magic: int) -> torch.Tensor:
    """The payload of one IDX file as a uint8 tensor shaped by its header."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            raw = bytearray(path.stat().st_size)  # writable, so frombuffer can share it without a copy
            f.readinto(raw)
    except OSError as err:
        raise DataError(f"Cannot read {path}: {err}. {_FIX}") from err
    ndim = magic - 2048
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path} is {len(raw)} bytes, shorter than an IDX header. {_FIX}")
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        kind = "images" if magic == IMAGES_MAGIC else "labels"
        raise DataError(f"{path} has magic number {found}, expected {magic} for IDX {kind}. {_FIX}")
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    expected = header + math.prod(dims)
    if len(raw) != expected:
        raise DataError(
            f"{path} is {len(raw)} bytes but its header {tuple(dims)} says {expected}: "
            f"the file is truncated or padded. {_FIX}"
        )
    return torch.frombuffer(raw, dtype=torch.uint8, offset=header).view(*dims)


def read_split(
    images_path: str | Path, labels_path: str | Path, num_classes: int = 10
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, H, W) uint8 and labels (N,) int64 of one split, checked against each other."""
    images = read_idx(images_path, IMAGES_MAGIC)  # (N, H, W)
    labels = read_idx(labels_path, LABELS_MAGIC).long()  # (N,)
    if images.shape[0] != labels.shape[0]:
        raise DataError(
            f"{images_path} holds {images.shape[0]} images but {labels_path} holds {labels.shape[0]} "
            f"labels; the two files belong to different splits or one is damaged. {_FIX}"
        )
    if labels.numel() and int(labels.max()) >= num_classes:
        raise DataError(f"{labels_path} contains label {int(labels.max())}, outside 0..{num_classes - 1}. {_FIX}")
    return images, labels
