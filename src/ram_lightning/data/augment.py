"""Small random rotations, scalings and elastic warps of training images, drawn for a whole batch at once.

Meant against a model that reads training digits better than held-out ones; validation and test images
are never changed. Turns and resizes did not lower translated60's validation error (docs/results.md).
The elastic warp is Simard et al. (2003)'s: a random displacement per pixel, smoothed by a Gaussian.
"""

import math

import torch
import torch.nn.functional as F


def jitter(
    images: torch.Tensor,
    rotate: float,
    scale: float,
    generator: torch.Generator,
    elastic: float = 0.0,
    elastic_sigma: float = 4.0,
) -> torch.Tensor:
    """Each square image of ``images`` (B, ..., S, S) uint8 turned by a uniform angle in [-rotate, rotate]
    degrees, resized by a uniform factor in [1 - scale, 1 + scale] about its centre and, if ``elastic``
    > 0, warped by ``elastic_field`` (bilinear, zero outside); uint8, same shape."""
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
    if elastic > 0:  # drawn after the turn and zoom, so those stay the draws they were without it
        grid = grid + elastic_field(B, S, elastic, elastic_sigma, generator).mul_(2 / S)  # pixels -> [-1, 1]
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.round_().clamp_(0, 255).to(torch.uint8).reshape(images.shape)


def elastic_field(B: int, S: int, alpha: float, sigma: float, generator: torch.Generator) -> torch.Tensor:
    """B displacement fields (B, S, S, 2) in pixels: uniform noise in [-1, 1] per pixel and axis, smoothed
    by a normalised Gaussian of std ``sigma`` pixels, times ``alpha``. Simard et al. used alpha 34,
    sigma 4 on 28x28 digits: displacements of about a pixel that vary smoothly over a few pixels."""
    noise = torch.rand(B * 2, 1, S, S, generator=generator, device=generator.device).mul_(2).sub_(1)
    r = max(1, math.ceil(3 * sigma))
    k = torch.exp(-((torch.arange(-r, r + 1, device=noise.device, dtype=noise.dtype) / sigma) ** 2) / 2)
    k = k / k.sum()  # (2r + 1,)
    smooth = F.conv2d(noise, k.view(1, 1, 1, -1), padding=(0, r))  # along x, then along y: separable
    smooth = F.conv2d(smooth, k.view(1, 1, -1, 1), padding=(r, 0))  # (2B, 1, S, S)
    return smooth.view(B, 2, S, S).permute(0, 2, 3, 1).mul(alpha)  # (B, S, S, 2): (x, y) as grid_sample reads
