"""Checkpoints for the predict and export tests: one trained for a few steps, others written directly."""

from pathlib import Path

import torch

from conftest import TINY_RAM, compose_cfg
from ram_lightning import RAMLitModule
from ram_lightning.lit_module import FORMAT_KEY, FORMAT_VERSION
from ram_lightning.train import train

FOLDER_TRAIN = [
    "data=image_folder", "data.image_size=24", "data.batch_size=8", "data.eval_batch_size=8",
    "model.net.patch_size=6", "model.net.num_glimpses=2", "model.mc_eval=2", "trainer.max_epochs=1",
    "logger=none", "callbacks=none", "test=false", "+trainer.enable_model_summary=false",
    "+trainer.enable_progress_bar=false", "model.net.first_location=center", *TINY_RAM,
]  # fmt: skip
TINY_NET = {"kind": "ram", "patch_size": 6, "num_glimpses": 3, "hidden_g": 16, "hidden_l": 8, "glimpse_dim": 32,
            "hidden": 32}  # fmt: skip
MNIST_RECIPE = {"dataset": "mnist", "variant": "translated", "canvas": 40, "image_shape": [1, 40, 40], "seed": 1}


def train_on_folder(root: Path, run_dir: Path) -> Path:
    """Train a tiny RAM on the image folder ``root`` for a few steps; return its checkpoint."""
    train(compose_cfg("train", [f"data.root={root}", f"paths.output_dir={run_dir}", *FOLDER_TRAIN]))
    (ckpt,) = (run_dir / "checkpoints").glob("*.ckpt")
    return ckpt.rename(run_dir / "model.ckpt")  # Lightning's own name has '=', which overrides must quote


def save_untrained(path: Path, recipe: dict = MNIST_RECIPE, net: dict = TINY_NET) -> Path:
    """A checkpoint as `train` writes it, of an untrained model: for what needs no learning."""
    in_shape, classes = tuple(recipe["image_shape"]), len(recipe.get("classes", range(10)))
    module = RAMLitModule(dict(net), in_shape, classes, mc_eval=3, recipe=recipe)
    hp = dict(module.hparams)
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": hp, FORMAT_KEY: FORMAT_VERSION}, path)
    return path
