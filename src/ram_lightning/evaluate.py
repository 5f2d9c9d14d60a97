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
    trainer = pl.Trainer(
        accelerator=cfg.accelerator, devices=1, logger=False, enable_checkpointing=False, enable_model_summary=False
    )
    test = split == "test"  # the policy-mean path, where it looked and the confusion matrix: test only
    placed = test and module.has_policy and dm.variant != "plain"  # where the digit lies is known
    module.policy_mean_paths = [] if placed else None
    start = time.perf_counter()
    (trainer.test if test else trainer.validate)(module, datamodule=dm, verbose=False)
    metrics = epoch_metrics(trainer, f"{split}/")
    looked = _where_it_looked(module, dm) if placed else {}
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
    which = "test" if test else "validation"
    print(f"\n{cfg.ckpt_path} on {dm.name} {which} set:\n{format_metrics(metrics)}\n{where}report: {path}")
    return report


@hydra.main(config_path=CONF_DIR, config_name="eval", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_reporting_errors(evaluate, cfg)


if __name__ == "__main__":
    main()
