"""GlimpseImages: every few epochs, draw where the model looks on a fixed set of validation images."""

import numpy as np
import pytorch_lightning as pl
from pytorch_lightning.loggers import TensorBoardLogger

from ram_lightning.errors import ConfigError
from ram_lightning.model import RecurrentAttention
from ram_lightning.viz.frames import strip
from ram_lightning.viz.glimpses import draw_batch


class GlimpseImages(pl.Callback):
    """Log glimpse frames to TensorBoard at the end of every ``every_n_epochs``-th validation epoch.

    The images are the first ``n`` of the first validation batch, kept from the first time they are seen,
    so epochs compare the same pixels. Logs ``glimpses/overview`` (one row per image, one column per
    glimpse) and ``glimpses/<i>`` (the full frames of image i). Does nothing without a TensorBoardLogger
    or for the comparison models, which have no glimpses.
    """

    def __init__(self, every_n_epochs: int = 5, n: int = 8, deterministic: bool = True, seed: int = 0) -> None:
        for key, value in (("every_n_epochs", every_n_epochs), ("n", n)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"callbacks.glimpse_images.{key}={value!r} is not allowed: use an integer >= 1")
        self.every_n_epochs, self.n, self.deterministic, self.seed = every_n_epochs, n, deterministic, seed
        self.x = self.y = None  # (n, C, H, W), (n,) on CPU once seen

    def on_validation_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if self.x is not None or batch_idx != 0 or dataloader_idx != 0:
            return
        if isinstance(batch, tuple | list) and len(batch) >= 2 and getattr(batch[0], "ndim", 0) == 4:
            # as validation_step receives it: in [0, 1], in the dtype the precision plugin chose
            self.x = batch[0][: self.n].detach().cpu().clone()
            self.y = batch[1][: self.n].detach().cpu().clone()

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or self.x is None or (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        tb = next((lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)
        net = getattr(pl_module, "net", None)
        if tb is None or not trainer.is_global_zero or not isinstance(net, RecurrentAttention):
            return
        names = getattr(trainer.datamodule, "classes", None) if trainer.datamodule is not None else None
        x = self.x.to(pl_module.device)
        drawn = draw_batch(net, x, self.y, names, self.deterministic, self.seed)
        step = trainer.global_step
        overview = np.asarray(strip(drawn.compact))  # (H, W, 3)
        tb.experiment.add_image("glimpses/overview", overview, step, dataformats="HWC")
        for i, frames in enumerate(drawn.full):
            stack = np.stack([np.asarray(f) for f in frames])  # (T + 1, H, W, 3)
            tb.experiment.add_images(f"glimpses/{i}", stack, step, dataformats="NHWC")
