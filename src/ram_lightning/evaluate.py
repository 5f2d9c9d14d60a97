"""`python -m ram_lightning eval ckpt_path=PATH`: test a checkpoint with M=1 and M=mc_eval, write a report.

`split=val` measures the validation set instead, as training did: for choosing between checkpoints
without looking at the test set.
"""

import inspect
import json
import time
from datetime import datetime
from pathlib import Path

import hydra
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig

from .checkpoint import load_module
from .cli import build, run_reporting_errors
from .config import CONF_DIR
from .data import RAMDataModule
from .errors import ConfigError
from .lit_module import RAMLitModule
from .model import FIRST_LOCATIONS
from .paths import free_path
from .train import epoch_metrics, format_metrics

SPLITS = ("test", "val")


def datamodule_from_recipe(recipe: dict, data_dir: str, **overrides: object) -> RAMDataModule:
    """The DataModule that makes exactly the inputs the checkpoint was trained on."""
    accepted = inspect.signature(RAMDataModule).parameters
    kwargs = {k: v for k, v in recipe.items() if k in accepted}
    return RAMDataModule(data_dir=data_dir, **{**kwargs, **overrides})


def _datamodule(cfg: DictConfig, module: RAMLitModule) -> RAMDataModule:
    overrides = {} if cfg.batch_size is None else {"eval_batch_size": int(cfg.batch_size)}
    if cfg.get("data") is not None:  # another variant than the checkpoint's own
        dm = build(cfg.data, **overrides)
    elif module.hparams.recipe is None:
        raise ConfigError("the checkpoint records no data recipe; choose one with data=<mnist|translated60|...>")
    else:
        dm = datamodule_from_recipe(module.hparams.recipe, cfg.paths.data_dir, **overrides)
    if tuple(dm.image_shape) != tuple(module.hparams.in_shape):
        raise ConfigError(
            f"data makes inputs of shape {tuple(dm.image_shape)} but the checkpoint's model reads "
            f"{tuple(module.hparams.in_shape)}; choose data with the same canvas size and channels"
        )
    return dm


def glimpses_on_digit(locations: torch.Tensor, boxes: torch.Tensor, image_hw: tuple[int, int]) -> torch.Tensor:
    """(N, T) whether each glimpse centre of each path (N, T, 2), in [-1, 1] as (x, y), falls inside the
    target's box (N, 4) of top, left, bottom, right pixels (exclusive) on an image of image_hw."""
    H, W = image_hw
    x = (locations[..., 0] + 1) / 2 * W  # (N, T) in pixels, as the retina maps them
    y = (locations[..., 1] + 1) / 2 * H
    top, left, bottom, right = (boxes[:, i : i + 1] for i in range(4))  # (N, 1) each
    return (y >= top) & (y < bottom) & (x >= left) & (x < right)


WHERE_KEYS = (  # what _where_it_looked reports
    "policy_mean_on_digit",
    "policy_mean_errors_off_digit",
    "policy_mean_glimpses_on_digit",  # mean count, on right and on wrong paths
    "policy_mean_first_step_on_digit",
    "policy_mean_on_digit_by_step",
)


def _where_it_looked(module: RAMLitModule, dm: RAMDataModule) -> dict:
    """Of the policy-mean paths on translated or cluttered canvases: the share (%) that put a glimpse on the
    target digit's square, the share of their errors that never did (missed it rather than misread it),
    how many of the T glimpses fell on it (right and wrong paths apart), at which step the first did, and the
    share (%) of paths whose glimpse t is on it, for each t."""
    locations, wrong = (torch.cat(parts) for parts in zip(*module.policy_mean_paths, strict=True))
    on = glimpses_on_digit(locations, dm.digit_boxes("test"), tuple(dm.image_shape[-2:]))  # (N, T)
    hit, count = on.any(1), on.sum(1).float()  # (N,), (N,)
    first = on.float().argmax(1)[hit].float() + 1  # 1-based step of the first glimpse on it, where one was

    def mean(x: torch.Tensor) -> float | None:
        return x.mean().item() if x.numel() else None

    return {
        "policy_mean_on_digit": hit.float().mean().item() * 100,
        "policy_mean_errors_off_digit": (~hit[wrong]).float().mean().item() * 100 if wrong.any() else 0.0,
        "policy_mean_glimpses_on_digit": {"right": mean(count[~wrong]), "wrong": mean(count[wrong])},
        "policy_mean_first_step_on_digit": mean(first),
        "policy_mean_on_digit_by_step": (on.float().mean(0) * 100).tolist(),  # (T,)
    }


class AimedLocator(torch.nn.Module):
    """The model's location policy with its mean moved toward ``target`` (B, 2), the digit's centre: mean
    (1 - weight) * mu + weight * target, sampled with the model's own std. Set ``target`` before each batch."""

    def __init__(self, locator: torch.nn.Module, weight: float) -> None:
        super().__init__()
        self.inner, self.weight, self.std = locator, weight, locator.std
        self.target: torch.Tensor | None = None

    def forward(self, h, noise, l_t=None, rho=None) -> tuple[torch.Tensor, torch.Tensor]:
        mu, _ = self.inner(h, None, l_t, rho)
        mu = (1 - self.weight) * mu + self.weight * self.target
        return mu, mu if noise is None else mu + self.std * noise.to(mu.dtype)

    def log_prob(self, mu: torch.Tensor, l: torch.Tensor) -> torch.Tensor:
        return self.inner.log_prob(mu, l)


@torch.no_grad()
def aimed_errors(module: RAMLitModule, dm: RAMDataModule, split: str, weight: float) -> dict:
    """Errors (%) of the policy-mean path and of one sampled path when every glimpse after the first is aimed
    ``weight`` of the way from where the policy would look to the digit's centre: how much of the error a
    better aim would remove, with the classifier as it is."""
    net = module.net
    boxes = dm.digit_boxes(split).float()  # (N, 4) top, left, bottom, right
    H, W = dm.image_shape[-2:]
    centres = torch.stack([(boxes[:, 1] + boxes[:, 3]) / W - 1, (boxes[:, 0] + boxes[:, 2]) / H - 1], 1)  # (N, 2)
    loader = dm.val_dataloader() if split == "val" else dm.test_dataloader()
    locator, net.locator = net.locator, AimedLocator(net.locator, weight)
    wrong, seen = {"policy_mean": 0, "sampled": 0}, 0
    try:
        for i, batch in enumerate(loader):
            x, y = dm.transform_batch(batch)  # (B, C, H, W), (B,)
            net.locator.target = centres[seen : seen + len(y)]
            seen += len(y)
            for kind in wrong:  # a seeded generator: a uniform first location is drawn from it too
                g = torch.Generator().manual_seed(module.hparams.seed + i)
                out = net(x, deterministic=kind == "policy_mean", generator=g)
                wrong[kind] += (out.logits.argmax(-1) != y).sum().item()
    finally:
        net.locator = locator
    return {f"aimed_err_{kind}": 100 * n / seen for kind, n in wrong.items()}


def _where_line(looked: dict, T: int) -> str:
    def fmt(x: float | None) -> str:
        return "-" if x is None else f"{x:.2f}"

    count = looked["policy_mean_glimpses_on_digit"]
    by_step = " ".join(f"{p:.1f}" for p in looked["policy_mean_on_digit_by_step"])
    return (
        f"policy-mean paths with a glimpse on the digit: {looked['policy_mean_on_digit']:.2f} %; "
        f"of their errors, never on it: {looked['policy_mean_errors_off_digit']:.2f} %\n"
        f"glimpses on the digit, of {T}: {fmt(count['right'])} on right paths, {fmt(count['wrong'])} on wrong ones; "
        f"the first at step {fmt(looked['policy_mean_first_step_on_digit'])} on average\n"
        f"paths on the digit at steps 1 to {T} (%): {by_step}\n"
    )


def _report_path(cfg: DictConfig) -> Path:
    """A report path that does not exist yet: an earlier report is never overwritten."""
    if cfg.out is not None:
        path = Path(cfg.out)
    else:
        ckpt = Path(cfg.ckpt_path).resolve()
        run_dir = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
        path = run_dir / f"eval_{datetime.now():%Y-%m-%d_%H-%M-%S}.json"
    return free_path(path)


def evaluate(cfg: DictConfig) -> dict:
    """Evaluate the checkpoint on its test set (or cfg.data's; its validation set with split=val); return and
    write the report. Its figures are named after the split: test_err, or val_err, and so on."""
    split = cfg.get("split", "test")
    if split not in SPLITS:
        raise ConfigError(f"split={split} is not allowed: choose one of {', '.join(SPLITS)}")
    module = load_module(cfg.ckpt_path)
    if cfg.mc_eval is not None:
        if int(cfg.mc_eval) < 1:
            raise ConfigError(f"mc_eval={cfg.mc_eval} is not allowed: must be >= 1")
        module.hparams.mc_eval = int(cfg.mc_eval)
    if cfg.get("std") is not None:
        if not module.has_policy:
            raise ConfigError(f"std={cfg.std}: {cfg.ckpt_path} has no location policy to sample from")
        std = cfg.std if isinstance(cfg.std, (int, float)) else float("nan")
        if not std > 0:
            raise ConfigError(f"std={cfg.std} is not allowed: must be a number > 0")
        module.net.locator.std = float(std)
    if cfg.get("first_location") is not None:
        if not module.has_policy:
            raise ConfigError(f"first_location={cfg.first_location}: {cfg.ckpt_path} has no location policy")
        if cfg.first_location not in FIRST_LOCATIONS:
            raise ConfigError(
                f"first_location={cfg.first_location} is not allowed: choose one of {', '.join(FIRST_LOCATIONS)}"
            )
        module.net.first_location = cfg.first_location
    dm = _datamodule(cfg, module)
    placed = module.has_policy and dm.variant != "plain"  # a policy, and where the digit lies is known
    weight = cfg.get("aim_at_digit")
    if weight is not None:
        ok = isinstance(weight, (int, float)) and not isinstance(weight, bool) and 0 <= weight <= 1
        if not ok:
            raise ConfigError(f"aim_at_digit={weight!r} is not allowed: must be a number in [0, 1]")
        if not placed:
            raise ConfigError(
                f"aim_at_digit={weight}: needs a model with a location policy on translated or cluttered canvases"
            )
    trainer = pl.Trainer(
        accelerator=cfg.accelerator, devices=1, logger=False, enable_checkpointing=False, enable_model_summary=False
    )
    test = split == "test"  # the policy-mean path, where it looked and the confusion matrix: test only
    looks = test and placed  # where the policy-mean paths looked: on the test set
    module.policy_mean_paths = [] if looks else None
    start = time.perf_counter()
    (trainer.test if test else trainer.validate)(module, datamodule=dm, verbose=False)
    metrics = epoch_metrics(trainer, f"{split}/")
    looked = _where_it_looked(module, dm) if looks else {}
    aimed = {} if weight is None else {"aim_at_digit": weight, **aimed_errors(module, dm, split, float(weight))}
    report = {
        "ckpt_path": str(cfg.ckpt_path),
        "data": dm.recipe,
        "mc_eval": module.hparams.mc_eval,
        "std": module.net.locator.std if module.has_policy else None,
        "first_location": module.net.first_location if module.has_policy else None,
        "split": split,
        f"{split}_err": metrics[f"{split}/err"],
        f"{split}_err_mc": metrics[f"{split}/err_mc"],
        f"{split}_err_per_path": metrics[f"{split}/err_per_path"],  # err's expectation: each of the M paths alone
        f"{split}_err_deterministic": metrics.get(f"{split}/err_deterministic"),  # None: no policy, or val
        # None on plain images (the digit is everywhere) and for models without a policy
        **{key: looked.get(key) for key in WHERE_KEYS},
        **aimed,
        "metrics": metrics,
        "confusion_matrix": module.test_confusion.compute().tolist() if test else None,  # rows: true, cols: predicted
        "seconds": round(time.perf_counter() - start, 2),
        "device": str(trainer.strategy.root_device),
        "torch": torch.__version__,
    }
    path = _report_path(cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "x") as f:  # "x": fail rather than overwrite
        json.dump(report, f, indent=2)
    where = _where_line(looked, module.net.num_glimpses) if looked else ""
    if aimed:
        where += (
            f"aimed {aimed['aim_at_digit']} of the way to the digit: policy-mean path "
            f"{aimed['aimed_err_policy_mean']:.2f} %, one sampled path {aimed['aimed_err_sampled']:.2f} %\n"
        )
    which = "test" if test else "validation"
    print(f"\n{cfg.ckpt_path} on {dm.name} {which} set:\n{format_metrics(metrics)}\n{where}report: {path}")
    return report


@hydra.main(config_path=CONF_DIR, config_name="eval", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_reporting_errors(evaluate, cfg)


if __name__ == "__main__":
    main()
