"""RecurrentAttention: the T-step unroll of RAM."""

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .modules import Core, GlimpseNetwork, Locator, side_branch
from .retina import Retina

FIRST_LOCATIONS = ("center", "uniform")


@dataclass
class RAMOutput:
    """What one unroll produces; T = number of glimpses (0 for the comparison models)."""

    logits: torch.Tensor  # (B, classes), from h_T only
    log_prob: torch.Tensor  # (B, T): log pi(l_{t+1} | h_t); 0 where no policy choice was made
    baseline: torch.Tensor  # (B, T): b_t, predicted from h_t
    locations: torch.Tensor  # (B, T, 2): where each glimpse looked, in order
    patches: torch.Tensor | None = None  # (B, T, k, C, g, g) when asked for


class RecurrentAttention(nn.Module):
    def __init__(
        self,
        in_shape: tuple[int, int, int],
        num_classes: int = 10,
        patch_size: int = 8,
        num_scales: int = 1,
        num_glimpses: int = 6,
        hidden_g: int = 128,
        hidden_l: int = 128,
        glimpse_dim: int = 256,
        hidden: int = 256,
        core: str = "lstm",
        std: float = 0.22,
        first_location: str = "center",
        random_glimpses: bool = False,
        pixel_mean: float = 0.0,
        pixel_std: float = 1.0,
        dropout: float = 0.0,
        locator_hidden: int = 0,
        locator_reads_location: bool = False,
        locator_reads_glimpse: bool = False,
        glimpse_hidden: int = 0,
        classifier_hidden: int = 0,
    ) -> None:
        super().__init__()
        if num_glimpses < 1:
            raise ValueError(f"num_glimpses must be >= 1, got {num_glimpses}")
        if first_location not in FIRST_LOCATIONS:
            raise ValueError(f"first_location must be one of {FIRST_LOCATIONS}, got {first_location!r}")
        if not isinstance(locator_reads_glimpse, bool):
            raise ValueError(f"locator_reads_glimpse must be true or false, got {locator_reads_glimpse!r}")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        C = in_shape[0]
        self.dropout = dropout
        self.num_glimpses, self.first_location, self.random_glimpses = (
            num_glimpses,
            first_location,
            random_glimpses,
        )
        self.retina = Retina(patch_size, num_scales)
        pixels = num_scales * C * patch_size**2  # what one glimpse holds
        self.glimpse = GlimpseNetwork(pixels, hidden_g, hidden_l, glimpse_dim, pixel_mean, pixel_std, glimpse_hidden)
        self.core = Core(core, glimpse_dim, hidden)
        self.locator = Locator(
            hidden, std, locator_hidden, locator_reads_location, pixels if locator_reads_glimpse else 0
        )
        self.baseline = nn.Linear(hidden, 1)
        self.classifier = nn.Linear(hidden, num_classes)
        # Beside the paper's linear softmax, a ReLU layer that starts at zero (see side_branch); CE trains it.
        self.classifier_mlp = side_branch(hidden, classifier_hidden, num_classes, "classifier_hidden")

    def _uniform(self, n: int, B: int, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return torch.rand(n, B, 2, generator=generator, device=x.device, dtype=torch.float32) * 2 - 1  # (n, B, 2)

    def _dropout_mask(self, B: int, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor | None:
        """In training, a mask that drops each unit of h_T on its way to the classifier with probability
        ``dropout`` (the rest scaled by 1 / (1 - dropout)). Drawn from ``generator`` like the rest of the
        noise, so a resumed run drops what it would have; h_T still reaches the baseline and locator whole."""
        if not (self.training and self.dropout > 0):
            return None
        u = torch.rand(B, self.core.hidden, generator=generator, device=x.device)  # (B, hidden)
        return (u >= self.dropout).float() / (1 - self.dropout)

    def forward(
        self,
        x: torch.Tensor,
        deterministic: bool = False,
        return_patches: bool = False,
        generator: torch.Generator | None = None,
    ) -> RAMOutput:
        """x: (B, C, H, W). ``deterministic`` looks at the policy mean instead of sampling.

        A uniform first location (and the random-glimpse ablation) draws from ``generator``, so a seeded
        generator makes even those runs repeatable.
        """
        B, T = x.shape[0], self.num_glimpses
        h = x.new_zeros(B, self.core.hidden, dtype=torch.float32)
        state = (h, h)
        # All randomness is drawn before the unroll: one call per kind, and none inside the loop, where a
        # generator argument would split a torch.compile graph at every step.
        if self.random_glimpses:
            where = self._uniform(T, B, x, generator)  # (T, B, 2): every location at random
        elif self.first_location == "uniform":
            where = self._uniform(1, B, x, generator)  # (1, B, 2)
        else:
            where = x.new_zeros(1, B, 2, dtype=torch.float32)
        sample = not (deterministic or self.random_glimpses)
        noise = torch.randn(T - 1, B, 2, generator=generator, device=x.device) if sample else None  # (T-1, B, 2)
        keep = self._dropout_mask(B, x, generator)  # (B, hidden) or None
        l_t = where[0]
        hs, mus, draws, locations, patches = [], [], [], [], []
        for t in range(T):
            rho = self.retina(x, l_t)  # (B, k, C, g, g)
            g_t = self.glimpse(rho.to(l_t.dtype), l_t)  # l_t is detached: CE never reaches the locator
            state = self.core(g_t, state)
            hs.append(state[0])
            locations.append(l_t)
            if return_patches:
                patches.append(rho)
            if t == T - 1:  # the last state chooses no location
                break
            if self.random_glimpses:
                l_t = where[t + 1]
            else:
                mu, l = self.locator(state[0], None if noise is None else noise[t], l_t, rho.flatten(1))
                mus.append(mu)
                draws.append(l)
                l_t = l.clamp(-1, 1)
        h_all = torch.stack(hs, 1)  # (B, T, hidden)
        # Heads that the unroll does not wait for run once on all T states: fewer, larger ops.
        baseline = self.baseline(h_all.detach()).squeeze(-1)  # (B, T); the critic never trains the core
        if mus:  # log pi(l_{t+1} | h_t), and 0 for the last state, which chooses nothing
            log_prob = F.pad(self.locator.log_prob(torch.stack(mus, 1), torch.stack(draws, 1)), (0, 1))  # (B, T)
        else:
            log_prob = x.new_zeros(B, T, dtype=torch.float32)
        h_T = hs[-1] if keep is None else hs[-1] * keep
        logits = self.classifier(h_T)  # (B, classes)
        if self.classifier_mlp is not None:
            logits = logits + self.classifier_mlp(h_T)
        return RAMOutput(
            logits=logits,
            log_prob=log_prob,
            baseline=baseline,
            locations=torch.stack(locations, 1),  # (B, T, 2)
            patches=torch.stack(patches, 1) if return_patches else None,  # (B, T, k, C, g, g)
        )
