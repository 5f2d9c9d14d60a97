"""Training callbacks of our own: stop cleanly on Ctrl+C or SIGTERM with a checkpoint to resume from;
keep the best checkpoints across resumes; average the weights."""

import signal
import sys
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import EMAWeightAveraging, ModelCheckpoint
from pytorch_lightning.trainer.states import TrainerFn
from pytorch_lightning.utilities.exceptions import SIGTERMException

from .paths import free_path


class GracefulInterrupt(pl.Callback):
    """Ctrl+C or SIGTERM: finish the current batch, save ``interrupted.ckpt``, print how to resume.

    Lightning already turns SIGTERM into a stop at the next batch boundary; the first Ctrl+C is made to
    do the same (a second one stops at once), so the saved state is always between two optimiser steps.
    """

    def __init__(self, dirpath: str) -> None:
        self.dirpath = Path(dirpath)
        self._previous: Any = None

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        def stop_after_this_batch(signum: int, frame: Any) -> None:
            signal.signal(signal.SIGINT, self._previous)  # a second Ctrl+C interrupts at once
            print("\nCtrl+C: stopping after this batch and saving a checkpoint ...", file=sys.stderr)
            trainer._signal_connector.received_sigterm = True  # Lightning's own stop-at-batch-end flag

        self._previous = signal.signal(signal.SIGINT, stop_after_this_batch)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, SIGTERMException | KeyboardInterrupt):
            return
        path = free_path(self.dirpath / "interrupted.ckpt")
        trainer.save_checkpoint(path)
        if trainer.is_global_zero:
            argv = " ".join(a for a in sys.argv[1:] if not a.startswith("ckpt_path="))
            print(
                f"\nsaved {path}\nresume with:\n  python -m ram_lightning train {argv} ckpt_path={path}",
                file=sys.stderr,
            )


class RunCheckpoint(ModelCheckpoint):
    """ModelCheckpoint for runs resumed into a new folder: it keeps ranking against the earlier run's best
    checkpoints, so the best one is chosen as in an uninterrupted run, and never deletes a file outside its
    own folder (the earlier run's checkpoints stay where they are)."""

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict({**state_dict, "dirpath": self.dirpath})  # restore the ranking, not the folder

    def _remove_checkpoint(self, trainer: pl.Trainer, filepath: str) -> None:
        if Path(filepath).resolve().parent == Path(self.dirpath).resolve():
            super()._remove_checkpoint(trainer, filepath)

    # Lightning writes last.ckpt only in epochs that also write a best checkpoint; a run that crashed would
    # then resume from its last improvement. Here last.ckpt follows every epoch.
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._save_last_now(trainer)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._save_last_now(trainer)

    def _save_last_now(self, trainer: pl.Trainer) -> None:
        if self.save_last and not self._should_skip_saving_checkpoint(trainer):  # skips a step saved already
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))


class WeightEMA(EMAWeightAveraging):
    """An exponential moving average of the weights, used for validation and saved as each checkpoint's
    ``state_dict`` (the raw weights ride along for a resume). Lightning's callback puts the raw weights back
    whenever a checkpoint is loaded, also to test one; here only a resumed fit does, so the test after
    training and ``eval`` of the same file measure the same averaged weights."""

    def __init__(self, **kwargs: Any) -> None:
        # Parameters only: the nets' buffers are constants (the retina's pixel and block indices), and their
        # float32 average drifts off the whole numbers (below them at decay 0.9995), which moves the retina's
        # blocks whenever the averaged copy is swapped in for validation or the final test.
        super().__init__(use_buffers=False, **kwargs)

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        if trainer.state.fn == TrainerFn.FITTING:
            super().on_load_checkpoint(trainer, pl_module, checkpoint)
