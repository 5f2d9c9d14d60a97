"""The hybrid loss: cross-entropy + REINFORCE with a learned baseline + the baseline's MSE."""

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from .model import RAMOutput


@dataclass
class LossTerms:
    loss: torch.Tensor  # the weighted total that is back-propagated
    loss_ce: torch.Tensor
    loss_reinforce: torch.Tensor
    loss_baseline: torch.Tensor
    reward: torch.Tensor  # mean reward R (the batch accuracy)

    def as_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.__dict__)


def hybrid_loss(
    out: RAMOutput,
    y: torch.Tensor,
    reinforce_weight: float = 1.0,
    baseline_weight: float = 1.0,
    label_smoothing: float = 0.0,
) -> LossTerms:
    """Gradients: CE reaches glimpse, core and classifier; REINFORCE only the locator (its inputs are
    detached in the model); the MSE only the baseline. Per-step terms are summed over t. Label smoothing
    softens the CE target only: the reward stays whether the guess is right."""
    R = (out.logits.argmax(-1) == y).float()  # (B,): 1 if the final guess is right; same return at every t
    advantage = R.unsqueeze(1) - out.baseline.detach()  # (B, T)
    loss_ce = F.cross_entropy(out.logits.float(), y, label_smoothing=label_smoothing)
    loss_reinforce = -(out.log_prob * advantage).sum(1).mean()
    loss_baseline = (out.baseline - R.unsqueeze(1)).pow(2).sum(1).mean()
    loss = loss_ce + reinforce_weight * loss_reinforce + baseline_weight * loss_baseline
    return LossTerms(loss, loss_ce, loss_reinforce, loss_baseline, R.mean())
