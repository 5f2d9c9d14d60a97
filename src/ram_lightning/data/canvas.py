"""Translated and cluttered canvases, made for a whole batch at once on the batch's device.

Pixels stay uint8 values. All patches of a canvas are summed in int32 and clipped at 255 once. The
reference recipe clips after each addition, but with non-negative terms a pixel that reaches the clip
stays there, so clipping once gives the same canvas, and the order of additions (target digit last)
does not change it either. Canvases are therefore exact integers and can be cached as uint8.
"""

from typing import NamedTuple

import torch

VARIANTS = ("plain", "translated", "cluttered")


class Placed(NamedTuple):
    canvases: torch.Tensor  # (B, S, S) uint8
    top: torch.Tensor  # (B,) row of each target digit's top-left pixel
    left: torch.Tensor  # (B,) its column


def translate(digits: torch.Tensor, canvas: int, generator: torch.Generator) -> Placed:
    """Each digit (B, h, w) uint8 at a uniformly random place fully inside a zero canvas (B, S, S)."""
    B, h, w = digits.shape
    top, left = _corners((B, 1), canvas - h, canvas - w, generator)
    acc = _zeros(B, canvas, digits.device)
    _add_patches(acc, digits[:, None], top, left)  # (B, 1, h, w) -> one patch per canvas
    return Placed(_clip(acc), top[:, 0], left[:, 0])


def clutter(
    digits: torch.Tensor,
    pool: torch.Tensor,
    canvas: int,
    num_distractors: int,
    distractor_size: int,
    generator: torch.Generator,
) -> Placed:
    """Cluttered canvases (B, S, S) uint8, after the DeepMind mnist-cluttered recipe.

    Each distractor is a ``distractor_size`` square crop at a random place of a random digit of ``pool``
    (the same split as ``digits``), added at a random place; the target digit is added last, also at a
    random place; the sum is clipped at 255, so clutter under the digit stays visible.
    """
    B, h, w = digits.shape
    N, H, W = pool.shape
    K, s = num_distractors, distractor_size
    g = generator
    # the draw order is part of the recipe: a seed must name the same canvases on every machine
    src = torch.randint(N, (B, K), generator=g, device=g.device)  # (B, K) which pool digit
    crop_y, crop_x = _corners((B, K), H - s, W - s, g)
    put_y, put_x = _corners((B, K), canvas - s, canvas - s, g)
    top, left = _corners((B, 1), canvas - h, canvas - w, g)

    corner = (src * H + crop_y) * W + crop_x  # (B, K) flat index of each crop's corner in pool
    crops = pool.take(_window(corner, s, s, W)).view(B, K, s, s)  # one gather, no loop over B or K

    acc = _zeros(B, canvas, digits.device)
    _add_patches(acc, crops, put_y, put_x)
    _add_patches(acc, digits[:, None], top, left)
    return Placed(_clip(acc), top[:, 0], left[:, 0])


def make_canvases(
    digits: torch.Tensor,
    variant: str,
    canvas: int,
    pool: torch.Tensor | None,
    num_distractors: int,
    distractor_size: int,
    generator: torch.Generator | None,
) -> Placed:
    """Dispatch on the variant name: the canvases and where each target digit went. ``plain`` returns the
    digits unchanged, at corner (0, 0)."""
    if variant == "plain":
        corner = torch.zeros(digits.shape[0], dtype=torch.long, device=digits.device)
        return Placed(digits, corner, corner)
    if variant == "translated":
        return translate(digits, canvas, generator)
    if variant == "cluttered":
        return clutter(digits, pool, canvas, num_distractors, distractor_size, generator)
    raise ValueError(f"unknown variant {variant!r}; expected one of {VARIANTS}")


def _corners(shape: tuple[int, int], max_y: int, max_x: int, g: torch.Generator):
    y = torch.randint(0, max_y + 1, shape, generator=g, device=g.device)
    x = torch.randint(0, max_x + 1, shape, generator=g, device=g.device)
    return y, x


def _zeros(B: int, S: int, device: torch.device) -> torch.Tensor:
    # int32: index_add_ on CUDA has atomic (and deterministic-mode) kernels for it; int16 may not
    return torch.zeros(B, S, S, dtype=torch.int32, device=device)


def _add_patches(acc: torch.Tensor, patches: torch.Tensor, top: torch.Tensor, left: torch.Tensor) -> None:
    """acc (B, S, S) int32 += patches (B, K, h, w) with corners (top, left) (B, K), all at once."""
    B, S, _ = acc.shape
    _, K, h, w = patches.shape
    corner = (torch.arange(B, device=acc.device)[:, None] * S + top) * S + left  # (B, K) into acc.view(-1)
    # index_add_ sums overlapping patches, which is what the recipe's additions mean
    acc.view(-1).index_add_(0, _window(corner, h, w, S).view(-1), patches.reshape(-1).to(torch.int32))


def _window(corner: torch.Tensor, h: int, w: int, row_stride: int) -> torch.Tensor:
    """Flat indices (B, K, h*w) of the h x w windows whose top-left flat indices are ``corner`` (B, K)."""
    ar_h = torch.arange(h, device=corner.device)
    ar_w = torch.arange(w, device=corner.device)
    offsets = (ar_h[:, None] * row_stride + ar_w).view(-1)  # (h*w,) inside one window
    return corner[..., None] + offsets


def _clip(acc: torch.Tensor) -> torch.Tensor:
    return acc.clamp_(max=255).to(torch.uint8)
