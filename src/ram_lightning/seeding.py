"""Random streams named by keys, so that any step's randomness can be drawn again after a restart."""

import hashlib

import torch


def generator_for(device: torch.device | str, *keys: object) -> torch.Generator:
    """A generator on ``device`` seeded from ``keys`` (e.g. seed, step, rank): same keys, same stream."""
    text = ":".join(str(k) for k in keys).encode()
    seed = int.from_bytes(hashlib.sha256(text).digest()[:8], "little") >> 1  # fits a signed int64
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    return g
