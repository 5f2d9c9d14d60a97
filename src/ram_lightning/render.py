"""`python -m ram_lightning render ckpt_path=PATH`: draw where a checkpoint looks, as GIFs.

For the first n test images of the checkpoint's own data recipe: one GIF per image (T glimpse frames and
a final frame with the class probabilities), ``grid.gif`` with all of them side by side, and ``grid.png``,
a still with one row per image. Runs on CPU whatever device trained the checkpoint.
"""

import inspect
from datetime import datetime
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from .checkpoint import load_module
from .cli import run_reporting_errors
from .config import CONF_DIR
from .data import RAMDataModule
from .errors import CheckpointError, ConfigError
from .evaluate import datamodule_from_recipe
from .lit_module import RAMLitModule
from .model import RecurrentAttention
from .paths import fresh_paths
from .viz.frames import grid_frames, strip
from .viz.gif import frame_duration_ms, write_gif
from .viz.glimpses import draw_batch


def _check_cfg(cfg: DictConfig) -> None:
    if OmegaConf.is_missing(cfg, "ckpt_path") or cfg.get("ckpt_path") is None:
        raise CheckpointError("ckpt_path is required: render ckpt_path=<run folder>/checkpoints/last.ckpt")
    if isinstance(cfg.n, bool) or not isinstance(cfg.n, int) or cfg.n < 1:
        raise ConfigError(f"n={cfg.n!r} is not allowed: the number of test images to draw, an integer >= 1")
    if isinstance(cfg.fps, bool) or not isinstance(cfg.fps, int | float) or not cfg.fps > 0:
        raise ConfigError(f"fps={cfg.fps!r} is not allowed: frames per second, a number > 0")
    if not isinstance(cfg.seed, int):
        raise ConfigError(f"seed={cfg.seed!r} is not allowed: use an integer")


def recipe_for(module: RAMLitModule, override: DictConfig | dict | None) -> dict:
    """The checkpoint's data recipe with the keys of ``override`` (a data config, or a few keys) on top."""
    recipe = dict(module.hparams.get("recipe") or {})
    if override is not None:
        extra = OmegaConf.to_container(override, resolve=True) if isinstance(override, DictConfig) else override
        extra = {k: v for k, v in extra.items() if not k.startswith("_") and k != "data_dir"}  # data_dir: top level
        allowed = set(inspect.signature(RAMDataModule).parameters) - {"data_dir"}
        unknown = sorted(set(extra) - allowed)
        if unknown:
            raise ConfigError(f"data.{unknown[0]} is not a data setting; use one of {', '.join(sorted(allowed))}")
        recipe.update(extra)
    if "dataset" not in recipe:
        raise ConfigError(
            "the checkpoint records no data recipe; choose one with data=<mnist|translated60|cluttered60|...> "
            "or +data.dataset=<mnist|fashion-mnist|image_folder>"
        )
    return recipe


def load_test_images(recipe: dict, data_dir: str, n: int) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """The first n test images as the model sees them: x (n, C, H, W) in [0, 1], y (n,), class names."""
    dm = datamodule_from_recipe(recipe, data_dir, eval_batch_size=n)
    dm.prepare_data()
    dm.setup("test")
    xs, ys, got = [], [], 0
    for batch in dm.test_dataloader():
        x, y = dm.transform_batch(batch, train=False)
        xs.append(x)
        ys.append(y)
        got += y.shape[0]
        if got >= n:
            break
    return torch.cat(xs)[:n], torch.cat(ys)[:n], list(dm.classes)


def _default_out(cfg: DictConfig) -> Path:
    """A new folder beside the checkpoint's run; under the log folder when that one is read-only."""
    stamp = f"{datetime.now():%Y-%m-%d_%H-%M-%S}"
    ckpt = Path(cfg.ckpt_path).resolve()
    run_dir = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
    try:
        (run_dir / f"render_{stamp}").mkdir(parents=True, exist_ok=True)
        return run_dir / f"render_{stamp}"
    except OSError:
        return Path(cfg.paths.log_dir) / "render" / stamp


def render(cfg: DictConfig) -> dict:
    """Draw the checkpoint's glimpses on n test images; return what was written and the error on them."""
    _check_cfg(cfg)
    module = load_module(cfg.ckpt_path)
    net = module.net
    if not isinstance(net, RecurrentAttention):
        raise CheckpointError(
            f"{cfg.ckpt_path} holds a {module.hparams.net.get('kind')!r} model; render draws glimpses, "
            "so it needs a RAM checkpoint (model.net.kind=ram)"
        )
    x, y, names = load_test_images(recipe_for(module, cfg.get("data")), str(cfg.data_dir), int(cfg.n))
    if tuple(x.shape[1:]) != tuple(module.hparams.in_shape):
        raise ConfigError(
            f"the data makes inputs of shape {tuple(x.shape[1:])} but the checkpoint's model reads "
            f"{tuple(module.hparams.in_shape)}; choose data with the same canvas size and channels"
        )
    drawn = draw_batch(net, x, y, names, deterministic=bool(cfg.deterministic), seed=int(cfg.seed))
    pred = drawn.probs.argmax(-1)  # (n,)

    out_dir = Path(cfg.out) if cfg.get("out") is not None else _default_out(cfg)
    out_dir.mkdir(parents=True, exist_ok=True)
    names_out = [f"sample_{i}_{int(y[i])}_{int(pred[i])}.gif" for i in range(x.shape[0])]
    *sample_paths, grid_gif, grid_png = fresh_paths(out_dir, [*names_out, "grid.gif", "grid.png"])
    for frames, path in zip(drawn.full, sample_paths, strict=True):
        write_gif(frames, path, cfg.fps)
    write_gif(grid_frames(drawn.compact), grid_gif, cfg.fps)
    with open(grid_png, "xb") as f:
        strip(drawn.compact).save(f, format="PNG")

    err = 100.0 * float((pred != y).float().mean())
    mode = "policy mean" if cfg.deterministic else f"sampled, seed {cfg.seed}"
    print(f"wrote {len(sample_paths)} GIFs, {grid_gif.name} and {grid_png.name} to {out_dir}")
    print(f"error on these {len(y)} test images ({mode}): {err:.1f}%")
    return {
        "out_dir": str(out_dir),
        "samples": [str(p) for p in sample_paths],
        "grid_gif": str(grid_gif),
        "grid_png": str(grid_png),
        "frames": drawn.locations.shape[1] + 1,
        "frame_ms": frame_duration_ms(cfg.fps),
        "err": err,
    }


@hydra.main(config_path=CONF_DIR, config_name="render", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_reporting_errors(render, cfg)


if __name__ == "__main__":
    main()
