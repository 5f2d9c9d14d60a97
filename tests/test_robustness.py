import os
import pickle
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from pytorch_lightning.utilities.exceptions import SIGTERMException

from conftest import compose_cfg, quiet_trainer
from ram_lightning import RAMLitModule
from ram_lightning.checkpoint import load_module, read_checkpoint, slim_checkpoint
from ram_lightning.errors import CheckpointError
from ram_lightning.evaluate import evaluate
from ram_lightning.lit_module import NonFiniteLossError
from ram_lightning.train import train

TINY = {
    "kind": "ram",
    "patch_size": 4,
    "num_glimpses": 2,
    "hidden_g": 8,
    "hidden_l": 8,
    "glimpse_dim": 16,
    "hidden": 16,
}


def tiny_checkpoint(path: Path) -> Path:
    lit = RAMLitModule(TINY, (1, 16, 16), recipe={"dataset": "mnist"})
    trainer = quiet_trainer(max_steps=0)
    trainer.strategy.connect(lit)
    trainer.save_checkpoint(path)
    return path


def test_non_finite_loss_stops_training_naming_step_and_term() -> None:
    x = torch.rand(8, 1, 16, 16)
    x[0, 0, 8, 8] = float("nan")  # a NaN pixel in the first glimpse poisons every term
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, torch.zeros(8, dtype=torch.long)), 4)
    lit = RAMLitModule(TINY, (1, 16, 16))
    trainer = quiet_trainer(max_epochs=1)
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss at step 0 \(epoch 0\): .*loss_ce"):
        trainer.fit(lit, loader)


class _Boom:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_malicious_checkpoint_is_refused_and_nothing_in_it_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    boom = _Boom()
    boom.marker = marker
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"net": boom}}, evil)
    with pytest.raises(CheckpointError, match="refused to load .*evil.ckpt"):
        load_module(evil)
    cfg = compose_cfg("eval", [f"ckpt_path={evil}"])
    with pytest.raises(CheckpointError, match="nothing in it was executed"):
        evaluate(cfg)
    assert not marker.exists()
    with open(tmp_path / "plain.pkl", "wb") as f:  # the same object does run under plain pickle
        pickle.dump(boom, f)
    with open(tmp_path / "plain.pkl", "rb") as f:
        pickle.load(f)
    assert marker.exists()


def test_truncated_missing_and_non_checkpoint_files(tmp_path: Path) -> None:
    good = tiny_checkpoint(tmp_path / "good.ckpt")
    assert isinstance(load_module(good), RAMLitModule)
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(good.read_bytes()[:2000])
    with pytest.raises(CheckpointError, match="truncated.ckpt is not a readable checkpoint"):
        read_checkpoint(truncated)
    text = tmp_path / "notes.ckpt"
    text.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="notes.ckpt is not a readable checkpoint"):
        read_checkpoint(text)
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        read_checkpoint(tmp_path / "missing.ckpt")


def test_other_models_versions_and_foreign_targets_are_refused(tmp_path: Path) -> None:
    ckpt = torch.load(tiny_checkpoint(tmp_path / "good.ckpt"), weights_only=True)
    future = dict(ckpt, ram_lightning_format=99)
    torch.save(future, tmp_path / "future.ckpt")
    with pytest.raises(CheckpointError, match="format 99"):
        load_module(tmp_path / "future.ckpt")
    other = dict(ckpt, state_dict={"encoder.weight": torch.zeros(3)})
    torch.save(other, tmp_path / "other.ckpt")
    with pytest.raises(CheckpointError, match="does not match a ram-lightning model"):
        load_module(tmp_path / "other.ckpt")
    hp = dict(ckpt["hyper_parameters"], net={"_target_": "os.system", "kind": "shell"})
    torch.save(dict(ckpt, hyper_parameters=hp), tmp_path / "target.ckpt")
    with pytest.raises(CheckpointError, match="does not match a ram-lightning model"):
        load_module(tmp_path / "target.ckpt")  # rebuilt from our own classes: the _target_ is never imported


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_saves_a_checkpoint_and_prints_how_to_resume(shapes_folder: Path, tmp_path: Path, sig) -> None:
    args = [
        sys.executable, "-m", "ram_lightning", "train", "data=image_folder", f"data.root={shapes_folder}",
        "data.image_size=24", "data.batch_size=2", "model.net.patch_size=6", "model.net.num_glimpses=2",
        "trainer.max_epochs=1000", "logger=csv", "callbacks=default", "~callbacks.glimpse_images",
        f"paths.log_dir={tmp_path / 'logs'}", "+trainer.enable_progress_bar=false",
    ]  # fmt: skip
    proc = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    runs = tmp_path / "logs" / "train" / "runs"
    deadline = time.time() + 120
    while time.time() < deadline and not list(runs.glob("*/checkpoints/last.ckpt")):
        time.sleep(0.5)  # wait until an epoch has finished: training is under way
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    saved = list(runs.glob("*/checkpoints/interrupted.ckpt"))
    assert len(saved) == 1, err[-3000:]
    assert f"ckpt_path={saved[0]}" in err and "resume with:" in err
    assert read_checkpoint(saved[0])["global_step"] > 0


@pytest.mark.parametrize("timer", [False, True], ids=["sigterm", "time_limit"])
def test_a_run_resumed_mid_epoch_ends_exactly_like_an_uninterrupted_one(train_cfg, tmp_path: Path, timer: bool) -> None:
    common = ["experiment=cluttered60", "data.canvas=36", "model.net.patch_size=6", "model.net.num_glimpses=3",
              "model.mc_train=2", "trainer.max_epochs=2"]  # fmt: skip
    straight = train(train_cfg(*common, f"paths.output_dir={tmp_path / 'straight'}"))
    stopped = tmp_path / "stopped"
    cfg = train_cfg(*common, f"paths.output_dir={stopped}", "+callbacks.stop._target_=conftest.StopAtStep",
                    "+callbacks.stop.step=12", f"+callbacks.stop.timer={timer}")  # fmt: skip
    if timer:  # step 12 is epoch 1, batch 4 of 9; a time limit ends the fit normally, the epoch saved as done
        train(cfg)
        saved = stopped / "checkpoints" / "last.ckpt"
    else:
        with pytest.raises(SIGTERMException):
            train(cfg)
        saved = stopped / "checkpoints" / "interrupted.ckpt"
        assert (stopped / "checkpoints" / "epoch_000.ckpt").is_file() and saved.is_file()  # nothing deleted
    assert read_checkpoint(saved)["global_step"] == 12
    resumed = train(train_cfg(*common, f"paths.output_dir={tmp_path / 'resumed'}", f"ckpt_path={saved}"))
    steps = [
        read_checkpoint(tmp_path / run / "checkpoints" / "last.ckpt")["global_step"] for run in ("straight", "resumed")
    ]
    assert steps == [18, 18]  # 2 epochs of 9 batches: the cut epoch is finished, not skipped
    for key in ("val/err", "val/err_mc", "val/loss", "test/err", "test/err_mc", "test/loss", "test/loss_reinforce"):
        assert resumed[key] == pytest.approx(straight[key], abs=1e-6), key


def test_a_slim_checkpoint_loads_alike_and_is_never_written_twice(tmp_path: Path) -> None:
    full = tiny_checkpoint(tmp_path / "full.ckpt")
    slim = slim_checkpoint(full, tmp_path / "ship" / "slim.ckpt")
    assert "optimizer_states" not in read_checkpoint(slim)
    x = torch.rand(3, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(load_module(slim)(x, deterministic=True).logits,
                                   load_module(full)(x, deterministic=True).logits)  # fmt: skip
    with pytest.raises(CheckpointError, match="exists"):
        slim_checkpoint(full, slim)


def test_two_runs_started_in_the_same_second_get_different_folders() -> None:
    from hydra import compose, initialize_config_dir

    from ram_lightning.config import CONF_DIR

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        first, second = (compose("train", return_hydra_config=True).hydra.run.dir for _ in range(2))
    assert first != second  # microseconds in the name: a run started in the same second gets its own folder
    assert re.fullmatch(r".*/runs/\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d_\d{6}", first), first
