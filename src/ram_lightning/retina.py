"""The glimpse sensor rho(x, l): k nested square patches around l, each reduced to g x g."""

import torch
from torch import nn


def _indicator(a: torch.Tensor, b: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """1 where a == b else 0, broadcast, in ``dtype``."""
    if torch.jit.is_tracing() or torch.compiler.is_compiling():  # exporters and compilers want the plain ops
        return (a == b).to(dtype)
    # eq written straight into the float dtype: on CPU several times faster than a bool mask and a cast
    out = torch.empty(torch.broadcast_shapes(a.shape, b.shape), dtype=dtype, device=a.device)
    return torch.eq(a, b, out=out)


class Retina(nn.Module):
    """Extract ``num_scales`` patches of side ``g * 2**i`` centred at ``l`` and average-pool each to g x g.

    Locations are (x, y) in [-1, 1]; (-1, -1) is the top-left corner of the image. Pixels outside the
    image read as zero.

    Cropping and block-summing are linear and separable, so each patch is ``R @ x @ C^T / f**2`` with
    R (g, H) and C (g, W) 0/1 matrices that mark which pixels fall into which pooling block (blocks off
    the image simply have no pixel). Two batched matmuls serve all samples and all scales, and the index
    work is O(g * (H + W)) per sample rather than one gather index per pixel of every square.
    """

    def __init__(self, patch_size: int, num_scales: int = 1) -> None:
        super().__init__()
        if patch_size < 1 or num_scales < 1:
            raise ValueError(f"patch_size and num_scales must be >= 1, got {patch_size}, {num_scales}")
        self.g, self.k = patch_size, num_scales
        f = 2.0 ** torch.arange(num_scales)  # (k,) pooling factor of each scale
        self.register_buffer("_f", f, persistent=False)
        self.register_buffer("_half", patch_size * f / 2, persistent=False)  # (k,) half side of each square
        self.register_buffer("_area", (1 / f**2).view(-1, 1, 1), persistent=False)  # (k, 1, 1) block area^-1
        self.register_buffer("_r", torch.arange(patch_size, dtype=torch.float32), persistent=False)  # (g,)
        self.register_buffer("_pos", torch.arange(128, dtype=torch.float32), persistent=False)  # pixel indices

    def _pixels(self, n: int) -> torch.Tensor:
        if self._pos.numel() < n:  # a shape check, not a tensor value; the buffer keeps its shape, so that
            return torch.arange(n, dtype=torch.float32, device=self._pos.device)  # copies of the net still match
        return self._pos[:n]

    def _blocks(self, centre: torch.Tensor, n: int) -> torch.Tensor:
        """centre (B, 1) in pixels along an axis of n pixels -> (B, k, n): the pooling block of each pixel."""
        start = torch.floor(centre - self._half)  # (B, k) first pixel of each square
        # Exact in float32: every term is a whole number and f a power of two.
        return torch.floor((self._pixels(n) - start.unsqueeze(-1)) / self._f.unsqueeze(-1))

    def forward(self, images: torch.Tensor, l: torch.Tensor) -> torch.Tensor:
        B, C, H, W = images.shape
        k, g = self.k, self.g
        l = l.float()  # index arithmetic in float32 even for bf16 images
        row_block = self._blocks((l[:, 1:2] + 1) / 2 * H, H)  # (B, k, H)
        col_block = self._blocks((l[:, 0:1] + 1) / 2 * W, W)  # (B, k, W)
        rows = _indicator(row_block.unsqueeze(2), self._r.unsqueeze(-1), images.dtype)  # (B, k, g, H)
        cols = _indicator(col_block.unsqueeze(2), self._r.unsqueeze(-1), images.dtype)  # (B, k, g, W)
        strips = (rows.view(B, 1, k * g, H) @ images).view(B, C, k, g, W)  # rows summed per block
        sums = strips @ cols.unsqueeze(1).transpose(-1, -2)  # (B, C, k, g, W) @ (B, 1, k, W, g) -> (B, C, k, g, g)
        return (sums * self._area.to(sums.dtype)).transpose(1, 2)  # block means, (B, k, C, g, g)

    def extra_repr(self) -> str:
        return f"patch_size={self.g}, num_scales={self.k}"
