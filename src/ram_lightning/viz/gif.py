"""Writing frames as a looping GIF.

imageio's GIF writers have taken the frame duration in seconds (legacy plugin) and in milliseconds
(Pillow plugin). We always call the Pillow plugin explicitly and convert from fps in one place,
``frame_duration_ms``, so the unit never depends on which plugin imageio would pick.
"""

from pathlib import Path

import imageio.v3 as iio
import numpy as np
from PIL import Image


def frame_duration_ms(fps: float) -> int:
    """Milliseconds per frame for ``fps`` frames per second, rounded to the GIF's 10 ms resolution."""
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    return max(10, 10 * round(100 / fps))  # GIF stores centiseconds; browsers treat < 2 cs oddly anyway


def write_gif(frames: list[Image.Image], path: str | Path, fps: float) -> Path:
    """Write RGB frames to a new file ``path`` (never overwritten: FileExistsError), looping forever."""
    path = Path(path)
    stack = np.stack([np.asarray(f.convert("RGB")) for f in frames])  # (N, H, W, 3)
    with open(path, "xb") as f:
        # Pillow merges identical consecutive frames into one longer frame; callers draw distinct frames
        iio.imwrite(f, stack, plugin="pillow", extension=".gif", duration=frame_duration_ms(fps), loop=0)
    return path
