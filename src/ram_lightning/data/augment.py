"""Small random rotations and scalings of training images, drawn for a whole batch at once.

Meant against a model that reads training digits better than held-out ones; validation and test images
are never changed. On translated60 it did not lower the validation error (docs/results.md).
"""

import math

import torch
import torch.nn.functional as F


def jitter(images: torch.Tensor, rotate: float, scale: float, generator: torch.Generator) -> torch.Tensor:
    """Each square image of ``images`` (B, ..., S, S) uint8 turned by a uniform angle in [-rotate, rotate]
    degrees and resized by a uniform factor in [1 - scale, 1 + scale] about its centre (bilinear, zero
    outside); uint8, same shape."""
    B, S = images.shape[0], images.shape[-1]
    x = images.reshape(B, -1, S, S).float()  # (B, C, S, S)
    u = torch.rand(B, 2, generator=generator, device=generator.device).mul_(2).sub_(1)  # (B, 2) in [-1, 1)
    angle = u[:, 0] * math.radians(rotate)
    zoom = 1 + u[:, 1] * scale
    # affine_grid maps each output pixel to where it reads the input: the inverse turn, divided by zoom
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    zero = torch.zeros_like(cos)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)  # (B, 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)  # (B, S, S, 2)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.round_().clamp_(0, 255).to(torch.uint8).reshape(images.shape)
