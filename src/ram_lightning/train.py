"""`python -m ram_lightning train`: fit, keep the best and last checkpoints, test the best one."""

import contextlib
import json
import logging
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import hydra
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import LearningRateMonitor

from .checkpoint import load_weights, read_checkpoint
from .cli import build, run_reporting_errors
from .config import CONF_DIR
from .errors import RAMError
from .validate import require, validate_model

log = logging.getLogger(__name__)


def _instantiate_all(group: DictConfig | None) -> list:
    return [build(c) for c in (group or {}).values() if c is not None and "_target_" in c]


def epoch_metrics(trainer: pl.Trainer, prefix: str = "") -> dict[str, float]:
    """The epoch-level numbers Lightning collected, without the per-step duplicates."""
    got = trainer.callback_metrics
    return {
        k.removesuffix("_epoch"): float(v) for k, v in got.items() if k.startswith(prefix) and not k.endswith("_step")
    }


def format_metrics(metrics: dict[str, float]) -> str:
    width = max(map(len, metrics), default=0)
    return "\n".join(f"  {k:<{width}}  {v:10.4f}" for k, v in sorted(metrics.items()))


def cpu_model() -> str:
    """This machine's CPU model name, e.g. "AMD EPYC"."""
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        model = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), model)
    return model


def hardware(trainer: pl.Trainer) -> str:
    """What the run trained on, for results tables: GPU name or CPU model, and how many."""
    n = trainer.num_devices * trainer.num_nodes
    if trainer.strategy.root_device.type == "cuda":
        return f"{n} x {torch.cuda.get_device_name(trainer.strategy.root_device)}"
    return f"{cpu_model()}, {os.cpu_count()} cores, threads={torch.get_num_threads()}, processes={n}"


def checkpoint_to_test(trainer: pl.Trainer) -> str:
    """The best checkpoint to test, or "" for the final weights: none was saved, or the one a resumed run
    still ranks first lay in the earlier run's folder and is gone (moved, or left on another machine)."""
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    if not best:
        log.warning("no best checkpoint was saved; testing the final weights")
    elif not Path(best).is_file():
        log.warning("the best checkpoint %s is gone; testing the final weights", best)
        best = ""
    return best


def train(cfg: DictConfig) -> dict[str, float | str]:
    """Train as `cfg` says; return the final validation and test metrics (also written to metrics.json)."""
    out_dir = Path(cfg.paths.output_dir)
    if (out_dir / "metrics.json").exists():
        raise RAMError(f"{out_dir} already holds a finished run; refusing to overwrite it")
    pl.seed_everything(cfg.seed, workers=True)
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    dm = build(cfg.data)
    validate_model(cfg.model, dm.image_shape[1:])
    init_from, strict = cfg.get("init_from"), cfg.get("init_strict", True)
    require(isinstance(strict, bool), "init_strict", strict, "choose true or false")
    if cfg.ckpt_path is not None and init_from is not None:
        raise RAMError("set ckpt_path= (resume a run) or init_from= (start from its weights), not both")
    if cfg.ckpt_path is not None:
        read_checkpoint(cfg.ckpt_path)  # refuse a missing or unsafe checkpoint before Lightning opens it
    recipe = {**dm.recipe, "eval_batch_size": dm.eval_batch_size}  # eval draws its noise per batch
    model = build(
        cfg.model, in_shape=dm.image_shape, num_classes=dm.num_classes, seed=cfg.seed, recipe=recipe, _convert_="all"
    )
    if init_from is not None:
        fresh = load_weights(model, init_from, strict=strict)
        if fresh:
            log.info("weights not in %s, left at their initialisation: %s", init_from, ", ".join(fresh))
    loggers, callbacks = _instantiate_all(cfg.get("logger")), _instantiate_all(cfg.get("callbacks"))
    if not loggers:  # the learning-rate monitor has nowhere to write without a logger, and Lightning refuses it
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    trainer: pl.Trainer = build(cfg.trainer, callbacks=callbacks, logger=loggers)
    for lg in trainer.loggers:
        lg.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    start = time.perf_counter()
    trainer.fit(model, datamodule=dm, ckpt_path=cfg.ckpt_path)
    metrics: dict[str, float | str] = epoch_metrics(trainer)
    metrics.update(epochs=trainer.current_epoch, fit_seconds=round(time.perf_counter() - start, 1))
    command = " ".join(["python -m ram_lightning train", *map(shlex.quote, sys.argv[1:])])
    metrics.update(hardware=hardware(trainer), command=command)
    if cfg.test:
        best = checkpoint_to_test(trainer)
        trainer.test(model, datamodule=dm, ckpt_path=best or None, verbose=False)
        metrics.update(epoch_metrics(trainer, "test/"))
        metrics["best_ckpt"] = best
    if trainer.is_global_zero:
        numbers = {k: v for k, v in metrics.items() if "/" in k}
        print(f"\nrun folder: {out_dir}\n{format_metrics(numbers)}")
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


@hydra.main(config_path=CONF_DIR, config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    metrics = run_reporting_errors(train, cfg)
    return metrics.get(cfg.get("optimized_metric"))


if __name__ == "__main__":
    main()
