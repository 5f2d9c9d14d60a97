"""The glimpse sensor rho(x, l): k nested square patches around l, each reduced to g x g."""

import torch
from torch import nn


class Retina(nn.Module):
    """Extract ``num_scales`` patches of side ``g * 2**i`` centred at ``l`` and average-pool each to g x g.

    Locations are (x, y) in [-1, 1]; (-1, -1) is the top-left corner of the image. Pixels outside the
    image read as zero. All samples and all scales come from one gather.
    """

    def __init__(self, patch_size: int, num_scales: int = 1) -> None:
        super().__init__()
        if patch_size < 1 or num_scales < 1:
            raise ValueError(f"patch_size and num_scales must be >= 1, got {patch_size}, {num_scales}")
        self.g, self.k = patch_size, num_scales
        sides = [patch_size * 2**i for i in range(num_scales)]
        # Per pixel of the concatenated squares: its scale and its (row, col) offset inside its square.
        scale = torch.cat([torch.full((s * s,), i) for i, s in enumerate(sides)])
        dr = torch.cat([torch.arange(s).repeat_interleave(s) for s in sides])
        dc = torch.cat([torch.arange(s).repeat(s) for s in sides])
        self.register_buffer("_scale", scale, persistent=False)  # (P,)
        self.register_buffer("_dr", dr, persistent=False)  # (P,)
        self.register_buffer("_dc", dc, persistent=False)  # (P,)
        self.register_buffer("_half", torch.tensor(sides, dtype=torch.float32) / 2, persistent=False)  # (k,)
        self.sides = sides

    def forward(self, images: torch.Tensor, l: torch.Tensor) -> torch.Tensor:
        B, C, H, W = images.shape
        l = l.float()  # index arithmetic in float32 even for bf16 images
        cx = (l[:, 0:1] + 1) / 2 * W  # (B, 1)
        cy = (l[:, 1:2] + 1) / 2 * H
        left = torch.floor(cx - self._half).long()  # (B, k)
        top = torch.floor(cy - self._half).long()
        rows = top[:, self._scale] + self._dr  # (B, P)
        cols = left[:, self._scale] + self._dc
        inside = (rows >= 0) & (rows < H) & (cols >= 0) & (cols < W)  # (B, P)
        flat = rows.clamp(0, H - 1) * W + cols.clamp(0, W - 1)  # (B, P)
        pixels = images.reshape(B, C, H * W).gather(2, flat.unsqueeze(1).expand(B, C, -1))  # (B, C, P)
        pixels = pixels * inside.unsqueeze(1).to(pixels.dtype)
        patches, start = [], 0
        for i, s in enumerate(self.sides):  # a loop over the k scales, not over samples
            sq = pixels[:, :, start : start + s * s]
            start += s * s
            f = 2**i  # average non-overlapping f x f blocks: (B, C, g, f, g, f) -> (B, C, g, g)
            patches.append(sq.reshape(B, C, self.g, f, self.g, f).mean(dim=(3, 5)))
        return torch.stack(patches, dim=1)  # (B, k, C, g, g)

    def extra_repr(self) -> str:
        return f"patch_size={self.g}, num_scales={self.k}"
