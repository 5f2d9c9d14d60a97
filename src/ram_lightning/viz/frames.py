"""Drawing one image's glimpse path as frames: the canvas with the retina's squares, the patches, the answer.

Frame t (t = 0 .. T-1) shows glimpse t: the k nested squares the retina read, the path of glimpses 0..t,
and beside it the k patches exactly as the network received them. The last frame shows the whole path
and the class probabilities after glimpse T (the classifier reads h_T only, so there is nothing to show
earlier). Everything is drawn with Pillow on CPU tensors; no plotting library.
"""

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

SCALE_COLOURS = [(255, 64, 64), (255, 210, 0), (60, 220, 60), (70, 140, 255), (255, 140, 0), (220, 90, 255)]
PATH_COLOUR = (0, 230, 230)
BACKGROUND = (28, 28, 28)
TEXT = (235, 235, 235)
RIGHT, WRONG, BAR = (60, 200, 90), (235, 70, 70), (130, 130, 130)
MARGIN, GAP, TITLE, BORDER = 8, 14, 20, 2
LABEL_W, BAR_W, MAX_BARS = 96, 96, 10


@dataclass
class Layout:
    """Where each panel sits in a frame (pixel coordinates, x to the right, y down)."""

    zoom: int  # canvas pixels -> frame pixels (nearest neighbour, whole factor)
    canvas_xy: tuple[int, int]  # top-left of the upscaled canvas
    patch_zoom: int  # retina patch pixels -> frame pixels
    patch_xy: list[tuple[int, int]]  # top-left of each scale's patch, finest first
    probs_xy: tuple[int, int] | None  # top-left of the probability bars (None in compact frames)
    size: tuple[int, int]  # (width, height) of the frame


def default_zoom(H: int, W: int, target: int = 300) -> int:
    """A whole factor that brings the longer side near ``target`` frame pixels."""
    return max(1, target // max(H, W))


def frame_layout(
    in_shape: tuple[int, int, int], g: int, k: int, zoom: int | None = None, compact: bool = False
) -> Layout:
    """The frame geometry for images of ``in_shape`` (C, H, W) seen through k patches of g x g."""
    _, H, W = in_shape
    z = zoom or default_zoom(H, W)
    ch, cw = H * z, W * z
    canvas_xy = (MARGIN, MARGIN + TITLE)
    if compact:
        return Layout(z, canvas_xy, 0, [], None, (cw + 2 * MARGIN, ch + 2 * MARGIN + TITLE))
    # the patches share the canvas height, but never grow wider than half the canvas
    pz = max(1, min((ch - (k - 1) * GAP - 2 * BORDER * k) // (k * g), (ch // 2) // g))
    px = MARGIN + cw + GAP + BORDER
    patch_xy = [(px, canvas_xy[1] + BORDER + i * (g * pz + GAP + 2 * BORDER)) for i in range(k)]
    probs_xy = (px - BORDER, canvas_xy[1])  # the last frame shows the bars where the patches were
    patches_h = k * (g * pz + 2 * BORDER) + (k - 1) * GAP
    width = max(px + g * pz + BORDER, probs_xy[0] + LABEL_W + BAR_W) + MARGIN
    height = max(ch, patches_h, MAX_BARS * 16) + 2 * MARGIN + TITLE
    return Layout(z, canvas_xy, pz, patch_xy, probs_xy, (width, height))


def square_sides(g: int, k: int) -> list[int]:
    """Sides of the retina's squares, finest first: g, 2g, 4g, ... (section 1a of the retina contract)."""
    return [g * 2**i for i in range(k)]


def scale_squares(l: torch.Tensor, H: int, W: int, sides: list[int]) -> list[tuple[int, int, int]]:
    """(top, left, side) in image pixels of each square the retina reads at l = (x, y).

    The same float32 arithmetic as Retina.forward, so the drawn squares are the read ones to the pixel.
    """
    l = l.detach().float().cpu().reshape(1, 2)
    cx = (l[:, 0:1] + 1) / 2 * W  # (1, 1)
    cy = (l[:, 1:2] + 1) / 2 * H
    half = torch.tensor(sides, dtype=torch.float32) / 2  # (k,)
    left = torch.floor(cx - half).long()[0]  # (k,)
    top = torch.floor(cy - half).long()[0]
    return [(int(t), int(c), s) for t, c, s in zip(top, left, sides, strict=True)]


def to_pil(x: torch.Tensor, zoom: int = 1) -> Image.Image:
    """(C, H, W) float in [0, 1] -> RGB image, upscaled by nearest neighbour."""
    a = x.detach().float().cpu().numpy()  # numpy: tiny arrays, no thread-pool start-up per call
    if a.shape[0] == 1:
        a = np.repeat(a, 3, axis=0)  # (3, H, W)
    pixels = np.rint(np.clip(a, 0, 1) * 255).astype(np.uint8).transpose(1, 2, 0)  # (H, W, 3)
    im = Image.fromarray(np.ascontiguousarray(pixels), "RGB")
    return im.resize((im.width * zoom, im.height * zoom), Image.Resampling.NEAREST) if zoom > 1 else im


@lru_cache(maxsize=4)
def _font(size: int = 12) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # Pillow without FreeType: the small bitmap font
        return ImageFont.load_default()


def _draw_path(draw: ImageDraw.ImageDraw, centres: list[tuple[float, float]], zoom: int) -> None:
    pts = [(cx * zoom, cy * zoom) for cx, cy in centres]
    if len(pts) > 1:
        draw.line(pts, fill=PATH_COLOUR, width=max(1, zoom // 4))
    r = max(2, zoom // 2)
    for i, (x, y) in enumerate(pts):
        rr = r + 1 if i == len(pts) - 1 else r  # the current glimpse a little larger
        draw.ellipse([x - rr, y - rr, x + rr, y + rr], fill=PATH_COLOUR)


def _draw_squares(draw: ImageDraw.ImageDraw, squares: list[tuple[int, int, int]], zoom: int) -> None:
    # coarse first, so a finer square is never hidden under a coarser one's edge
    for i in reversed(range(len(squares))):
        top, left, s = squares[i]
        # inclusive corners: the outline's outer edge is exactly the square's outer edge after upscaling
        box = [left * zoom, top * zoom, (left + s) * zoom - 1, (top + s) * zoom - 1]
        draw.rectangle(box, outline=SCALE_COLOURS[i % len(SCALE_COLOURS)], width=max(1, (zoom + 1) // 3))


def canvas_panel(
    canvas: Image.Image, locations: torch.Tensor, t: int | None, sides: list[int], zoom: int
) -> Image.Image:
    """A copy of the upscaled image ``canvas`` (see to_pil) with the path of glimpses 0..t and the squares
    of glimpse t (t=None: the whole path, no squares)."""
    H, W = canvas.height // zoom, canvas.width // zoom
    im = canvas.copy()
    draw = ImageDraw.Draw(im)
    last = locations.shape[0] - 1 if t is None else t
    loc = locations.detach().float().cpu()
    centres = [((float(x) + 1) / 2 * W, (float(y) + 1) / 2 * H) for x, y in loc[: last + 1]]
    _draw_path(draw, centres, zoom)
    if t is not None:
        _draw_squares(draw, scale_squares(loc[t], H, W, sides), zoom)
    return im


def _paste_patches(frame: Image.Image, patches: torch.Tensor, layout: Layout) -> None:
    """patches (k, C, g, g): each enlarged by the layout's patch zoom inside a border of its scale's colour."""
    draw = ImageDraw.Draw(frame)
    for i, (x, y) in enumerate(layout.patch_xy):
        side = patches.shape[-1] * layout.patch_zoom
        colour = SCALE_COLOURS[i % len(SCALE_COLOURS)]
        draw.rectangle([x - BORDER, y - BORDER, x + side + BORDER - 1, y + side + BORDER - 1], fill=colour)
        frame.paste(to_pil(patches[i], layout.patch_zoom), (x, y))


def _draw_probs(frame: Image.Image, probs: torch.Tensor, layout: Layout, label: int | None, names: list[str]) -> None:
    """Bars of the top classes, best first; the prediction green if right (or no label known), red if wrong."""
    draw = ImageDraw.Draw(frame)
    x0, y0 = layout.probs_xy
    p = probs.detach().float().cpu()
    top = p.argsort(descending=True)[:MAX_BARS].tolist()
    row = min(24, (layout.size[1] - y0 - MARGIN) // len(top))
    for r, c in enumerate(top):
        y = y0 + r * row
        name = names[c] if c < len(names) else str(c)
        mark = " *" if c == label else ""  # the true class, wherever it ranks
        draw.text((x0, y + 2), f"{name[:8]}{mark}", fill=TEXT, font=_font())
        draw.text((x0 + LABEL_W - 34, y + 2), f"{float(p[c]):4.0%}", fill=TEXT, font=_font())
        colour = (RIGHT if label in (None, c) else WRONG) if r == 0 else BAR
        width = round(float(p[c]) * BAR_W)
        draw.rectangle([x0 + LABEL_W, y + 3, x0 + LABEL_W + max(width, 1) - 1, y + row - 4], fill=colour)


def glimpse_frames(
    image: torch.Tensor,
    locations: torch.Tensor,
    patches: torch.Tensor | None,
    probs: torch.Tensor,
    sides: list[int],
    label: int | None = None,
    class_names: list[str] | None = None,
    zoom: int | None = None,
    compact: bool = False,
) -> list[Image.Image]:
    """T + 1 frames for one image.

    image (C, H, W) in [0, 1]; locations (T, 2); patches (T, k, C, g, g) as the network saw them (may be
    None when compact); probs (classes,) after the last glimpse; sides: the retina's square sides.
    ``compact`` draws only the canvas and a one-line caption (for grids of many images).
    """
    probs = probs.detach().float().cpu()
    T, k, g = locations.shape[0], len(sides), sides[0]
    layout = frame_layout(tuple(image.shape), g, k, zoom, compact)
    names = class_names or [str(c) for c in range(probs.shape[-1])]
    pred = int(probs.argmax())
    verdict = RIGHT if label in (None, pred) else WRONG
    truth = "" if label is None else f"label {names[label] if label < len(names) else label}  "
    canvas = to_pil(image, layout.zoom)  # converted once, drawn on per frame
    frames = []
    for t in [*range(T), None]:
        frame = Image.new("RGB", layout.size, BACKGROUND)
        frame.paste(canvas_panel(canvas, locations, t, sides, layout.zoom), layout.canvas_xy)
        draw = ImageDraw.Draw(frame)
        step = f"{t + 1}/{T}" if t is not None else "end"
        if compact:
            title = f"{step}  {truth}pred {names[pred]}"
        elif t is None:
            title = f"after {T} glimpses: {truth}pred {names[pred]} ({float(probs[pred]):.0%})"
        else:
            title = f"glimpse {step}  {truth}"
        draw.text((MARGIN, 4), title, fill=verdict if t is None or compact else TEXT, font=_font())
        if not compact:
            if t is not None and patches is not None:
                _paste_patches(frame, patches[t], layout)
            if t is None:
                _draw_probs(frame, probs, layout, label, names)
        frames.append(frame)
    return frames


def tile(images: list[Image.Image], cols: int, pad: int = 4) -> Image.Image:
    """Same-sized images in a grid of ``cols`` columns, row by row."""
    w, h = images[0].size
    rows = -(-len(images) // cols)
    out = Image.new("RGB", (cols * w + (cols - 1) * pad, rows * h + (rows - 1) * pad), BACKGROUND)
    for i, im in enumerate(images):
        out.paste(im, ((i % cols) * (w + pad), (i // cols) * (h + pad)))
    return out


def grid_frames(per_sample: list[list[Image.Image]], cols: int | None = None) -> list[Image.Image]:
    """Frame j of the result tiles frame j of every sample; all samples must have the same frame count."""
    counts = {len(f) for f in per_sample}
    if len(counts) != 1:
        raise ValueError(f"every sample needs the same number of frames, got {sorted(counts)}")
    cols = cols or max(1, round(len(per_sample) ** 0.5))
    return [tile([frames[j] for frames in per_sample], cols) for j in range(counts.pop())]


def strip(per_sample: list[list[Image.Image]]) -> Image.Image:
    """A still: one row per sample, its frames left to right."""
    return tile([im for frames in per_sample for im in frames], cols=len(per_sample[0]))
