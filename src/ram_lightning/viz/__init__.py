"""Glimpse visualisation: frames drawn with Pillow, GIFs, and a TensorBoard callback."""

from ram_lightning.viz.callback import GlimpseImages
from ram_lightning.viz.frames import frame_layout, glimpse_frames, grid_frames, scale_squares, strip
from ram_lightning.viz.gif import frame_duration_ms, write_gif
from ram_lightning.viz.glimpses import BatchFrames, draw_batch

__all__ = [
    "BatchFrames",
    "GlimpseImages",
    "draw_batch",
    "frame_duration_ms",
    "frame_layout",
    "glimpse_frames",
    "grid_frames",
    "scale_squares",
    "strip",
    "write_gif",
]
