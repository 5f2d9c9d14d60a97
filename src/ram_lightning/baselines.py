"""The paper's comparison models (Tables 1 and 2), with RAM's output type so one LightningModule fits all."""

import torch
from torch import nn

from .model import RAMOutput


def _no_glimpses(logits: torch.Tensor) -> RAMOutput:
    B = logits.shape[0]
    empty = logits.new_zeros(B, 0, dtype=torch.float32)
    return RAMOutput(logits, log_prob=empty, baseline=empty, locations=logits.new_zeros(B, 0, 2))


def _relu_dropout(dropout: float) -> nn.Module:
    # ReLU then dropout as one parameter-free block, so the layer indices (and the checkpoint keys) do
    # not depend on the dropout rate.
    return nn.Sequential(nn.ReLU(), nn.Dropout(dropout))


class FullyConnected(nn.Module):
    """Two ReLU layers of ``hidden`` units (64 or 256 in the paper) and a softmax layer."""

    def __init__(
        self, in_shape: tuple[int, int, int], num_classes: int = 10, hidden: int = 256, dropout: float = 0.0
    ) -> None:
        super().__init__()
        C, H, W = in_shape
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(C * H * W, hidden),
            _relu_dropout(dropout),
            nn.Linear(hidden, hidden),
            _relu_dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor, **_: object) -> RAMOutput:
        return _no_glimpses(self.net(x))


class ConvNet(nn.Module):
    """The paper's conv net: 8 filters of 10x10 with stride 5, a 256-unit ReLU layer, a softmax layer."""

    def __init__(
        self,
        in_shape: tuple[int, int, int],
        num_classes: int = 10,
        filters: int = 8,
        kernel: int = 10,
        stride: int = 5,
        hidden: int = 256,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        C, H, W = in_shape
        conv = nn.Conv2d(C, filters, kernel, stride)
        n = filters * ((H - kernel) // stride + 1) * ((W - kernel) // stride + 1)
        self.net = nn.Sequential(
            conv, nn.ReLU(), nn.Flatten(), nn.Linear(n, hidden), _relu_dropout(dropout), nn.Linear(hidden, num_classes)
        )

    def forward(self, x: torch.Tensor, **_: object) -> RAMOutput:
        return _no_glimpses(self.net(x))
