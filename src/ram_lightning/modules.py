"""The parts of RAM: glimpse network f_g, core f_h, location network f_l, baseline f_b."""

import math

import torch
from torch import nn
from torch.nn import functional as F

CORES = ("lstm", "rnn")
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def side_branch(in_features: int, width: int, out_features: int, name: str) -> nn.Sequential | None:
    """A ReLU layer of ``width`` units whose output layer starts at zero, or None for width 0.

    Added beside a trained linear map, it leaves that map's outputs unchanged at first, so a model grown from
    a checkpoint (``init_from=`` with ``init_strict=false``) starts out exactly as the checkpoint's model.
    """
    if isinstance(width, bool) or not isinstance(width, int) or width < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {width!r}")
    if not width:
        return None
    mlp = nn.Sequential(nn.Linear(in_features, width), nn.ReLU(), nn.Linear(width, out_features))
    nn.init.zeros_(mlp[-1].weight)
    nn.init.zeros_(mlp[-1].bias)
    return mlp


class GlimpseNetwork(nn.Module):
    """g_t = ReLU(Lin(h_g) + Lin(h_l)) with h_g = ReLU(Lin((rho - pixel_mean) / pixel_std)) and h_l = ReLU(Lin(l)).

    Standardising the pixels is the usual MNIST input scaling; pixels off the image read 0 in the retina
    and so standardise like the black background. ``extra_hidden`` > 0 adds that many units to h_g through a
    side branch whose output starts at zero: a trained glimpse network made wider without changing g_t.
    """

    def __init__(
        self, in_features: int, hidden_g: int, hidden_l: int, glimpse_dim: int,
        pixel_mean: float = 0.0, pixel_std: float = 1.0, extra_hidden: int = 0,
    ) -> None:  # fmt: skip
        super().__init__()
        if pixel_std <= 0:
            raise ValueError(f"pixel_std must be > 0, got {pixel_std}")
        self.pixel_mean, self.pixel_std = pixel_mean, pixel_std
        self.fc_rho = nn.Linear(in_features, hidden_g)
        self.fc_l = nn.Linear(2, hidden_l)
        self.out_g = nn.Linear(hidden_g, glimpse_dim)
        self.out_l = nn.Linear(hidden_l, glimpse_dim)
        self.mlp = side_branch(in_features, extra_hidden, glimpse_dim, "glimpse_hidden")

    def forward(self, rho: torch.Tensor, l: torch.Tensor) -> torch.Tensor:
        rho = (rho.flatten(1) - self.pixel_mean) / self.pixel_std  # (B, k * C * g * g)
        h_g = F.relu(self.fc_rho(rho))  # (B, hidden_g)
        h_l = F.relu(self.fc_l(l))  # (B, hidden_l)
        z = self.out_g(h_g) + self.out_l(h_l)  # (B, glimpse_dim)
        if self.mlp is not None:
            z = z + self.mlp(rho)
        return F.relu(z)


class Core(nn.Module):
    """h_t = f_h(h_{t-1}, g_t): an LSTM cell (the seed's) or a ReLU RNN (the paper's).

    The state is always a pair (h, c) so the unroll does not depend on the kind; the RNN leaves c alone.
    """

    def __init__(self, kind: str, glimpse_dim: int, hidden: int) -> None:
        super().__init__()
        if kind not in CORES:
            raise ValueError(f"core must be one of {CORES}, got {kind!r}")
        self.kind, self.hidden = kind, hidden
        if kind == "lstm":
            self.cell = nn.LSTMCell(glimpse_dim, hidden)
        else:
            self.fc_g = nn.Linear(glimpse_dim, hidden)
            self.fc_h = nn.Linear(hidden, hidden)

    def forward(self, g_t: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        if self.kind == "lstm":
            return self.cell(g_t, state)
        h, c = state
        return F.relu(self.fc_g(g_t) + self.fc_h(h)), c


class Locator(nn.Module):
    """pi(l | h): a 2-D Gaussian with mean tanh(Lin(h)) and a fixed std.

    ``hidden_layer`` > 0 adds a ReLU layer of that width beside the linear map: mean tanh(Lin(h) + MLP(h)).
    ``reads_location`` adds the current location: mean tanh(Lin(h) + W l_t + ...), so that the next glimpse
    can be placed relative to this one. ``glimpse_features`` > 0 adds a linear map from the glimpse's own
    pixels, as many as that, which CE-trained features may not keep the digit's place in. The pixels are read
    as they are, not standardised, so black background adds nothing: standardised, hundreds of background
    pixels share one value, and REINFORCE's noisy steps on their weights moved the mean (docs/results.md).
    All start at zero, so a locator loaded from a linear one starts out choosing the same means.
    """

    def __init__(
        self, hidden: int, std: float, hidden_layer: int = 0, reads_location: bool = False, glimpse_features: int = 0
    ) -> None:
        super().__init__()
        if std <= 0:
            raise ValueError(f"location std must be > 0, got {std}")
        if not isinstance(reads_location, bool):
            raise ValueError(f"locator_reads_location must be true or false, got {reads_location!r}")
        self.fc = nn.Linear(hidden, 2)
        self.mlp = side_branch(hidden, hidden_layer, 2, "locator_hidden")
        self.fc_where = nn.Linear(2, 2, bias=False) if reads_location else None
        self.fc_rho = nn.Linear(glimpse_features, 2, bias=False) if glimpse_features else None
        for fc in (self.fc_where, self.fc_rho):
            if fc is not None:
                nn.init.zeros_(fc.weight)
        self.std = std

    def forward(
        self,
        h: torch.Tensor,
        noise: torch.Tensor | None,
        l_t: torch.Tensor | None = None,
        rho: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the policy mean mu (B, 2) and the location drawn from pi (B, 2), detached and not yet clipped.

        ``noise`` (B, 2) is a standard normal draw, or None to take the policy mean. ``l_t`` (B, 2) is the
        current location, read only with ``reads_location``; ``rho`` (B, glimpse_features) the pixels of the
        glimpse at l_t, read only with ``glimpse_features``.
        """
        h = h.detach()  # REINFORCE trains the locator only, never the core
        z = self.fc(h)  # (B, 2)
        if self.mlp is not None:
            z = z + self.mlp(h)
        if self.fc_where is not None:
            if l_t is None:
                raise ValueError("a locator that reads the location needs the current location l_t")
            z = z + self.fc_where(l_t.detach().to(z.dtype))
        if self.fc_rho is not None:
            if rho is None:
                raise ValueError("a locator that reads the glimpse needs its pixels rho")
            z = z + self.fc_rho(rho.detach().to(z.dtype))
        mu = torch.tanh(z)
        l = mu.detach() if noise is None else (mu + self.std * noise.to(mu.dtype)).detach()
        return mu, l

    def log_prob(self, mu: torch.Tensor, l: torch.Tensor) -> torch.Tensor:
        """log pi(l | mu) (...,) of unclipped draws l (..., 2); one call serves every step of an unroll."""
        # Closed-form Gaussian log-density: torch.distributions would validate its arguments with a host sync.
        return (-0.5 * ((l - mu) / self.std) ** 2).sum(-1) - 2 * (math.log(self.std) + _HALF_LOG_2PI)
