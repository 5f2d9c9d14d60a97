"""A PNG contact sheet of samples with their labels, drawn with Pillow."""

from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image, ImageDraw

GAP = 2  # pixels between tiles
LABEL_H = 12  # strip under each tile for its label


def save_grid(
    images: torch.Tensor,
    labels: torch.Tensor,
    path: str | Path,
    columns: int = 8,
    classes: Sequence[str] | None = None,
) -> Path:
    """Write images (N, C, H, W) float in [0, 1] as a grid, each tile labelled; return the path."""
    images = (images.detach().cpu().clamp(0, 1) * 255).round().to(torch.uint8)  # (N, C, H, W)
    N, C, H, W = images.shape
    scale = max(1, 56 // H)  # 28x28 digits are too small to look at 1:1
    tile_w, tile_h = W * scale, H * scale + LABEL_H
    rows = (N + columns - 1) // columns
    sheet = Image.new("RGB", (columns * (tile_w + GAP) + GAP, rows * (tile_h + GAP) + GAP), (40, 40, 40))
    draw = ImageDraw.Draw(sheet)
    for i in range(N):
        x0 = GAP + (i % columns) * (tile_w + GAP)
        y0 = GAP + (i // columns) * (tile_h + GAP)
        sheet.paste(_to_pil(images[i]).resize((tile_w, H * scale), Image.Resampling.NEAREST), (x0, y0))
        label = int(labels[i])
        text = classes[label] if classes is not None else str(label)
        draw.text((x0 + 2, y0 + H * scale), text, fill=(255, 210, 0))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, optimize=True)
    return path


def _to_pil(image: torch.Tensor) -> Image.Image:
    C, H, W = image.shape
    mode = "L" if C == 1 else "RGB"
    return Image.frombytes(mode, (W, H), image.permute(1, 2, 0).contiguous().numpy().tobytes()).convert("RGB")
