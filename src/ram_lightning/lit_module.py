"""RAMLitModule: one shared step for train / val / test, Monte Carlo copies, the seed's optimiser."""

import math
import warnings
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from torchmetrics import ConfusionMatrix, MeanMetric

from .baselines import ConvNet, FullyConnected
from .data.datamodule import keys_order_by_step, reopen_cut_epoch
from .errors import ConfigError, RAMError
from .losses import BASELINES, REWARDS, LossTerms, hybrid_loss
from .model import RAMOutput, RecurrentAttention
from .seeding import generator_for


class NonFiniteLossError(RAMError):
    """The training loss became NaN or infinite."""


NETS = {"ram": RecurrentAttention, "fc": FullyConnected, "conv": ConvNet}
STAGES = ("train", "val", "test")
FORMAT_KEY, FORMAT_VERSION = "ram_lightning_format", 1  # bumped when old checkpoints can no longer load

LR_SCHEDULES = ("exponential", "cosine")


def build_net(net: dict, in_shape: tuple[int, int, int], num_classes: int) -> torch.nn.Module:
    kwargs = dict(net)
    kind = kwargs.pop("kind", "ram")
    if kind not in NETS:
        raise ValueError(f"model kind must be one of {sorted(NETS)}, got {kind!r}")
    return NETS[kind](tuple(in_shape), num_classes, **kwargs)


def flat_scales(scales: dict, prefix: str = "") -> dict[str, float]:
    """{"locator": {"fc_rho": 30}} -> {"locator.fc_rho": 30.0}: nested keys, as Hydra overrides make them,
    become dotted parameter-name prefixes; each scale must be a number > 0."""
    flat = {}
    for key, value in scales.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flat_scales(value, name + "."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            flat[name] = float(value)
        else:
            raise ConfigError(f"model.lr_scale.{name}={value!r} is not allowed: must be a number > 0")
    return flat


class RAMLitModule(pl.LightningModule):
    def __init__(
        self,
        net: dict,
        in_shape: tuple[int, int, int],
        num_classes: int = 10,
        lr: float = 1e-3,
        lr_decay: float = 0.97,
        lr_min: float = 1e-4,
        lr_schedule: str = "exponential",
        weight_decay: float = 0.0,
        mc_train: int = 1,
        mc_eval: int = 10,
        reinforce_weight: float = 1.0,
        baseline_weight: float = 1.0,
        label_smoothing: float = 0.0,
        reward: str = "correct",
        distill_weight: float = 0.0,
        baseline: str = "learned",
        policy_lr_scale: float = 1.0,
        lr_scale: dict | None = None,
        seed: int = 0,
        compile: bool = False,
        recipe: dict | None = None,
    ) -> None:
        super().__init__()
        if lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {lr_schedule!r}")
        if policy_lr_scale <= 0:
            raise ValueError(f"policy_lr_scale must be > 0, got {policy_lr_scale}")
        if not 0 <= label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        if reward not in REWARDS:
            raise ValueError(f"reward must be one of {REWARDS}, got {reward!r}")
        if distill_weight < 0 or (distill_weight > 0 and mc_train < 2):
            raise ValueError(f"distill_weight must be >= 0, and > 0 only with mc_train >= 2; got {distill_weight}")
        if baseline not in BASELINES or (baseline == "copies" and mc_train < 2):
            raise ValueError(f"baseline must be one of {BASELINES}, 'copies' only with mc_train >= 2; got {baseline!r}")
        if isinstance(net, DictConfig):
            net = OmegaConf.to_container(net, resolve=True)
        if isinstance(recipe, DictConfig):
            recipe = OmegaConf.to_container(recipe, resolve=True)
        if isinstance(lr_scale, DictConfig):
            lr_scale = OmegaConf.to_container(lr_scale, resolve=True)
        lr_scale = flat_scales(lr_scale or {})
        in_shape = tuple(int(v) for v in in_shape)
        # Plain values only: the checkpoint alone rebuilds the model (recipe: how the inputs were made).
        self.save_hyperparameters(
            {**locals(), "net": net, "in_shape": in_shape, "recipe": recipe}, ignore=["self", "__class__"]
        )
        self.net = build_net(net, in_shape, num_classes)
        names = [n for n, _ in self.net.named_parameters()]
        for part in lr_scale:
            if not any(n == part or n.startswith(part + ".") for n in names):
                parts = sorted({n.rsplit(".", 1)[0] for n in names})
                raise ConfigError(
                    f"model.lr_scale.{part} is not allowed: no part of this model has that name; "
                    f"choose from {', '.join(parts)}"
                )
        names = ["train_err", "test_err_deterministic"]
        names += [f"{stage}_{kind}" for stage in ("val", "test") for kind in ("err", "err_mc", "err_per_path")]
        self.errors = torch.nn.ModuleDict({n: MeanMetric() for n in names})  # in percent
        self.test_confusion = ConfusionMatrix(task="multiclass", num_classes=num_classes)
        self._compiled = torch.compile(self.net) if compile else None
        # a list to collect (locations (B, T, 2), wrong (B,)) of every policy-mean test path; None: keep none
        self.policy_mean_paths: list[tuple[torch.Tensor, torch.Tensor]] | None = None

    def forward(self, x: torch.Tensor, **kwargs: Any) -> RAMOutput:
        if self._compiled is not None:
            try:
                return self._compiled(x, **kwargs)
            except Exception as err:  # compilation needs a working toolchain; eager always works
                warnings.warn(f"torch.compile failed ({type(err).__name__}: {err}); running eagerly", stacklevel=2)
                self._compiled = None
        return self.net(x, **kwargs)

    def _generator(self, x: torch.Tensor, stage: str, batch_idx: int) -> torch.Generator:
        # Sampling noise is a function of (seed, stage, step), so a resumed run draws what it would have.
        step = self.global_step if stage == "train" else batch_idx
        return generator_for(x.device, self.hparams.seed, stage, step, self.global_rank)

    def _shared_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int, stage: str) -> torch.Tensor:
        x, y = batch  # (B, C, H, W), (B,)
        B = x.shape[0]
        M = self.hparams.mc_train if stage == "train" else self.hparams.mc_eval
        out = self(x.repeat_interleave(M, 0), generator=self._generator(x, stage, batch_idx))  # M copies each
        terms = self.loss(out, y.repeat_interleave(M), M)
        if stage == "train" and not torch.isfinite(terms.loss):
            self._stop_on_non_finite(terms.as_dict())
        probs = out.logits.float().softmax(-1).view(B, M, -1)  # (B, M, classes)
        err = self.errors[f"{stage}_err"]
        err(100.0 * (probs[:, 0].argmax(-1) != y).float())
        self.log(f"{stage}/err", err, on_step=stage == "train", on_epoch=True, prog_bar=True)
        if stage != "train":
            pred_mc = probs.mean(1).argmax(-1)
            err_mc = self.errors[f"{stage}_err_mc"]
            err_mc(100.0 * (pred_mc != y).float())
            self.log(f"{stage}/err_mc", err_mc, on_epoch=True, prog_bar=True)
            # One path's error without the luck of one draw: each of the M paths judged alone, then averaged.
            per_path = self.errors[f"{stage}_err_per_path"]
            per_path(100.0 * (probs.argmax(-1) != y[:, None]).float().mean(1))
            self.log(f"{stage}/err_per_path", per_path, on_epoch=True)
            if stage == "test":
                self.test_confusion.update(pred_mc, y)
                if self.has_policy:
                    self._test_deterministic(x, y, batch_idx)
        on_step = stage == "train"
        logged = {f"{stage}/{k}": v.detach() for k, v in terms.as_dict().items()}
        self.log_dict(logged, on_step=on_step, on_epoch=True, batch_size=B * M, sync_dist=not on_step)
        return terms.loss

    def loss(self, out: RAMOutput, y: torch.Tensor, copies: int = 1) -> LossTerms:
        """The hybrid loss with this module's weights, label smoothing, reward, distillation and baseline."""
        hp = self.hparams
        # One path per image (mc_eval=1 at evaluation) has no other copies to compare with: b_t stands in.
        baseline = hp.baseline if copies > 1 else "learned"
        return hybrid_loss(
            out,
            y,
            hp.reinforce_weight,
            hp.baseline_weight,
            hp.label_smoothing,
            hp.reward,
            copies,
            hp.distill_weight,
            baseline,
        )

    @property
    def has_policy(self) -> bool:
        """Whether the net chooses where to look (not the FC / conv baselines or the random-glimpse ablation)."""
        return isinstance(self.net, RecurrentAttention) and not self.net.random_glimpses

    def _test_deterministic(self, x: torch.Tensor, y: torch.Tensor, batch_idx: int) -> None:
        """Error of one path that follows the policy mean, as render and `predict deterministic=true` draw it. A
        uniform first glimpse is still drawn, from its own stream: M=1 and M=10 see the same noise as before."""
        gen = generator_for(x.device, self.hparams.seed, "test_deterministic", batch_idx, self.global_rank)
        out = self(x, deterministic=True, generator=gen)
        pred = out.logits.argmax(-1)  # (B,)
        if self.policy_mean_paths is not None:
            self.policy_mean_paths.append((out.locations.detach().cpu(), (pred != y).cpu()))
        err = self.errors["test_err_deterministic"]
        err(100.0 * (pred != y).float())
        self.log("test/err_deterministic", err, on_epoch=True)

    def _stop_on_non_finite(self, terms: dict[str, torch.Tensor]) -> None:
        values = ", ".join(f"{k}={v.item():.4g}" for k, v in terms.items())
        bad = [k for k, v in terms.items() if not torch.isfinite(v)]
        raise NonFiniteLossError(
            f"non-finite loss at step {self.global_step} (epoch {self.current_epoch}): {', '.join(bad)} "
            f"[{values}]; the last good checkpoint is the run's checkpoints/last.ckpt (saved at the last epoch end). "
            "Try a smaller model.lr or a larger model.net.std."
        )

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, batch_idx, "train")

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._shared_step(batch, batch_idx, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._shared_step(batch, batch_idx, "test")

    def predict_step(self, batch: Any, batch_idx: int) -> dict[str, torch.Tensor]:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        M = self.hparams.mc_eval
        out = self(x.repeat_interleave(M, 0), generator=self._generator(x, "test", batch_idx))
        probs = out.logits.float().softmax(-1).view(x.shape[0], M, -1).mean(1)  # (B, classes)
        T = out.locations.shape[1]
        return {"probs": probs, "locations": out.locations.view(x.shape[0], M, T, 2)[:, 0]}  # (B, T, 2)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[FORMAT_KEY] = FORMAT_VERSION

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self._trainer is not None and keys_order_by_step(self._trainer):
            reopen_cut_epoch(checkpoint)  # a time limit's stop resumes inside its epoch, as the batch order does

    def _lr_factor(self, epoch: int) -> float:
        """lr(epoch) / lr: x lr_decay per epoch, or a half cosine over trainer.max_epochs; never below lr_min."""
        hp = self.hparams
        floor = min(hp.lr_min / hp.lr, 1.0)
        if hp.lr_schedule == "exponential":
            return max(hp.lr_decay**epoch, floor)
        epochs = max(self.trainer.max_epochs or 1, 1)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(epoch / epochs, 1.0)))

    def _rate_scale(self, name: str) -> float:
        """lr(name) / lr for the net's parameter ``name``: policy_lr_scale for the locator's, times the
        lr_scale of the longest part of the name that lr_scale lists."""
        scales = self.hparams.lr_scale  # flat: {"locator.fc_rho": 30.0}
        scale = self.hparams.policy_lr_scale if name.startswith("locator.") and self.has_policy else 1.0
        listed = [part for part in scales if name == part or name.startswith(part + ".")]
        return scale * scales[max(listed, key=len)] if listed else scale

    def _param_groups(self) -> list[dict]:
        """One group per rate, in the order the parameters come (the rest, then the locator), so a model
        with the default rates has one group and older checkpoints still resume.

        The locator's only gradient is the REINFORCE term (its input is detached), and Adam undoes a constant
        scale of a parameter's gradient: reinforce_weight moves the policy only through the shared gradient-norm
        clip. policy_lr_scale is the knob that sets how fast the policy moves against the rest of the model;
        lr_scale sets the rate of named parts, such as a side branch added to a trained model.
        """
        groups: dict[float, list[torch.nn.Parameter]] = {}
        for name, p in self.net.named_parameters():
            groups.setdefault(self._rate_scale(name), []).append(p)
        return [{"params": ps, "lr": self.hparams.lr * scale} for scale, ps in groups.items()]

    def configure_optimizers(self) -> dict:
        hp = self.hparams
        opt = torch.optim.Adam(self._param_groups(), lr=hp.lr, weight_decay=hp.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, self._lr_factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
