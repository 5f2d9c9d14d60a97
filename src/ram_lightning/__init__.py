"""ram-lightning: the Recurrent Attention Model with PyTorch Lightning and Hydra."""

from .lit_module import RAMLitModule
from .losses import LossTerms, hybrid_loss
from .model import RAMOutput, RecurrentAttention
from .retina import Retina

__all__ = ["RAMLitModule", "RAMOutput", "RecurrentAttention", "Retina", "LossTerms", "hybrid_loss"]
