"""Turning image files into the uint8 squares the model sees; shared by training and ``predict``."""

import warnings
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError

from ram_lightning.errors import DataError

MAX_PIXELS = 64_000_000  # refuse to decode anything larger: a tiny file can claim a huge canvas
MODES = {1: "L", 3: "RGB"}


def load_image(path: str | Path, channels: int, size: int) -> torch.Tensor:
    """One image file as uint8 (C, size, size): converted to ``channels``, scaled to fit, zero-padded.

    The longer side is scaled (bilinear, up or down) to ``size`` keeping the aspect ratio, and the
    result is centred on a black square, so nothing is cropped and nothing is stretched.
    """
    path = Path(path)
    if channels not in MODES:
        raise DataError(f"channels={channels} for {path}: use 1 (grayscale) or 3 (RGB)")
    try:
        with warnings.catch_warnings():
            # Pillow only warns between its own limit and twice that; ours is checked just below
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:  # reads the header only, so the size check costs nothing
                w, h = im.size
                if w * h > MAX_PIXELS:
                    raise DataError(
                        f"{path} claims {w}x{h} pixels, more than the {MAX_PIXELS // 10**6} MP this "
                        "loader decodes; shrink the image or remove it from the folder"
                    )
                im = im.convert(MODES[channels])  # decodes; truncated files fail here
    except DataError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as err:
        raise DataError(f"{path} is not a readable image ({err}); remove or replace it") from err
    return _fit_square(im, size)


def _fit_square(im: Image.Image, size: int) -> torch.Tensor:
    w, h = im.size
    scale = size / max(w, h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    im = im.resize((nw, nh), Image.Resampling.BILINEAR)
    square = Image.new(im.mode, (size, size), 0)
    square.paste(im, ((size - nw) // 2, (size - nh) // 2))
    C = len(square.getbands())
    pixels = torch.frombuffer(bytearray(square.tobytes()), dtype=torch.uint8)
    return pixels.view(size, size, C).permute(2, 0, 1).contiguous()  # (C, size, size)
