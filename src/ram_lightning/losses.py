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
    loss_distill: torch.Tensor
    reward: torch.Tensor  # mean reward R (with reward="correct": the batch accuracy)

    def as_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.__dict__)


REWARDS = ("correct", "prob")
BASELINES = ("learned", "copies")


def reward_of(logits: torch.Tensor, y: torch.Tensor, kind: str = "correct") -> torch.Tensor:
    """(B,) return of each path, the same at every step: "correct" is 1 when the final guess is right (the
    paper's); "prob" is the probability the classifier gives the label, a graded return whose gradient
    still moves the policy on paths that are already right. Neither carries a gradient."""
    if kind == "correct":
        return (logits.argmax(-1) == y).float()
    if kind == "prob":
        return logits.detach().float().softmax(-1).gather(1, y[:, None]).squeeze(1)
    raise ValueError(f"reward must be one of {REWARDS}, got {kind!r}")


def hybrid_loss(
    out: RAMOutput,
    y: torch.Tensor,
    reinforce_weight: float = 1.0,
    baseline_weight: float = 1.0,
    label_smoothing: float = 0.0,
    reward: str = "correct",
    copies: int = 1,
    distill_weight: float = 0.0,
    baseline: str = "learned",
) -> LossTerms:
    """Gradients: CE reaches glimpse, core and classifier; REINFORCE only the locator (its inputs are
    detached in the model); the MSE only the baseline. Per-step terms are summed over t. Label smoothing
    softens the CE target only; the return R (see reward_of) ignores it. With ``copies`` consecutive rows
    per image, the distillation term pulls each path's class distribution towards their mean. ``baseline``
    picks what REINFORCE subtracts from R (see advantage_of); b_t is trained either way."""
    R = reward_of(out.logits, y, reward)  # (B,)
    advantage = advantage_of(R, out.baseline.detach(), baseline, copies)  # (B, T)
    loss_ce = F.cross_entropy(out.logits.float(), y, label_smoothing=label_smoothing)
    loss_reinforce = -(out.log_prob * advantage).sum(1).mean()
    loss_baseline = (out.baseline - R.unsqueeze(1)).pow(2).sum(1).mean()
    loss_distill = distillation(out.logits, copies)
    loss = loss_ce + reinforce_weight * loss_reinforce + baseline_weight * loss_baseline
    loss = loss + distill_weight * loss_distill
    return LossTerms(loss, loss_ce, loss_reinforce, loss_baseline, loss_distill, R.mean())


def advantage_of(R: torch.Tensor, b: torch.Tensor, baseline: str, copies: int) -> torch.Tensor:
    """(B, T) advantage of each step. "learned": R - b_t, the paper's. "copies": R minus the mean return
    of the other paths through the same image (``copies`` consecutive rows), the same at every step. That
    mean is an unbiased baseline, since the other paths' draws are independent of this one's, and it knows
    how hard this very image is, which b_t must guess from the glimpses so far."""
    if baseline == "learned":
        return R.unsqueeze(1) - b
    if baseline != "copies":
        raise ValueError(f"baseline must be one of {BASELINES}, got {baseline!r}")
    if copies < 2:
        raise ValueError(f"baseline='copies' needs at least 2 copies per image, got {copies}")
    R_img = R.view(-1, copies)  # (B/M, M)
    others = (R_img.sum(1, keepdim=True) - R_img) / (copies - 1)  # (B/M, M) leave-one-out mean
    return (R_img - others).reshape(-1, 1).expand_as(b)


def distillation(logits: torch.Tensor, copies: int) -> torch.Tensor:
    """Mean KL(teacher || path) where the teacher is the mean class distribution of an image's ``copies``
    paths (consecutive rows), detached: the many-path answer that one path is taught to give alone.
    Zero, with zero gradient, for one copy."""
    log_p = logits.float().log_softmax(-1).view(-1, copies, logits.shape[-1])  # (B, M, classes)
    teacher = log_p.exp().mean(1, keepdim=True).detach()  # (B, 1, classes)
    return (teacher * (teacher.clamp_min(1e-12).log() - log_p)).sum(-1).mean()
