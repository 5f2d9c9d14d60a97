"""Data: verified MNIST files, batched translated/cluttered canvases, and the DataModule."""

from ram_lightning.data.datamodule import RAMDataModule
from ram_lightning.data.fetch import ensure_fashion_mnist, ensure_mnist
from ram_lightning.data.images import load_image

__all__ = ["RAMDataModule", "ensure_fashion_mnist", "ensure_mnist", "load_image"]
