"""Shared fixtures: tiny data sets the tests write themselves, and the real configs, composed and shrunk."""

import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict
from PIL import Image

from idx_utils import write_tiny
from ram_lightning.config import CONF_DIR
from ram_lightning.data import fetch

# A RAM small enough to train in a second; every other key keeps the shipped value.
TINY_RAM = ["model.net.hidden_g=16", "model.net.hidden_l=8", "model.net.glimpse_dim=32", "model.net.hidden=32"]


@pytest.fixture
def tiny_mnist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A data_dir with 300 train / 60 test made-up MNIST images; the digest table is replaced by theirs."""
    data_dir = tmp_path / "data"
    table = write_tiny(data_dir / "MNIST" / "raw", n_train=300, n_test=60)
    monkeypatch.setattr(fetch, "MNIST_FILES", table)
    return data_dir


def write_shapes_folder(root: Path, n_per_class: int = 12, size: int = 20) -> Path:
    """An image folder of two classes (a bright square left or right) as PNG files of mixed sizes."""
    gen = torch.Generator().manual_seed(0)
    for label, name in enumerate(["left", "right"]):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            w = size + int(torch.randint(0, 8, (1,), generator=gen))
            im = Image.new("L", (w, size))
            x0 = 1 if label == 0 else w - 8
            im.paste(255, (x0, 6, x0 + 6, 12))
            im.save(root / name / f"{i}.png")
    return root


@pytest.fixture
def shapes_folder(tmp_path: Path) -> Path:
    return write_shapes_folder(tmp_path / "shapes")


def compose_cfg(config_name: str, overrides: list[str]) -> DictConfig:
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name=config_name, overrides=overrides, return_hydra_config=False)


@pytest.fixture
def train_cfg(tmp_path: Path, tiny_mnist: Path):
    """Compose train.yaml with the given overrides, shrunk to tiny data, one epoch and tmp folders."""

    def make(*overrides: str, tiny_model: bool = True) -> DictConfig:
        base = [
            f"paths.data_dir={tiny_mnist}", f"paths.output_dir={tmp_path / 'run'}", "trainer.max_epochs=1",
            "data.batch_size=32", "data.eval_batch_size=25", "data.val_size=40", "model.mc_eval=2",
            "+trainer.enable_progress_bar=false", "+trainer.enable_model_summary=false",
        ]  # fmt: skip
        cfg = compose_cfg("train", base + (TINY_RAM if tiny_model else []) + list(overrides))
        with open_dict(cfg):
            cfg.callbacks.pop("glimpse_images", None)  # keep the tests about training
        return cfg

    return make


def run_cli(*args: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    """`python -m ram_lightning ARGS` in a fresh process, as a user types it."""
    return subprocess.run(
        [sys.executable, "-m", "ram_lightning", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def quiet_trainer(**kwargs: object) -> pl.Trainer:
    """A CPU Trainer without logger, checkpoints, progress bar or summary; ``kwargs`` add to it."""
    quiet = dict(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False)
    return pl.Trainer(**{**quiet, "enable_model_summary": False, **kwargs})


class StopAtStep(pl.Callback):
    """Stop training after the optimiser step that reaches ``step``, as SIGTERM would or, with
    ``timer=True``, as ``trainer.max_time`` does (the epoch ends early and the fit returns)."""

    def __init__(self, step: int, timer: bool = False) -> None:
        self.step, self.timer = step, timer

    def on_train_batch_end(self, trainer: pl.Trainer, *args: object) -> None:
        if trainer.global_step != self.step:
            return
        if self.timer:
            trainer.should_stop = True
        else:
            trainer._signal_connector.received_sigterm = True
