"""A user's image file as the input a checkpoint was trained on, following the checkpoint's data recipe.

Image-folder recipes convert exactly as training did (``load_image``). MNIST and Fashion-MNIST recipes
were trained on the prepared 28x28 sets, so a photo or scan is prepared the way those sets were: light
ink on black, cropped to the ink, scaled into a box (20x20 centred by mass for digits, 28x28 centred for
Fashion-MNIST) and, for translated or cluttered recipes, placed at the centre of the empty canvas.
"""

import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ram_lightning.data.datamodule import CLASSES, DIGIT
from ram_lightning.data.images import load_image
from ram_lightning.errors import CheckpointError, DataError

DIGIT_BOX = {"mnist": 20, "fashion-mnist": DIGIT}  # side of the box the object is scaled into
WORK_SIDE = 1024  # photos are shrunk to this before finding the ink: enough for a 20-pixel digit
INK = 0.25  # a pixel at this share of the brightest one counts as ink when cropping
FLOOR = 0.10  # fainter pixels become background: paper texture and uneven light


def check_recipe(recipe: dict | None, path: str | Path) -> dict:
    """The checkpoint's recipe, if predictions can follow it; ``path`` names the checkpoint in errors."""
    if not recipe or recipe.get("dataset") not in (*CLASSES, "image_folder"):
        raise CheckpointError(
            f"{path} records no usable data recipe (got {recipe!r}), so there is no way to know how its "
            "inputs were made; use a checkpoint written by `python -m ram_lightning train`"
        )
    return recipe


def class_names(recipe: dict) -> list[str]:
    """Output index -> class name: the folder names of an image folder, else the data set's classes."""
    return list(recipe["classes"]) if recipe["dataset"] == "image_folder" else list(CLASSES[recipe["dataset"]])


def input_shape(recipe: dict) -> tuple[int, int, int]:
    """(C, H, W) of the model input the recipe makes."""
    if recipe["dataset"] == "image_folder":
        return int(recipe["channels"]), int(recipe["image_size"]), int(recipe["image_size"])
    side = DIGIT if recipe["variant"] == "plain" else int(recipe["canvas"])
    return 1, side, side


def describe_inputs(recipe: dict) -> str:
    """One sentence on how a file becomes the model's input, for the console and export sidecars."""
    C, H, W = input_shape(recipe)
    if recipe["dataset"] == "image_folder":
        mode = "grayscale" if C == 1 else "RGB"
        return f"{mode}, longer side scaled to {H} (bilinear), centred on a black {H}x{W} square, values divided by 255"
    box = DIGIT_BOX[recipe["dataset"]]
    text = (
        f"grayscale, inverted if mostly bright (the model expects light ink on black), cropped to the ink, "
        f"scaled into {box}x{box} and centred on a black {DIGIT}x{DIGIT} square"
    )
    if (H, W) != (DIGIT, DIGIT):
        text += f", which is placed at the centre of an empty {H}x{W} canvas"
    return text + ", values divided by 255"


def check_size(path: Path, max_pixels: int) -> None:
    """Refuse a file whose header claims more than ``max_pixels`` before anything is decoded."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit follows
            with Image.open(path) as im:  # reads the header only
                w, h = im.size
    except Image.DecompressionBombError as err:  # Pillow's own guard already refuses far larger claims
        raise DataError(f"{path} refused: it declares more than max_pixels={max_pixels:,} pixels ({err})") from None
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise DataError(f"{path} is not an image this program can read ({_first_line(err)})") from None
    if w * h > max_pixels:
        raise DataError(
            f"{path} refused: it declares {w}x{h} = {w * h:,} pixels, more than max_pixels={max_pixels:,}; "
            "shrink the image first (a small file can claim a huge size to exhaust memory)"
        )


def to_input(path: Path, recipe: dict) -> tuple[torch.Tensor, bool]:
    """The file as the recipe's uint8 input (C, H, W) and whether its brightness was inverted.

    Call ``check_size`` first: this decodes the whole image.
    """
    if recipe["dataset"] == "image_folder":
        _, size, _ = input_shape(recipe)
        return load_image(path, int(recipe["channels"]), size), False
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im).convert("L")  # phone photos store their rotation in EXIF
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise DataError(f"{path} is not a readable image ({_first_line(err)})") from None
    im.thumbnail((WORK_SIDE, WORK_SIDE), Image.Resampling.BILINEAR)
    return digit_canvas(np.asarray(im, dtype=np.float32), recipe["dataset"], input_shape(recipe)[1])


def digit_canvas(gray: np.ndarray, dataset: str, side: int) -> tuple[torch.Tensor, bool]:
    """gray (h, w) in [0, 255] -> (uint8 (1, side, side), inverted): the object MNIST-style at the centre."""
    inverted = bool(gray.mean() > 127)  # mostly bright: dark ink on paper, the opposite of MNIST
    ink = _clean(255 - gray if inverted else gray)
    rows, cols = _ink_box(ink)
    obj = _scale_into(ink[rows, cols], DIGIT_BOX[dataset])  # (n, m), longer side = box
    square = _place(obj, by_mass=dataset == "mnist")  # (28, 28)
    canvas = np.zeros((side, side), dtype=np.uint8)
    o = (side - DIGIT) // 2  # translated / cluttered recipes: the 28x28 square at the centre
    canvas[o : o + DIGIT, o : o + DIGIT] = square
    return torch.from_numpy(canvas)[None], inverted  # (1, side, side)


def _clean(a: np.ndarray) -> np.ndarray:
    """Background (the median: most of the picture) to 0, the brightest ink to 255, faint noise to 0."""
    bg, top = float(np.median(a)), float(a.max())
    if top - bg < 1:  # a flat picture: nothing to find
        return np.zeros_like(a)
    a = np.clip((a - bg) / (top - bg), 0, 1)
    a[a < FLOOR] = 0
    return a * 255


def _ink_box(a: np.ndarray) -> tuple[slice, slice]:
    ys, xs = np.nonzero(a >= INK * 255)
    if ys.size == 0:
        return slice(None), slice(None)
    return slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1)


def _scale_into(a: np.ndarray, box: int) -> np.ndarray:
    h, w = a.shape
    scale = box / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))  # Pillow wants (width, height)
    im = Image.fromarray(np.rint(a).astype(np.uint8)).resize(size, Image.Resampling.BILINEAR)
    return np.asarray(im)


def _place(obj: np.ndarray, by_mass: bool) -> np.ndarray:
    """obj (n, m) on a black 28x28 square: centred by its centre of mass (MNIST) or its box (Fashion)."""
    n, m = obj.shape
    top, left = (DIGIT - n) // 2, (DIGIT - m) // 2
    mass = obj.astype(np.float64)
    if by_mass and mass.sum() > 0:
        cy = (mass.sum(1) * np.arange(n)).sum() / mass.sum()  # in pixel indices; pixel i covers [i, i+1)
        cx = (mass.sum(0) * np.arange(m)).sum() / mass.sum()
        top = min(max(round(DIGIT / 2 - 0.5 - cy), 0), DIGIT - n)  # never pushed off the square
        left = min(max(round(DIGIT / 2 - 0.5 - cx), 0), DIGIT - m)
    square = np.zeros((DIGIT, DIGIT), dtype=np.uint8)
    square[top : top + n, left : left + m] = obj
    return square


def _first_line(err: Exception) -> str:
    return str(err).splitlines()[0] if str(err) else type(err).__name__
