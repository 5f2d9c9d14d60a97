"""Run a RAM network on a batch and draw every image's frames; shared by `render` and the callback."""

from dataclasses import dataclass

import torch
from PIL import Image

from ram_lightning.model import RecurrentAttention
from ram_lightning.viz.frames import default_zoom, glimpse_frames, square_sides

COMPACT_TARGET = 160  # frame pixels per image side in grids of many images


@dataclass
class BatchFrames:
    full: list[list[Image.Image]]  # per image: T glimpse frames + a final frame, with patches and bars
    compact: list[list[Image.Image]]  # the same frames, canvas and caption only, smaller
    probs: torch.Tensor  # (B, classes) after the last glimpse
    locations: torch.Tensor  # (B, T, 2)


@torch.no_grad()
def draw_batch(
    net: RecurrentAttention,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    class_names: list[str] | None = None,
    deterministic: bool = True,
    seed: int = 0,
) -> BatchFrames:
    """x (B, C, H, W) in [0, 1] on the net's device; y (B,) true labels or None."""
    gen = torch.Generator(device=x.device).manual_seed(seed)  # a uniform first location repeats too
    out = net(x, deterministic=deterministic, return_patches=True, generator=gen)
    probs = out.logits.float().softmax(-1).cpu()  # (B, classes)
    locations, patches = out.locations.cpu(), out.patches.float().cpu()  # (B, T, 2), (B, T, k, C, g, g)
    x = x.float().cpu()
    sides = square_sides(net.retina.g, net.retina.k)
    grid_zoom = default_zoom(*x.shape[-2:], target=COMPACT_TARGET)
    full, compact = [], []
    for i in range(x.shape[0]):
        label = None if y is None else int(y[i])
        args = (x[i], locations[i], patches[i], probs[i], sides, label, class_names)
        full.append(glimpse_frames(*args))
        compact.append(glimpse_frames(*args, zoom=grid_zoom, compact=True))
    return BatchFrames(full, compact, probs, locations)
